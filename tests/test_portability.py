"""Portability: the exact numerics give the same integers in fresh processes that take other machines' code paths.

Each setting starts a fresh Python with the libraries' own switches set the way another machine would take them
(oneDNN limited to SSE4.1 or AVX2, MKL's portable path, PyTorch's generic kernels, numpy without its AVX-512
kernels, one or two torch threads). The child runs a *workload* (a function named "module:function", called with
string arguments) and prints a digest of the integers it computed; the parent compares it with its own. Inputs
and tables are made once in the parent and stored, as a model file stores them: building tables uses float math,
which is allowed at quantisation time only.

`outputs_everywhere(workload, *args)` is the reusable part: an archive-level check is "compress here, then
outputs_everywhere('tests.test_portability:decoded_digest', archive, ...)".
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
#: Each child's wall-clock limit: importing torch on a loaded 2-core machine takes a few seconds.
CHILD_TIMEOUT_S = 240


def numpy_avx512_targets() -> list[str]:
    """This CPU's AVX-512 dispatch targets that numpy would use (the names NPY_DISABLE_CPU_FEATURES takes)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:     # numpy < 2
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [t for t in __cpu_dispatch__ if __cpu_features__.get(t) and (t.startswith("AVX512") or t == "X86_V4")]


def openblas_cores() -> list[str]:
    """The cores the loaded OpenBLAS libraries picked kernels for (lower case)."""
    from threadpoolctl import threadpool_info
    return sorted({str(i.get("architecture", "")).lower() for i in threadpool_info()
                   if i["internal_api"] == "openblas"})


def settings() -> dict[str, tuple[dict[str, str], int]]:
    """name -> (environment overrides, torch threads) of every fresh process a portability check runs."""
    out = {"DNNL_MAX_CPU_ISA=SSE41": ({"DNNL_MAX_CPU_ISA": "SSE41"}, 1),
           "DNNL_MAX_CPU_ISA=AVX2": ({"DNNL_MAX_CPU_ISA": "AVX2"}, 1),
           "MKL_CBWR=COMPATIBLE": ({"MKL_CBWR": "COMPATIBLE"}, 1),
           "ATEN_CPU_CAPABILITY=default": ({"ATEN_CPU_CAPABILITY": "default"}, 1),
           # OpenBLAS's kernels for another CPU (exact2's float32 products and every float64 one run there)
           "OPENBLAS_CORETYPE=Prescott": ({"OPENBLAS_CORETYPE": "Prescott"}, 1),
           "OPENBLAS_CORETYPE=Sandybridge": ({"OPENBLAS_CORETYPE": "Sandybridge"}, 1),
           # numba's code for a baseline x86-64 CPU: no AVX-512BW, so exact2's maps take the float32 products
           # where the parent may have taken the 16-bit ones (coding/products16.py)
           "NUMBA_CPU_NAME=generic": ({"NUMBA_CPU_NAME": "generic"}, 1)}
    avx512 = numpy_avx512_targets()
    if avx512:
        out["NPY_DISABLE_CPU_FEATURES=" + ",".join(avx512)] = ({"NPY_DISABLE_CPU_FEATURES": ",".join(avx512)}, 1)
    out["1 thread"] = ({}, 1)
    out["2 threads"] = ({}, 2)
    return out


_CHILD = """
import importlib, json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
module, name = sys.argv[2].rsplit(":", 1)
result = getattr(importlib.import_module(module), name)(*sys.argv[3:])
from tests.test_portability import numpy_avx512_targets, openblas_cores
from acncodec.coding import products16
print(json.dumps({"result": result, "numpy_avx512": numpy_avx512_targets(), "openblas": openblas_cores(),
                  "aten": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
                  "products16": products16.available()}))
"""


