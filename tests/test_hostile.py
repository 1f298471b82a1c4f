"""Crafted archives and hostile file systems (issue 13): archives edited and re-sealed with a valid checksum,
bombs, races, odd names, full and read-only disks. Each test names the point it covers.

Bombs run the command in a child process under resource limits (RLIMIT_CPU, RLIMIT_AS): 2 s of CPU and 300 MB
of address space beyond what decoding the untouched tiny archive needs. The limits kill a process that
overruns them, so a bomb that is not refused in time fails the test rather than slowing it.
"""

import json
import math
import os
import resource
import subprocess
import sys
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from acncodec import codec, modelfile
from acncodec.cli import main
from acncodec.header import MAX_CHAINS
from forge import names_section, reseal, split, xz_bomb
from helpers import SPECS, random_images, tiny_model

MB = 1 << 20
# The child reports its peak address space when it exits, so the limits can be set from a measured baseline.
CHILD = ("import atexit, runpy, sys\n"
         "def peak():\n"
         "    for line in open('/proc/self/status'):\n"
         "        if line.startswith('VmPeak:'):\n"
         "            sys.stderr.write('\\nVmPeak ' + line.split()[1] + '\\n')\n"
         "atexit.register(peak)\n"
         "sys.argv = ['acncodec'] + sys.argv[1:]\n"
         "runpy.run_module('acncodec.cli', run_name='__main__')\n")


def run_child(args, cpu_seconds=None, memory=None, fsize=None, cwd=None, timeout=120):
    """Run `acncodec ARGS` in a child under the given limits: exit code, stderr (one line expected), CPU
    seconds used and peak address space in bytes."""
    def limits():
        if cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if fsize is not None:
            import signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit then fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limits, env=env, cwd=cwd, timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = proc.stderr.splitlines()
    peak = [int(line.split()[1]) * 1024 for line in lines if line.startswith("VmPeak ")]
    err = "\n".join(line for line in lines if line.strip() and not line.startswith("VmPeak "))
    return proc.returncode, err + proc.stdout, cpu, (peak[0] if peak else None)


