"""Round trips of the bits-back codec, exact to the last pixel, and its refusals.

Exactness does not need a trained model, so these use tiny untrained networks with a fitted p(z): every
probability is as arbitrary as a real model's, and far faster to compute.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from acncodec import codec, modelfile
from acncodec.coding import order
from acncodec.cli import main
from acncodec.data import ImageSet
from acncodec.errors import AcnError
from helpers import SPECS, random_images, tiny_exact_model, tiny_model


def assert_round_trip(images: ImageSet, model, order: str, chains):
    blob, report = codec.compress(images, model, order=order, chains=chains, progress=False, estimate=False)
    out, header = codec.decompress(blob, model, progress=False)
    assert len(out) == len(images) and report["n"] == len(images)
    if order == "original":
        assert np.array_equal(out.images, images.images)
        assert out.names == images.names
    else:  # tour order: the same multiset of (name, image) pairs, every pixel compared
        key = lambda s: sorted(zip(s.names or [""] * len(s), (im.tobytes() for im in s.images)))
        assert key(out) == key(images)
        if images.names is not None:
            lookup = dict(zip(images.names, images.images))
            for name, im in zip(out.names, out.images):
                assert np.array_equal(lookup[name], im)
    return blob, report


@pytest.mark.parametrize("kind", SPECS)
@pytest.mark.parametrize("order", codec.ORDERS)
@pytest.mark.parametrize("n,chains", [(1, None), (2, None), (7, 3), (5, 9)])
def test_round_trip_exact(kind, order, n, chains):
    spec = SPECS[kind]
    assert_round_trip(random_images(spec, n, seed=n), tiny_model(spec), order, chains)


@pytest.mark.parametrize("components", [(1,), (3,)])
def test_round_trip_with_one_or_more_unconditional_components(components):
    spec = SPECS["digits-like"]
    model = tiny_model(spec, components=components)
    assert model.unconditional.components == components[0]
    for order in codec.ORDERS:
        assert_round_trip(random_images(spec, 9), model, order, 2)


def test_round_trip_with_names_and_many_chains():
    spec = SPECS["binary"]
    images = random_images(spec, 40, names=True)
    blob, report = assert_round_trip(images, tiny_model(spec), "tour", 6)
    assert report["section_bytes"]["names"] > 4
    assert report["chains"] == 6 and report["rounds"] >= 40 // 6


def test_chain_layout_is_staggered_and_complete():
    for n in range(1, 300, 7):
        for b in (1, 2, 3, 8, 64, 500):
            lengths = order.chain_layout(n, b)
            assert sum(lengths) == n and lengths == sorted(lengths, reverse=True) and min(lengths) >= 1
            counts = order.active_counts(lengths)
            # The rounds Alice codes first hold few chains: at most 2^k in the k-th round from the end.
            assert all(counts[-k] <= 2 ** k for k in range(1, len(counts) + 1))
    assert order.chain_layout(1000, 10) == [103, 102, 101, 101, 100, 99, 99, 99, 98, 98]


def test_report_has_sizes_and_estimate():
    spec = SPECS["binary"]
    images = random_images(spec, 30)
    blob, report = codec.compress(images, tiny_model(spec), chains=4, progress=False)
    assert report["bytes"] == len(blob) == sum(report["section_bytes"].values())
    assert report["estimate_nats_per_image"] > 0 and report["actual_over_estimate"] > 0
    assert report["bits_per_dim"] == pytest.approx(8 * len(blob) / (30 * 5 * 6))


def test_wrong_model_is_refused_naming_both_hashes():
    spec = SPECS["binary"]
    model, other = tiny_model(spec, seed=0), tiny_model(spec, seed=5)
    blob, _ = codec.compress(random_images(spec, 4), model, progress=False, estimate=False)
    with pytest.raises(AcnError) as e:
        codec.decompress(blob, other, progress=False)
    assert model.hash[:12] in str(e.value) and other.hash[:12] in str(e.value)


def test_data_for_another_model_is_refused():
    with pytest.raises(AcnError, match="model is for"):
        codec.compress(random_images(SPECS["grey"], 3), tiny_model(SPECS["binary"]), progress=False)


@pytest.mark.parametrize("damage", ["flip", "truncate", "append"])
def test_damaged_archive_is_refused(damage):
    spec = SPECS["binary"]
    model = tiny_model(spec)
    blob = bytearray(codec.compress(random_images(spec, 6), model, progress=False, estimate=False)[0])
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x10
    elif damage == "truncate":
        blob = blob[:-7]
    else:
        blob += b"\0"
    with pytest.raises(AcnError):
        codec.decompress(bytes(blob), model, progress=False)


def test_divergence_is_detected(monkeypatch):
    """If the receiver's probabilities differ from the sender's, decoding must fail, not return data. The
    perturbation is checked to change a probability: pixel (0, 0)'s distribution is mixed with a uniform one."""
    from acncodec.coding import float_numerics
    spec = SPECS["digits-like"]
    model = tiny_model(spec)
    blob, _ = codec.compress(random_images(spec, 6), model, progress=False, estimate=False)
    original, changed = float_numerics.FloatStepper.predict, []

    def perturbed(self, i, j, c, pixel):
        p = original(self, i, j, c, pixel)
        if (i, j, c) == (0, 0, 0):
            q = 0.5 * p + 0.5 / p.shape[-1]
            changed.append(not np.array_equal(p, q))
            return q
        return p
    monkeypatch.setattr(float_numerics.FloatStepper, "predict", perturbed)
    with pytest.raises(AcnError, match="diverged"):
        codec.decompress(blob, model, progress=False)
    assert changed and all(changed)