def run_fresh(workload: str, args: tuple[str, ...], env: dict[str, str], threads: int) -> dict:
    """Run `workload(*args)` in a fresh Python with `env` added to a clean copy of the environment."""
    base = {k: v for k, v in os.environ.items()
            if k not in ("DNNL_MAX_CPU_ISA", "MKL_CBWR", "ATEN_CPU_CAPABILITY", "NPY_DISABLE_CPU_FEATURES",
                         "OPENBLAS_CORETYPE", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    base.update(env, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(threads), workload, *map(str, args)], cwd=ROOT,
                          env=base, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 0, f"child under {env} failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def outputs_everywhere(workload: str, *args) -> dict[str, dict]:
    """Run the workload under every setting (two at a time: CI has two cores); name -> the child's report.
    Also checks that each setting took effect where the library lets a process see it."""
    jobs = settings()
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(run_fresh, workload, tuple(args), env, threads)
                   for name, (env, threads) in jobs.items()}
        reports = {name: f.result() for name, f in futures.items()}
    for name, (env, threads) in jobs.items():
        report = reports[name]
        assert report["threads"] == threads, name
        if "ATEN_CPU_CAPABILITY" in env:
            assert report["aten"].upper() == "DEFAULT", report["aten"]
        if "NPY_DISABLE_CPU_FEATURES" in env:
            assert report["numpy_avx512"] == [], report["numpy_avx512"]
        if "NUMBA_CPU_NAME" in env:
            assert report["products16"] is False, name
        if "OPENBLAS_CORETYPE" in env and env["OPENBLAS_CORETYPE"].lower() not in openblas_cores():
            # the libraries report the core they picked (Prescott's kernels are called Katmai): not this one's
            assert report["openblas"] and not set(report["openblas"]) & set(openblas_cores()), report["openblas"]
    return reports


def digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# Workloads (run in the parent and in every child)
# ----------------------------------------------------------------------------------------------------------------

def tables_digest(path: str) -> str:
    """Every exact mass function on the stored tables and inputs: one digest of all the integer outputs."""
    from acncodec.coding import exact_tables as et
    stored = torch.load(path, weights_only=True)
    tables = et.LatentTables.from_dict(stored["latent"])
    inputs = {k: v.numpy() for k, v in stored["inputs"].items()}
    outputs = [et.posterior_masses(tables, inputs["codes"]), et.prior_masses(tables, inputs["raw"]),
               et.head_posterior_masses(tables, inputs["buckets"]), et.latent_values(tables, inputs["buckets"])]
    full = et.LatentTables.from_dict(stored["latent_full"])          # a full-covariance head
    ks = inputs["buckets"][:, 0] % len(full.head_weights)
    outputs += [et.head_posterior_masses(full, inputs["buckets"])]
    outputs += [et.full_head_masses(full, ks, d, inputs["buckets"]) for d in range(full.dim)]
    for levels in (2, 17, 256):
        pixel = et.PixelTables.from_dict(stored[f"pixel{levels}"])
        logits = inputs[f"logits{levels}"]
        outputs += [et.pixel_masses(pixel, logits), et.pixel_probs(pixel, logits)]
    return digest(*outputs)


def float_digest(path: str) -> str:
    """A float32 convolution and tanh (the first release's kind of arithmetic), to show the settings bite."""
    stored = torch.load(path, weights_only=True)
    x, w = stored["float"]["x"], stored["float"]["w"]
    with torch.no_grad():
        y = torch.tanh(torch.nn.functional.conv2d(x, w, padding=2))
        y = torch.tanh(torch.nn.functional.conv2d(y, w, padding=2))
    return digest(y.numpy())


def decoded_digest(model_path: str, archive_path: str) -> str:
    """Decode an archive with a stored model: the digest of the decoded images (compared with the originals')."""
    from acncodec import codec, modelfile
    out, _ = codec.decompress(Path(archive_path).read_bytes(), modelfile.load(model_path), progress=False)
    return digest(out.images)


def suite(manifest_path: str) -> dict[str, str]:
    """Everything a fresh process checks, in one process per setting (starting Python and torch costs seconds):
    the tables' digest, the float digest, and one decoded digest per archive in the manifest."""
    manifest = json.loads(Path(manifest_path).read_text())
    out = {"tables": tables_digest(manifest["tables"]), "float": float_digest(manifest["tables"])}
    for kind, (model_path, archive_path) in manifest["archives"].items():
        out["archive " + kind] = decoded_digest(model_path, archive_path)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------------------

def make_tables(path: Path) -> None:
    from acncodec.buckets import BucketTable
    from acncodec.coding import exact_tables as et
    from acncodec.prior import UnconditionalPrior
    rng = np.random.default_rng(0)
    dim, k, comps, bits = 6, 4, 5, 8
    w = rng.uniform(0.5, 1.5, k)
    prior = UnconditionalPrior(w / w.sum(), rng.normal(0, 0.8, (k, dim)), rng.uniform(0.2, 1.5, (k, dim)))
    table = BucketTable.from_reference(prior.marginal(), bits)
    tables = et.LatentTables.build(table, prior, bits)
    mix = rng.normal(size=(k, dim, dim))
    full = UnconditionalPrior(prior.weights, prior.means, prior.variances, mix @ mix.transpose(0, 2, 1) + np.eye(dim))
    raw = np.round(rng.normal(0, 2, (64, dim, comps, 3)) * 2 ** et.RAW_FRAC).astype(np.int64)
    inputs = {"codes": np.round(rng.normal(0, 1.5, (64, dim)) * 2 ** et.CODE_FRAC).astype(np.int64),
              "raw": raw, "buckets": rng.integers(0, 2 ** bits, (64, dim))}
    tensors = lambda part: {k: torch.from_numpy(np.array(v)) for k, v in part.items()}
    stored = {"latent": tensors(tables.to_dict()),
              "latent_full": tensors(et.LatentTables.build(table, full, bits).to_dict())}
    for levels in (2, 17, 256):
        outputs = 1 if levels == 2 else levels
        inputs[f"logits{levels}"] = np.round(rng.normal(0, 4, (64, 7, outputs)) * 2 ** et.LOGIT_FRAC).astype(np.int64)
        stored[f"pixel{levels}"] = tensors(et.PixelTables.build(levels).to_dict())
    stored["inputs"] = {name: torch.from_numpy(v) for name, v in inputs.items()}
    g = torch.Generator().manual_seed(0)
    stored["float"] = {"x": torch.randn(16, 24, 28, 28, generator=g), "w": torch.randn(24, 24, 5, 5, generator=g) / 10}
    torch.save(stored, path)


def make_archives(folder: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """A tiny exact model per kind of data (binary, 17 levels, 8-bit grey, RGB), archives compressed here with
    it (original order; and associative, whose integer r(k | z) takes other paths), and the digest of the
    images each holds."""
    from acncodec import codec, modelfile
    from acncodec.coding.multiset import canonical_order, image_keys
    from acncodec.quantize import calibration_set, quantise_model
    from acncodec.unconditional import fit_unconditional
    from helpers import SPECS, random_images, tiny_model
    archives, expected = {}, {}
    # a full-covariance p(z) (its head codes a latent one dimension at a time) beside each diagonal one
    correlated = np.random.default_rng(4).normal(size=(300, 3)) @ np.array([[1, .8, 0], [0, .6, .5], [0, 0, .7]])
    full = fit_unconditional(correlated, candidates=(1, 2), covariance="full")
    variants = [(kind, spec, None, "exact1") for kind, spec in SPECS.items()] \
        + [("binary full", SPECS["binary"], full, "exact1")] \
        + [(f"{kind} exact2", SPECS[kind], None, "exact2") for kind in ("binary", "rgb")]   # narrow maps
    for kind, spec, prior, numerics in variants:
        model = quantise_model(tiny_model(spec), calibration_set(random_images(spec, 32, seed=9)),
                               *(prior or (None, None)), numerics=numerics)
        images = random_images(spec, 5, seed=3)
        model_path = folder / f"{kind}.acnm"
        modelfile.save(model, model_path)
        for order, key in (("original", kind), ("associative", f"{kind} associative")):
            blob, _ = codec.compress(images, model, order=order, chains=2, progress=False, estimate=False)
            archive_path = folder / f"{key}.acn"
            archive_path.write_bytes(blob)
            archives[key] = [str(model_path), str(archive_path)]
            expected["archive " + key] = digest(images.images if order == "original" else
                                              images.images[canonical_order(image_keys(images.images))])
    return archives, expected


@pytest.fixture(scope="module")
def fresh_reports(tmp_path_factory):
    """(the parent's own results, name of setting -> the child's report) for the whole suite."""
    folder = tmp_path_factory.mktemp("portability")
    make_tables(folder / "tables.pt")
    archives, expected = make_archives(folder)
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps({"tables": str(folder / "tables.pt"), "archives": archives}))
    here = {"tables": tables_digest(str(folder / "tables.pt")), "float": float_digest(str(folder / "tables.pt")),
            **expected}
    return here, outputs_everywhere("tests.test_portability:suite", str(manifest))


def test_archives_cross_the_product_paths(fresh_reports):
    """Where this machine multiplies 16-bit integers, the archives below were coded with those products and are
    decoded with float32 ones in some setting (and the reverse holds on a machine without them)."""
    from acncodec.coding import products16
    if not products16.available():
        # nothing to cross: the parent and every child take the float32 products
        pytest.skip("this CPU has no AVX-512BW: every setting takes the float32 products")
    here, reports = fresh_reports
    assert {r["products16"] for r in reports.values()} == {True, False}


def test_exact_masses_are_identical_in_every_setting(fresh_reports):
    here, reports = fresh_reports
    differing = sorted(name for name, r in reports.items() if r["result"]["tables"] != here["tables"])
    assert not differing, f"exact masses changed under {differing}"


def test_the_settings_change_float_results(fresh_reports):
    """The harness can see a difference: on an AVX-512 machine some setting changes float32 results."""
    if not numpy_avx512_targets():
        pytest.skip("this CPU has no AVX-512: the emulated settings pick the kernels it already uses, so float "
                    "results cannot differ and the harness has no difference to show")
    here, reports = fresh_reports
    assert any(r["result"]["float"] != here["float"] for r in reports.values()), \
        "no setting changed float32 results: the settings did not take effect"


@pytest.mark.parametrize("kind", ["binary", "digits-like", "grey", "rgb", "binary associative", "rgb associative",
                                  "digits-like associative", "grey associative", "binary full",
                                  "binary full associative", "binary exact2", "rgb exact2",
                                  "binary exact2 associative", "rgb exact2 associative"])
def test_archives_decode_exactly_in_every_setting(fresh_reports, kind):
    """Compressed here with a tiny exact model; decoded in every fresh process to the very same pixels."""
    here, reports = fresh_reports
    wrong = sorted(name for name, r in reports.items() if r["result"]["archive " + kind] != here["archive " + kind])
    assert not wrong, f"{kind} archive decoded differently under {wrong}"