def one_line_error(code, output, *expected):
    lines = [line for line in output.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert code == 1, (code, output[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), output[-2000:]
    assert all(e in lines[0] for e in expected), (expected, lines[0])
    assert "\x1b" not in output


def run_cli(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    spec = SPECS["binary"]
    model = tiny_model(spec)
    modelfile.save(model, root / "m.acn")
    images = random_images(spec, 8, names=True)
    blob, _ = codec.compress(images, model, progress=False, estimate=False)
    array_blob, _ = codec.compress(random_images(spec, 8), model, progress=False, estimate=False)
    (root / "a.acnz").write_bytes(blob)
    # The baselines: decoding the untouched archive, and compressing a small array, each in a child, unlimited.
    # Hostile inputs reach both commands, and compress starts up with more imports than decompress (measured
    # about 1 s more CPU), so the limits are over the larger of the two.
    np.save(root / "small.npy", random_images(spec, 4).images[..., 0])
    cpu, peak = 0.0, 0
    for args in (["decompress", root / "a.acnz", root / "baseline-out"],
                 ["compress", root / "small.npy", root / "baseline.acnz", "--no-estimate"]):
        code, output, used, top = run_child([*args, "-m", root / "m.acn", "-q"])
        assert code == 0 and top, output
        cpu, peak = max(cpu, used), max(peak, top)
    limits = {"cpu_seconds": math.ceil(cpu + 2), "memory": peak + 300 * MB}
    return {"root": root, "model": model, "m": root / "m.acn", "images": images, "blob": blob,
            "array": array_blob, "limits": limits}


def write_binary(path, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((5, 6)) < 0.4).astype(np.uint8) * 255).convert("1").save(path, format="PNG")


def hostile_archive(env, tmp_path, blob, name="x.acnz") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


# ------------------------------------------------------------------------------------------------ data loss

def test_1_json_report_never_replaces_the_archive_or_any_file(env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_binary(folder / "a.png")
    arch = tmp_path / "a.acnz"
    code, output = run_cli(["compress", folder, arch, "-m", env["m"], "-q", "--json", arch])
    one_line_error(code, output, "--json names the archive itself")
    assert not arch.exists()
    report = tmp_path / "report.json"
    report.write_text("mine")
    code, output = run_cli(["compress", folder, arch, "-m", env["m"], "-q", "--json", report])
    one_line_error(code, output, "report.json already exists")
    assert report.read_text() == "mine" and not arch.exists()
    assert run_cli(["compress", folder, arch, "-m", env["m"], "-q", "--json", report, "--force"])[0] == 0
    assert json.loads(report.read_text())["n"] == 1 and codec.parse(arch.read_bytes()).header.n == 1


@pytest.mark.parametrize("case", ["suffix-clash", "too-long", "case", "normalisation", "not-utf8", "control"])
def test_2_4_12_names_that_cannot_be_restored_are_refused_before_coding(env, tmp_path, monkeypatch, case):
    """Points 2 and 4 (and 12 for a name that is not UTF-8): refused at compress time, by the rules decompress
    applies, before any coding work."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = {"suffix-clash": ["img", "img.png"], "too-long": ["x" * 255],
             "case": ["A.png", "a.png"],
             "normalisation": [unicodedata.normalize("NFC", "é.png"), unicodedata.normalize("NFD", "é.png")],
             "not-utf8": [os.fsdecode(b"bad\xff.png")], "control": ["bell\x07.png"]}[case]
    for i, name in enumerate(names):
        write_binary(folder / name, i)
    write_binary(folder / "other.png", 9)

    def no_coding(*args, **kwargs):
        raise AssertionError("coding started")
    monkeypatch.setattr(codec, "encode_stream", no_coding)
    monkeypatch.setattr(codec, "match_model", no_coding)
    code, output = run_cli(["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"])
    expected = {"suffix-clash": "restored to the same file", "too-long": "too long to restore",
                "case": "restored to the same file", "normalisation": "restored to the same file",
                "not-utf8": "is not valid UTF-8", "control": "control character"}[case]
    one_line_error(code, output, expected)
    assert not (tmp_path / "a.acnz").exists()


def test_2_a_jpeg_comes_back_as_png_with_the_suffix_replaced(env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(folder / "photo.jpg", format="JPEG")   # 8-bit grey
    Image.fromarray(np.full((5, 6), 255, np.uint8)).save(folder / "b.png")
    assert run_cli(["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"])[0] == 0
    assert run_cli(["decompress", tmp_path / "a.acnz", tmp_path / "out", "-m", env["m"], "-q"])[0] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["b.png", "photo.png"]


@pytest.mark.parametrize("names", [["img", "img.png"], ["A.png", "a.png"], ["a\x00.png", "b.png"],
                                   ["\ud800.png", "b.png"], ["../up.png", "b.png"], ["", "b.png"]],
                         ids=["suffix-clash", "case", "nul", "surrogate", "traversal", "empty"])
def test_2_4_12_a_names_section_breaking_the_rules_is_refused(env, tmp_path, names):
    """The same rules on the reading side: a forged names section (NUL, a lone surrogate, a path) is one line,
    in `info` and in `decompress`, and nothing is written."""
    names = sorted(names + [f"z{i}.png" for i in range(6)])
    text = json.dumps(names, ensure_ascii=False).encode("utf-8", "surrogatepass")
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], names=names_section(text)))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        one_line_error(*run_cli(args))
    assert not (tmp_path / "out").exists() and not (tmp_path / "up.png").exists()


def decompress_while_something_appears(env, tmp_path, monkeypatch, blob, output, appear, force=False):
    """Run decompress; `appear()` runs after the output checks and the decoding, just before writing."""
    arch = hostile_archive(env, tmp_path, blob)
    real = codec.decompress

    def decompress_then_appear(*args, **kwargs):
        result = real(*args, **kwargs)
        appear()
        return result
    monkeypatch.setattr(codec, "decompress", decompress_then_appear)
    return run_cli(["decompress", arch, output, "-m", env["m"], "-q"] + (["--force"] if force else []))


def test_3_a_file_appearing_at_the_output_while_decompressing_is_not_clobbered(env, tmp_path, monkeypatch):
    out = tmp_path / "out.npy"
    code, output = decompress_while_something_appears(env, tmp_path, monkeypatch, env["array"], out,
                                                      lambda: out.write_text("theirs"))
    one_line_error(code, output, "appeared while this command ran")
    assert out.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy", "x.acnz"]


def test_3_a_folder_appearing_at_the_output_keeps_its_files(env, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = env["images"].names[0]

    def appear():
        out.mkdir()
        (out / "theirs.txt").write_text("theirs")
        (out / first).write_text("theirs too")
    code, output = decompress_while_something_appears(env, tmp_path, monkeypatch, env["blob"], out, appear)
    one_line_error(code, output, "already exists")
    assert sorted(p.name for p in out.iterdir()) == sorted([first, "theirs.txt"])
    assert (out / "theirs.txt").read_text() == "theirs" and (out / first).read_text() == "theirs too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.acnz"]


def test_3_two_runs_to_one_output_cannot_both_succeed(env, tmp_path, monkeypatch):
    out = tmp_path / "out"
    arch = hostile_archive(env, tmp_path, env["blob"], "other.acnz")
    inner = []

    def second_run():
        if not inner:    # the second run's own decompress passes through here too
            inner.append(None)
            inner[0] = run_cli(["decompress", arch, out, "-m", env["m"], "-q"])
    code, output = decompress_while_something_appears(env, tmp_path, monkeypatch, env["blob"], out, second_run)
    assert inner[0][0] == 0, inner
    one_line_error(code, output, "already exists")
    assert sorted(p.name for p in out.iterdir()) == sorted(env["images"].names)


def test_5_force_with_the_archive_inside_the_output_folder_keeps_the_archive(env, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    arch = hostile_archive(env, out, env["blob"], "a.acnz")
    (out / "notes.txt").write_text("mine")
    for _ in range(2):   # the second run replaces the images (--force), and still nothing else
        assert run_cli(["decompress", arch, out, "-m", env["m"], "-q", "--force"])[0] == 0
        assert arch.read_bytes() == env["blob"] and (out / "notes.txt").read_text() == "mine"
        assert sorted(p.name for p in out.iterdir()) == sorted(env["images"].names + ["a.acnz", "notes.txt"])


def test_5_force_never_overwrites_the_archive_being_read(env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_binary(folder / "a.png")
    out = tmp_path / "out"
    assert run_cli(["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"])[0] == 0
    out.mkdir()
    os.replace(tmp_path / "a.acnz", out / "a.png")      # the archive, named like the image it holds
    code, output = run_cli(["decompress", out / "a.png", out, "-m", env["m"], "-q", "--force"])
    one_line_error(code, output, "is the archive being read")
    assert codec.parse((out / "a.png").read_bytes()).header.n == 1


def test_5_force_onto_symbolic_links_leaves_nothing_behind(env, tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    (target / "theirs.txt").write_text("theirs")
    link = tmp_path / "link"
    link.symlink_to(target)
    arch = hostile_archive(env, tmp_path, env["blob"])
    assert run_cli(["decompress", arch, link, "-m", env["m"], "-q", "--force"])[0] == 0
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == sorted(env["images"].names
                                                                                    + ["theirs.txt"])
    # an array output onto a link: the link is replaced, its target left alone
    elsewhere = tmp_path / "elsewhere.npy"
    elsewhere.write_text("theirs")
    (tmp_path / "arr.npy").symlink_to(elsewhere)
    array = hostile_archive(env, tmp_path, env["array"], "arr.acnz")
    assert run_cli(["decompress", array, tmp_path / "arr.npy", "-m", env["m"], "-q", "--force"])[0] == 0
    assert not (tmp_path / "arr.npy").is_symlink() and elsewhere.read_text() == "theirs"
    assert np.load(tmp_path / "arr.npy").shape == (8, 5, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arr.acnz", "arr.npy", "elsewhere.npy", "link", "real",
                                                          "x.acnz"]


@pytest.mark.parametrize("force", [False, True])
def test_5_dot_as_the_output_folder(env, tmp_path, monkeypatch, force):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("mine")
    arch = hostile_archive(env, work, env["blob"], "a.acnz")
    monkeypatch.chdir(work)
    code, output = run_cli(["decompress", "a.acnz", ".", "-m", env["m"], "-q"] + (["--force"] if force else []))
    assert code == 0, output
    assert sorted(os.listdir(work)) == sorted(env["images"].names + ["a.acnz", "keep.txt"])
    assert (work / "keep.txt").read_text() == "mine" and arch.read_bytes() == env["blob"]
    for name, image in zip(env["images"].names, env["images"].images):
        assert np.array_equal(np.asarray(Image.open(work / name)), image[..., 0].astype(bool)), name


# ------------------------------------------------------------------------------------------------- bombs

def refused_within_limits(env, args, *expected):
    code, output, cpu, _ = run_child(args, **env["limits"])
    one_line_error(code, output, *expected)
    return cpu


def test_6_chains_beyond_the_limits_are_refused(env, tmp_path):
    # 10,000 chains (a list of 10,000 in version 1) over 10,000 claimed images and a 20 KB payload
    payload = np.random.default_rng(0).integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32)
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header={"n": 10000, "chains": 10000},
                                                 payload=payload, names=b""))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        refused_within_limits(env, args, "10000 images in 10000 chains")
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header={"chains": 9}))   # more chains than images
    refused_within_limits(env, ["info", arch], "8 images in 9 chains")
    # and at compress time
    np.save(tmp_path / "in.npy", np.zeros((4, 5, 6), np.uint8))
    code, output = run_cli(["compress", tmp_path / "in.npy", tmp_path / "c.acnz", "-m", env["m"],
                            "--chains", MAX_CHAINS + 1])
    one_line_error(code, output, f"chains must be 1..{MAX_CHAINS}")


@pytest.fixture(scope="module")
def names_bomb():
    return xz_bomb(512 * MB)


def test_7_names_section_xz_bomb_is_refused(env, tmp_path, names_bomb):
    """78 KB of xz that inflate to 512 MB: refused by its size for 8 images; for 1,000 (a payload that can
    hold them) inflated no further than 1,000 names can take."""
    bomb = names_section(b"")[:1] + len(names_bomb).to_bytes(4, "little") + names_bomb
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], names=bomb))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        refused_within_limits(env, args, "is larger than 8 names can take")
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], names=bomb, header={"n": 1000},
                                                 payload=np.ones(40, np.uint32)))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        refused_within_limits(env, args, "names section inflates past 513002 bytes")
    assert not (tmp_path / "out").exists()


def test_8_a_names_count_that_disagrees_with_n_is_refused_before_the_order_is_decoded(env, tmp_path):
    """8M empty names (a few KB of xz) with an order: refused by count before the permutation is decoded; with
    a matching n, refused by the name rules before it."""
    empty = b"[" + b",".join([b'""'] * 8_000_000) + b"]"
    words = np.ones(10, np.uint32)
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], names=names_section(empty, words)))
    refused_within_limits(env, ["info", arch], "names section inflates past")
    n = 200_000
    payload = np.ones(n // 32 + 1, np.uint32)
    text = b"[" + b",".join([b'""'] * n) + b"]"
    order = np.ones(int(math.lgamma(n + 1) / math.log(2) / 32), np.uint32)
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header={"n": n}, payload=payload,
                                                 names=names_section(text, order)))
    cpu = refused_within_limits(env, ["info", arch], "an empty file name")
    assert cpu < 2


def test_9_image_count_beyond_the_payload_is_refused_at_once(env, tmp_path):
    payload = np.random.default_rng(1).integers(0, 2**32, 2560, dtype=np.uint64).astype(np.uint32)   # 10 KB
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header={"n": 5_000_000}, payload=payload,
                                                 names=b""))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        refused_within_limits(env, args, "claims 5000000 images, more than its payload of 2560 words")


@pytest.mark.parametrize("chains", [1, 8])
def test_9_decoding_stops_when_the_payload_runs_out(env, tmp_path, chains):
    """n raised to the most the payload may claim: decoding fails as soon as the stack runs dry, says so, and
    does not blame library versions."""
    words = len(split(env["array"]).payload)
    arch = hostile_archive(env, tmp_path, reseal(env["array"], header={"n": 32 * words, "chains": chains}))
    code, output, cpu, _ = run_child(["decompress", arch, tmp_path / "out.npy", "-m", env["m"], "-q"],
                                     **env["limits"])
    one_line_error(code, output, "the payload ran out after", f"of the {32 * words} images")
    assert "version" not in output and not (tmp_path / "out.npy").exists()


@pytest.mark.parametrize("threads", [2, 255])
def test_9_coding_threads_in_the_header_are_not_obeyed(env, tmp_path, threads):
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header={"coding_threads": threads}))
    refused_within_limits(env, ["decompress", arch, tmp_path / "out", "-m", env["m"]],
                          f"asks for {threads} coding threads")


def test_10_a_symbolic_link_to_a_fifo_is_refused_without_hanging(env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_binary(folder / "a.png")
    os.mkfifo(tmp_path / "fifo")
    (folder / "b.png").symlink_to(tmp_path / "fifo")
    code, output, _, _ = run_child(["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"],
                                   **env["limits"], timeout=60)
    one_line_error(code, output, "b.png: is not a regular file")


def png_header_only(path: Path, width: int, height: int) -> None:
    """A 1-bit PNG of zeros, written row by row so the test never holds the image."""
    def chunk(kind, data):
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))
    z = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_10_huge_images_are_refused_before_their_pixels_are_decoded(env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    png_header_only(folder / "0.png", 13000, 13000)
    for i in range(1, 8):
        os.link(folder / "0.png", folder / f"{i}.png")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2 * MB
    refused_within_limits(env, ["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"],
                          "13000x13000 pixels is larger than acncodec codes")
    # A size acncodec codes but the model does not: refused by the model's shape, still before decoding.
    for i in range(8):
        (folder / f"{i}.png").unlink()
        png_header_only(folder / f"{i}.png", 1000, 1000)
    refused_within_limits(env, ["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"],
                          "images are 1000x1000x1 but the model is for 5x6x1")


def test_10_gzipped_idx_inflating_past_its_header_is_refused(env, tmp_path):
    header = (0x803).to_bytes(4, "big") + (1).to_bytes(4, "big") + (8).to_bytes(4, "big") * 2
    z = zlib.compressobj(1, zlib.DEFLATED, 31)      # gzip framing; 1 GiB of zeros behind a 64-byte claim
    body = z.compress(header) + b"".join(z.compress(bytes(1 << 24)) for _ in range(64)) + z.flush()
    (tmp_path / "bomb-idx").write_bytes(body)
    refused_within_limits(env, ["compress", tmp_path / "bomb-idx", tmp_path / "a.acnz", "-m", env["m"], "-q"],
                          "header says 1 images of 8x8 (64 bytes), the file holds more than 64")


def test_11_model_files_that_would_exhaust_memory_are_refused(env, tmp_path):
    payload = torch.load(env["m"], weights_only=True)
    big = dict(payload, config={**payload["config"], "prior_hidden": 40000})
    torch.save(big, tmp_path / "wide.acn")
    code, output, _, _ = run_child(["model-info", tmp_path / "wide.acn"], **env["limits"])
    one_line_error(code, output, "prior_hidden is 40000, more than")
    # weights whose manifest claims 3 GiB, and weights that inflate far past the network's size
    manifest = json.loads(payload["weights"]["manifest"]) + [["huge", "float32", [805306368]]]
    claims = dict(payload, weights={"manifest": json.dumps(manifest), "blob": payload["weights"]["blob"]})
    torch.save(claims, tmp_path / "claims.acn")
    bomb = xz_bomb(512 * MB)
    inflates = dict(payload, weights={"manifest": payload["weights"]["manifest"],
                                      "blob": torch.frombuffer(bytearray(bomb), dtype=torch.uint8)})
    torch.save(inflates, tmp_path / "inflates.acn")
    for name in ("claims.acn", "inflates.acn"):
        code, output, _, _ = run_child(["model-info", tmp_path / name], **env["limits"])
        one_line_error(code, output, "damaged model file")


def test_11_exact_tables_out_of_range_are_one_line(env, tmp_path):
    """A model file whose integer tables break their own rules (here a full-covariance head whose first
    dimension reads the second, which the receiver has not decoded yet; and head masses of another shape),
    resealed with a valid hash: compress and decompress refuse it in one line."""
    from acncodec.quantize import calibration_set, quantise_model
    from acncodec.unconditional import fit_unconditional
    spec = SPECS["binary"]
    model = tiny_model(spec)
    full, selection = fit_unconditional(np.random.default_rng(0).normal(size=(200, 3)), candidates=(1,),
                                        covariance="full")
    exact = quantise_model(model, calibration_set(random_images(spec, 16, seed=9)), full, selection)
    coefs = exact.exact["latent.head_coefs"].copy()
    coefs[:, 0, 1] = 5
    crafted = {"reads-ahead": dict(exact.exact, **{"latent.head_coefs": coefs})}
    diag = quantise_model(model, calibration_set(random_images(spec, 16, seed=9)))
    crafted["head-shape"] = dict(diag.exact, **{"latent.head_masses": diag.exact["latent.head_masses"][:, :, :-1]})
    np.save(tmp_path / "small.npy", random_images(spec, 4).images[..., 0])
    for name, parts in crafted.items():
        base = exact if name == "reads-ahead" else diag
        bad = modelfile.Model(base.net, base.spec, base.unconditional, base.buckets, base.meta, None, "exact1", parts)
        modelfile.save(bad, tmp_path / f"{name}.acn")
        code, output = run_cli(["compress", tmp_path / "small.npy", tmp_path / f"{name}.acnz", "-m",
                                tmp_path / f"{name}.acn", "-q"])
        one_line_error(code, output, f"model {bad.hash[:12]}")
        assert not (tmp_path / f"{name}.acnz").exists()


# ------------------------------------------------------------------------------------ one line, not traces

@pytest.mark.parametrize("text", [b"[" * 100000 + b"]" * 100000, b"[" + b"9" * 5000 + b"]", b"{}", b"\xff\xfe",
                                  b'["a.png", 7]'],
                         ids=["deeply-nested", "5000-digit", "object", "not-utf8", "wrong-type"])
def test_12_names_sections_that_break_the_json_reader(env, tmp_path, text):
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], names=names_section(text)))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        one_line_error(*run_cli(args))


@pytest.mark.parametrize("cut", [0, 10, 86, 87, 100])
def test_12_headers_truncated_or_extended(env, tmp_path, cut):
    raw = split(env["blob"]).header
    forged = raw[:cut] if cut < len(raw) else raw + b"\x00" * 7
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header_bytes=forged))
    one_line_error(*run_cli(["info", arch]))


def test_12_a_full_disk_is_one_line_and_leaves_nothing(env, tmp_path):
    arch = hostile_archive(env, tmp_path, env["array"])
    code, output, _, _ = run_child(["decompress", arch, tmp_path / "out.npy", "-m", env["m"], "-q"], fsize=100)
    one_line_error(code, output, "out.npy: cannot write")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_binary(folder / f"{i}.png", i)
    code, output, _, _ = run_child(["compress", folder, tmp_path / "a.acnz", "-m", env["m"], "-q"], fsize=100)
    one_line_error(code, output, "a.acnz: cannot write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "x.acnz"]


def test_12_an_unwritable_output_folder_is_refused_before_the_work(env, tmp_path, monkeypatch):
    target = Path("/sys/acncodec-test.acnz")
    try:
        target.touch()
        target.unlink()
        pytest.skip("/sys is writable on this machine, so there is no unwritable folder to test the refusal with")
    except OSError:
        pass
    folder = tmp_path / "in"
    folder.mkdir()
    write_binary(folder / "a.png")

    def no_work(*args, **kwargs):
        raise AssertionError("the work started")
    monkeypatch.setattr(codec, "compress", no_work)
    monkeypatch.setattr(codec, "decompress", no_work)
    one_line_error(*run_cli(["compress", folder, target, "-m", env["m"], "-q"]), "/sys: cannot write there")
    arch = hostile_archive(env, tmp_path, env["blob"])
    one_line_error(*run_cli(["decompress", arch, "/sys/acncodec-test", "-m", env["m"], "-q"]),
                   "/sys: cannot write there")
    one_line_error(*run_cli(["compress", folder, folder / "a.png" / "x.acnz", "-m", env["m"], "-q"]),
                   "is not a folder")


def test_13_archive_text_never_reaches_the_terminal_raw(env, tmp_path):
    """Library versions and names are the archive's only strings: forged ones are refused, and what a message
    quotes is escaped."""
    raw = bytearray(split(env["blob"]).header)
    at = raw.index(b"2.13") if b"2.13" in raw else raw.index(b"0.1.0")
    raw[at:at + 4] = b"\x1b[31"
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], header_bytes=bytes(raw)))
    one_line_error(*run_cli(["info", arch]), "invalid library version text")
    names = sorted(["fake\nrestored 8 images.png", "\x1b[2Jclear.png"] + [f"z{i}.png" for i in range(6)])
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], names=names_section(json.dumps(names).encode())))
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        code, output = run_cli(args)
        one_line_error(code, output, "control character")
        assert "restored 8 images" not in output.replace("\\n", " ")


def test_14_a_truncated_archive_is_refused_before_torch_loads(env, tmp_path):
    arch = hostile_archive(env, tmp_path, env["blob"][:-40])
    for args in (["info", arch], ["decompress", arch, tmp_path / "out", "-m", env["m"]]):
        code, output, cpu, _ = run_child(args, cpu_seconds=1)
        one_line_error(code, output, "checksum mismatch")
    code = ("import sys; from acncodec.archive import parse; from acncodec.errors import AcnError\n"
            "try:\n    parse(open(sys.argv[1], 'rb').read())\nexcept AcnError:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, str(arch)], check=True)


def test_version_1_archives_name_the_release_that_reads_them(env, tmp_path):
    arch = hostile_archive(env, tmp_path, reseal(env["blob"], version=1))
    one_line_error(*run_cli(["info", arch]), "archive format version 1 is read by acncodec 0.1.0")


def test_the_header_is_compact_and_round_trips(env):
    parsed = codec.parse(env["blob"])
    assert parsed.section_sizes["header"] < 200
    assert parsed.header.chains == 1 and parsed.header.n == 8
    assert type(parsed.header).from_bytes(parsed.header.to_bytes(), "x") == parsed.header