def test_decompress_in_another_process_with_other_threads(tmp_path):
    spec = SPECS["digits-like"]
    model = tiny_model(spec)
    modelfile.save(model, tmp_path / "m.acn")
    images = random_images(spec, 9)
    torch.set_num_threads(2)
    blob, _ = codec.compress(images, model, chains=3, progress=False, estimate=False)
    (tmp_path / "a.bin").write_bytes(blob)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    subprocess.run([sys.executable, "-m", "acncodec.cli", "decompress", str(tmp_path / "a.bin"),
                    str(tmp_path / "out.npy"), "--model", str(tmp_path / "m.acn"), "-q"], check=True, env=env)
    out = np.load(tmp_path / "out.npy")
    decoded, _ = codec.decompress(blob, model, progress=False)
    assert np.array_equal(out, decoded.images[..., 0])
    assert sorted(map(bytes, out[..., None])) == sorted(map(bytes, images.images))


@pytest.mark.parametrize("blas", [1, 2])
def test_coding_shares_the_blas_pools_width_out_and_gives_it_back(monkeypatch, blas):
    """The exact numerics' bytes do not depend on the threads; their speed does. Coding takes the BLAS pool's
    width (`CODING_BLAS_THREADS` where set) as its thread count: with more than one, threads share the blocks
    and the decoder's rows, each on a one-thread BLAS pool. The caller's pool and setting come back after."""
    from threadpoolctl import threadpool_info, threadpool_limits
    from acncodec.coding import exact_numerics
    width = lambda: {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}  # noqa: E731
    seen = {"encode": [], "predict": []}

    def spy(cls, name):
        real = getattr(cls, name)

        def watched(self, *args, **kwargs):
            seen[name].append((width(), exact_numerics.PASS_THREADS))
            return real(self, *args, **kwargs)
        monkeypatch.setattr(cls, name, watched)

    spec = SPECS["binary"]
    model = tiny_exact_model(spec)
    images = random_images(spec, 5, seed=3)
    with threadpool_limits(limits=3, user_api="blas"):
        reference, _ = codec.compress(images, model, chains=2, progress=False, estimate=False)
        monkeypatch.setattr(codec, "CODING_BLAS_THREADS", blas)
        spy(exact_numerics.ExactModel, "encode")      # the sender's codes
        spy(exact_numerics.ExactStepper, "predict")   # the receiver's pixels
        blob, _ = codec.compress(images, model, chains=2, progress=False, estimate=False)
        out, _ = codec.decompress(blob, model, progress=False)
        assert width() == {3}
    assert blob == reference
    assert sorted(im.tobytes() for im in out.images) == sorted(im.tobytes() for im in images.images)  # tour order
    assert exact_numerics.PASS_THREADS is None
    assert seen["encode"] and seen["predict"]
    assert all(w == ({1}, blas) for calls in seen.values() for w in calls)


def test_info_reports_sections_without_decoding(tmp_path):
    spec = SPECS["binary"]
    blob, report = codec.compress(random_images(spec, 12, names=True), tiny_model(spec), progress=False,
                                  estimate=False)
    (tmp_path / "a.acnz").write_bytes(blob)
    result = CliRunner().invoke(main, ["info", str(tmp_path / "a.acnz"), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert info["section_bytes"] == report["section_bytes"] and info["bytes"] == len(blob)
    assert info["header"]["n"] == 12 and info["names"] == 12


def test_cli_order_choices_are_the_archive_orders():
    from acncodec import cli, header
    assert cli.ORDERS == header.ORDERS


@pytest.mark.parametrize("exact", [False, True], ids=["float", "exact"])
def test_torch_is_pinned_to_one_thread_only_where_coding_needs_it(exact, monkeypatch):
    """Float numerics code with torch, whose float results depend on its thread count: compress pins it to one
    thread. An exact compress uses torch only for the sender's own choices (tour, float codes, estimate), which
    no receiver recomputes: it leaves torch its own thread count."""
    spec = SPECS["binary"]
    model = tiny_exact_model(spec) if exact else tiny_model(spec)
    images = random_images(spec, 6, seed=4)
    seen = []
    from acncodec import tour
    tour_for = tour.tour_for

    def watched(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return tour_for(*args, **kwargs)
    monkeypatch.setattr(tour, "tour_for", watched)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        codec.compress(images, model, order="tour", progress=False)
    finally:
        torch.set_num_threads(before)
    assert seen == ([2] if exact else [1])


def test_an_exact_compress_analyses_the_codes_it_codes_without_the_float_encoder(monkeypatch):
    from acncodec import evaluate
    spec = SPECS["binary"]
    model = tiny_exact_model(spec, seed=3)
    images = random_images(spec, 50, seed=4)
    pm = codec.probability_model(model)
    x = codec.channels_first(images.images)
    codes = codec.encode_all(pm, x)
    floats = codec.analysis_codes(model, pm, x, codes)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, codes / 2.0 ** pm.nets.formats["code_frac"])
    encoder = evaluate.encode_all(model.net, torch.from_numpy(x)).numpy()
    assert np.abs(floats - encoder).max() < 0.05 * np.abs(encoder).max()     # the float encoder's, up to quantisation
    monkeypatch.setattr(evaluate, "encode_all", lambda *a, **k: pytest.fail("the float encoder ran"))
    for order in ("tour", "auto"):
        blob, report = codec.compress(images, model, order=order, progress=False)
        out, _ = codec.decompress(blob, model, progress=False)
        assert sorted(im.tobytes() for im in out.images) == sorted(im.tobytes() for im in images.images)
        assert np.isfinite(report["estimate_nats_per_image"])
