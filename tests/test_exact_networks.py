"""The integer networks of numerics "exact1" (made by acncodec/quantize.py, run by acncodec/coding/intnet.py
in numpy): the full and incremental passes give identical integer logits for any batch size, a row's outputs do
not depend on its batch, and the integers stay close to the float network they were quantised from."""

import numpy as np
import pytest
import torch

from acncodec import modelfile
from acncodec.coding import intnet
from acncodec.quantize import quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, step_through, tiny_model

FRAC = 12   # output formats used here: codes, prior outputs and logits at 2^-12


@pytest.fixture(scope="module", params=list(SPECS))
def quantised(request):
    spec = SPECS[request.param]
    model = tiny_model(spec)
    images = to_tensor(random_images(spec, 64).images)
    stored = quantise_networks(model.net, images, FRAC, FRAC, FRAC).to_dict()
    return model, intnet.IntNetworks.from_dict(stored), images.numpy(), stored


def incremental_logits(decoder, x: np.ndarray, z: np.ndarray, threads: int = 1) -> np.ndarray:
    return step_through(decoder.stepper(z, threads), x, decoder.outputs)


def test_values_are_integers_and_close_to_the_float_network(quantised):
    model, q, images, _ = quantised
    x = torch.from_numpy(images)
    with torch.no_grad():
        codes = q.encoder(images)
        assert np.array_equal(codes, np.round(codes))
        # quantisation error of a few output steps at most (measured: below 1.2 steps on these models)
        assert np.abs(codes / 2 ** FRAC - model.net.encoder(x).numpy()).max() < 4 * 2.0 ** -FRAC
        raw = q.prior(codes)
        mixture = model.net.prior(torch.from_numpy(codes).float() / 2 ** FRAC)
        assert np.abs(raw[..., 1] / 2 ** FRAC - mixture.means.numpy()).max() < 4 * 2.0 ** -FRAC
        logits = q.decoder.logits(images, codes)
        assert np.array_equal(logits, np.round(logits))
        float_logits = model.net.decoder.logits(x, torch.from_numpy(codes).float() / 2 ** FRAC)
        float_logits = float_logits.permute(0, 1, 3, 4, 2).double().numpy()
        assert np.abs(logits / 2 ** FRAC - float_logits).max() < 4 * 2.0 ** -FRAC


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_incremental_and_full_pass_agree_bit_for_bit(quantised, batch):
    _, q, images, _ = quantised
    x = images[:batch]
    codes = q.encoder(x)
    full = q.decoder.logits(x, codes)
    assert np.array_equal(incremental_logits(q.decoder, x, codes), full)
    # a row's outputs do not depend on the batch it is in
    assert np.array_equal(q.encoder(images)[:batch], codes)
    assert np.array_equal(q.decoder.logits(images, q.encoder(images))[:batch], full)
    assert np.array_equal(q.prior(q.encoder(images))[:batch], q.prior(codes))


@pytest.mark.parametrize("shared", [False, True], ids=["helper-finishes", "shared"])
def test_a_helper_thread_for_the_next_rows_changes_no_logit(quantised, monkeypatch, shared):
    """With two threads the stepper computes each next row's vertical stack on a helper thread while the
    current row is decoded, column by column as the pixels it reads come, and finishes it at the row's start
    (the helper alone, or in big rounds with the decoding thread making a share of the images' whole rows): every
    logit equals the full pass's, every layer's columns of every row are computed once for every image, and the
    helper did some of every row but the first."""
    import threading
    _, q, images, _ = quantised
    x = images[:7]
    codes = q.encoder(x)
    where = []
    real = intnet.Stepper._vertical

    def watched(self, work, n, end):
        if end > work.done[n]:
            images = range(len(x))[work.images]
            where.append((work.row, n, work.done[n], end, threading.current_thread().name, images))
        return real(self, work, n, end)
    monkeypatch.setattr(intnet.Stepper, "_vertical", watched)
    conditioned = []
    condition = intnet.Decoder.condition

    def watched_condition(self, z, compiled=True):
        conditioned.append((threading.current_thread().name, len(z)))
        return condition(self, z, compiled)
    monkeypatch.setattr(intnet.Decoder, "condition", watched_condition)
    monkeypatch.setattr(intnet, "HELPER_MIN_MACS", 0)     # these tiny rows are below the size that pays
    monkeypatch.setattr(intnet, "SHARE_MIN_IMAGES", 1 if shared else 1 << 30)
    assert np.array_equal(incremental_logits(q.decoder, x, codes, threads=2), q.decoder.logits(x, codes))
    # the stepper's conditioning map: half of the images in each thread (the full pass made its own after)
    assert sorted(conditioned[:2]) == [("MainThread", 4), ("acncodec-rows_0", 3)]
    height, width, layers = x.shape[2], x.shape[3], len(q.decoder.layers)
    for row in range(height):
        for n in range(layers):
            for image in range(len(x)):
                spans = sorted((c0, end) for r, m, c0, end, _, images in where
                               if (r, m) == (row, n) and image in images)
                assert spans[0][0] == 0 and spans[-1][1] == width
                assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    helped = {r for r, _, _, _, name, _ in where if name.startswith("acncodec-rows")}
    assert helped == set(range(1, height))
    split = {r for r, *_, images in where if len(images) < len(x)}
    assert split == (set(range(1, height)) if shared else set())
    if shared:      # the decoding thread's share: whole rows, for the last images, in one go per layer
        mine = [(r, c0, end, images) for r, _, c0, end, name, images in where
                if name == threading.current_thread().name and r > 0]
        share = int(round(intnet.MAIN_SHARE * len(x)))
        assert mine and all((c0, end) == (0, width) and list(images) == list(range(len(x) - share, len(x)))
                            for _, c0, end, images in mine)
    where.clear()
    incremental_logits(q.decoder, x, codes, threads=1)
    assert {entry[4] for entry in where} == {threading.current_thread().name}
    where.clear()
    monkeypatch.setattr(intnet, "HELPER_MIN_MACS", 1 << 40)
    assert np.array_equal(incremental_logits(q.decoder, x, codes, threads=2), q.decoder.logits(x, codes))
    assert {entry[4] for entry in where} == {threading.current_thread().name}


def test_blocks_side_by_side_give_the_same_arrays(quantised, monkeypatch):
    """`encode` and `score` cut their batch into blocks; with PASS_THREADS = 2 two threads run them, and the
    arrays are the ones one thread makes (every number is batch-invariant)."""
    import threading
    from acncodec.coding import exact_numerics
    _, q, images, _ = quantised
    names = set()

    def encoder(x):
        names.add(threading.current_thread().name)
        return q.encoder(x)
    monkeypatch.setattr(exact_numerics, "PASS_THREADS", 1)
    one = exact_numerics._blocks(encoder, len(images), 4, images)
    assert names == {threading.current_thread().name}
    monkeypatch.setattr(exact_numerics, "PASS_THREADS", 2)
    names.clear()
    two = exact_numerics._blocks(encoder, len(images), 4, images)
    assert np.array_equal(one, two) and np.array_equal(one, q.encoder(images))
    assert 1 <= len(names) <= 2 and threading.current_thread().name not in names   # the pool's threads ran them


def test_gate_is_the_rounded_product_of_the_tables(quantised):
    """The one-gather gate equals round(tanh(a) sigmoid(b)) read from the two tables, across and beyond
    both tables' ranges."""
    _, q, _, stored = quantised
    tanh, sigmoid = intnet.Table.from_dict(stored, "tanh"), intnet.Table.from_dict(stored, "sigmoid")
    x = np.arange(-20 * 2 ** 14, 20 * 2 ** 14 + 1, 37, dtype=np.float64)
    pre = np.stack([x, x[::-1]], 1)
    expected = np.floor((tanh(x) * sigmoid(x[::-1]) + 2 ** 13) / 2 ** 14)
    assert np.array_equal(q.decoder.gate(pre)[:, 0], expected)
    exact = np.tanh(x / 2 ** 14) / (1 + np.exp(-x[::-1] / 2 ** 14))
    assert np.abs(expected / 2 ** 14 - exact).max() < 2 ** -13


def test_affine_map_is_the_rounded_integer_map():
    """The scaled-weight map (the scale folded into the weight and the bias) equals round((W x + b) / 2^s),
    halves up, computed in Python integers, for shifts of 0, 1 and many bits, per output and shared."""
    rng = np.random.default_rng(5)
    for shift in (np.array([0, 1, 7, 20, 33]), np.array(9)):
        outs = 5 if shift.ndim else 3
        w = rng.integers(-2 ** 12, 2 ** 12, (outs, 40))
        b = rng.integers(-2 ** 30, 2 ** 30, outs)
        x = rng.integers(-2 ** 20, 2 ** 20, (17, 40))
        x[0, :3] = 2 ** 25                      # beyond the bound: clamped first
        aff = intnet.Affine(w, b, shift, bound=2 ** 20)
        aff.check_bound()
        shifts = np.broadcast_to(shift, (outs,))
        xc = np.clip(x, -2 ** 20, 2 ** 20)
        expected = [[(sum(int(a) * int(c) for a, c in zip(row, w[o])) + int(b[o])
                      + (1 << int(shifts[o]) >> 1)) >> int(shifts[o]) for o in range(outs)] for row in xc]
        assert aff(x.astype(np.float64)).tolist() == expected


@pytest.mark.parametrize("kernel, stride, padding, size", [(4, 2, 1, 7), (4, 2, 1, 5), (3, 2, 1, 6), (3, 1, 1, 4),
                                                            (5, 3, 2, 4)])
def test_transposed_convolution_skips_the_zeros_without_changing_a_bit(kernel, stride, padding, size):
    """`upsample_conv` computes the convolution over the input with zeros inserted (its definition) from the
    input's samples alone: every output equals the zero-stuffed convolution's."""
    rng = np.random.default_rng(kernel * 10 + stride)
    cin, cout = 3, 4
    x = rng.integers(-2 ** 15, 2 ** 15, (2, size, size + 1, cin)).astype(np.float64)
    aff = intnet.Affine(rng.integers(-2 ** 10, 2 ** 10, (cout, cin * kernel * kernel)),
                        rng.integers(-2 ** 20, 2 ** 20, cout), 6, bound=2 ** 14)
    stuffed = np.zeros((2, (size - 1) * stride + 1, size * stride + 1, cin))
    stuffed[:, ::stride, ::stride] = x
    p = kernel - 1 - padding
    expected = intnet.conv(intnet.pad(stuffed, p, p, p, p), aff, (kernel, kernel))
    assert np.array_equal(intnet.upsample_conv(x, aff, kernel, stride, padding), expected)
    assert np.array_equal(intnet.upsample_conv(x, aff, kernel, stride, padding, compiled=False), expected)
    relu = intnet.upsample_conv(x, aff, kernel, stride, padding, relu=True)
    assert np.array_equal(relu, np.maximum(expected, 0.0)) and (expected < 0).any()
    assert np.array_equal(intnet.upsample_conv(x, aff, kernel, stride, padding, relu=True, compiled=False), relu)


def test_joined_maps_give_each_maps_outputs():
    """Maps of one input side by side (the decoder's per-layer conditioning maps) give the same integers as
    each map alone; maps that clamp differently stay apart."""
    rng = np.random.default_rng(9)
    maps = [intnet.Affine(rng.integers(-99, 99, (4, 6)), rng.integers(-999, 999, 4), s, bound=500)
            for s in (3, np.array([0, 2, 4, 6]), 5)]
    maps.append(intnet.Affine(rng.integers(-99, 99, (2, 6)), rng.integers(-999, 999, 2), 1, bound=70))
    joined = intnet.joined(maps)
    assert len(joined) == 2
    x = rng.integers(-900, 900, (11, 6)).astype(np.float64)
    assert np.array_equal(np.concatenate([m(x) for m in joined], -1), np.concatenate([m(x) for m in maps], -1))


def test_round_trip_through_a_model_files_arrays(quantised):
    """Stored the way a model file stores them (integer-valued arrays narrowed to small integer types and
    restored), the networks compute the same integers."""
    _, q, images, stored = quantised
    manifest, blob = modelfile.pack_arrays(stored, narrow=True)
    assert any(dtype != narrow for _, dtype, narrow, _ in manifest)
    again = intnet.IntNetworks.from_dict(modelfile.unpack_arrays(manifest, blob))
    codes = q.encoder(images)
    assert np.array_equal(again.encoder(images), codes)
    assert np.array_equal(again.prior(codes), q.prior(codes))
    assert np.array_equal(again.decoder.logits(images, codes), q.decoder.logits(images, codes))


def test_accumulators_are_proven_below_2_to_the_53(quantised):
    _, q, _, stored = quantised
    for a in q.maps():
        a.check_bound()
        assert np.abs(a.weight).max() < 2 ** 15
    # a stored map whose accumulator could pass 2^53 is refused when the networks are read
    crafted = {k: (np.asarray(v) * 2.0 ** 30 if k == "encoder.fc0.weight" else v) for k, v in stored.items()}
    with pytest.raises(ValueError, match="2\\^53"):
        intnet.IntNetworks.from_dict(crafted)


# ----------------------------------------------------------------------------------------------- the codec
@pytest.fixture(scope="module", params=[(name, numerics) for numerics in ("exact1", "exact2") for name in SPECS],
                ids=lambda p: f"{p[0]}-{p[1]}")
def exact_model(request, tmp_path_factory):
    """A tiny exact model, saved and loaded back (the integer parts travel through the model file); exact2's
    decoder maps are narrow (tests/test_narrow_maps.py)."""
    from acncodec import modelfile
    from acncodec.quantize import quantise_model
    name, numerics = request.param
    spec = SPECS[name]
    model = quantise_model(tiny_model(spec), to_tensor(random_images(spec, 64, seed=5).images), numerics=numerics)
    path = tmp_path_factory.mktemp("exact") / "m.acn"
    assert modelfile.save(model, path) == model.hash
    loaded = modelfile.load(path)
    assert loaded.numerics == numerics and loaded.hash == model.hash
    return spec, loaded


def test_exact_round_trip_every_pixel_and_rate(exact_model):
    from acncodec import codec
    from acncodec.coding.numerics import for_model
    spec, model = exact_model
    images = random_images(spec, 24, names=True)
    blob, report = codec.compress(images, model, chains=3, progress=False, estimate=False)
    out, _ = codec.decompress(blob, model, progress=False)
    key = lambda s: sorted(zip(s.names, (im.tobytes() for im in s.images)))
    assert len(out) == len(images) and key(out) == key(images)
    # the rate: at most the pixels' cost under the exact model's own probabilities (given the posterior's
    # likeliest buckets), plus each latent dimension at the 28-bit floor of a mass, plus the seed words
    pm = for_model(model)
    assert pm.full_pass_exact
    x = images.images.transpose(0, 3, 1, 2).astype(np.int64)
    codes = pm.encode(x)
    buckets = pm.posterior_probs(codes).argmax(-1)
    probs = pm.score(x, buckets)
    p = np.where(x == 1, probs, 1 - probs) if spec.levels == 2 else np.take_along_axis(probs, x[..., None], -1)[..., 0]
    pixel_bits = -np.log2(p).sum()
    payload_bits = report["payload_nats_per_image"] * len(images) / np.log(2)
    assert payload_bits < pixel_bits + len(images) * model.config.latent_dim * 28 + report["initial_bits"]


def test_exact_score_equals_the_stepper(exact_model):
    """The protocol may score a round with one full pass: every probability equals the stepper's."""
    from acncodec.coding.numerics import for_model
    from acncodec.coding.raster import raster
    spec, model = exact_model
    pm = for_model(model)
    x = random_images(spec, 7).images.transpose(0, 3, 1, 2).astype(np.int64)
    buckets = pm.posterior_probs(pm.encode(x)).argmax(-1)
    full = pm.score(x, buckets)
    seen = []
    raster(pm.stepper(buckets), 7, pm.shape, lambda pred, i, j, c: (seen.append((pred, i, j, c)), x[:, c, i, j])[1])
    for pred, i, j, c in seen:
        assert np.array_equal(pred, full[:, c, i, j])


# ------------------------------------------------------------------------------- other machines' settings
def test_integer_outputs_are_identical_under_other_cpu_settings(tmp_path):
    """Fresh processes under oneDNN SSE4.1/AVX2, MKL's compatible path, ATen's default kernels, numpy without
    AVX-512, 1 and 2 threads (tests/test_portability.py's harness) compute the very same integers as here.
    (Archives decoding in those processes: tests/test_portability.py.)"""
    from acncodec import modelfile
    from acncodec.quantize import calibration_set, quantise_model
    from tests.exact_check import network_digests
    from tests.test_portability import outputs_everywhere
    for name, spec in SPECS.items():
        for numerics in ("exact1", "exact2"):     # exact2: float32 sums (tests/test_narrow_maps.py)
            model = quantise_model(tiny_model(spec), calibration_set(random_images(spec, 64, seed=5)),
                                   numerics=numerics)
            modelfile.save(model, tmp_path / f"{name}-{numerics}.acnm")
            np.save(tmp_path / f"{name}-{numerics}.npy", to_tensor(random_images(spec, 64, seed=9).images).numpy())
    here = network_digests(str(tmp_path))
    assert len(here) == 2 * len(SPECS)
    reports = outputs_everywhere("tests.exact_check:network_digests", str(tmp_path))
    differing = sorted(name for name, r in reports.items() if r["result"] != here)
    assert not differing, f"integer network outputs changed under {differing}"


# ----------------------------------------------------------------------------------------------- the CLI
def test_cli_quantize_writes_an_exact_model_and_refuses_to_overwrite(tmp_path):
    from click.testing import CliRunner
    from acncodec import modelfile
    from acncodec.cli import main
    spec = SPECS["digits-like"]
    float_model = tiny_model(spec)
    modelfile.save(float_model, tmp_path / "float.acn")
    from acncodec.data import level_grid
    np.save(tmp_path / "train.npy", level_grid(spec.levels)[random_images(spec, 30).images[..., 0]])
    args = ["quantize", str(tmp_path / "float.acn"), "-o", str(tmp_path / "exact.acn"), "--data",
            str(tmp_path / "train.npy"), "--images", "20"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    exact = modelfile.load(tmp_path / "exact.acn")
    assert exact.numerics == "exact1" and exact.meta["quantised_from"] == float_model.hash
    assert exact.meta["calibration_images"] == 20 and exact.hash[:12] in result.output
    before = (tmp_path / "exact.acn").read_bytes()
    again = CliRunner().invoke(main, args)
    assert again.exit_code != 0 and "--force" in again.output and "Traceback" not in again.output
    assert (tmp_path / "exact.acn").read_bytes() == before
    twice = CliRunner().invoke(main, ["quantize", str(tmp_path / "exact.acn"), "-o", str(tmp_path / "x.acn"),
                                      "--data", str(tmp_path / "train.npy")])
    assert twice.exit_code != 0 and "already an exact model" in twice.output
    assert not (tmp_path / "x.acn").exists()


# ----------------------------------------------------------------------------------------- the model file
def test_quantising_twice_gives_the_same_model():
    from acncodec.quantize import calibration_set, quantise_model
    spec = SPECS["grey"]
    model, images = tiny_model(spec), random_images(spec, 64, seed=5)
    assert quantise_model(model, calibration_set(images)).hash == quantise_model(model, calibration_set(images)).hash


def test_exact_model_file_without_weights_codes_without_torch(exact_model, tmp_path):
    """Version 4 without float weights: same hash, the same archive bytes, decoded in a process that never
    imports torch; its float network is the one the integer maps stand for."""
    import subprocess
    import sys
    from acncodec import codec
    spec, model = exact_model
    path = tmp_path / "bare.acn"
    assert modelfile.save(model, path, weights=False) == model.hash
    bare = modelfile.load(path)
    assert bare.hash == model.hash and not bare.has_weights and model.has_weights
    images = random_images(spec, 6)
    blob, _ = codec.compress(images, model, chains=2, progress=False, estimate=False)
    again, _ = codec.compress(images, bare, chains=2, progress=False, estimate=False)
    assert again == blob
    (tmp_path / "a.acnz").write_bytes(blob)
    script = ("import sys, numpy as np; from acncodec import codec, modelfile; "
              "out, _ = codec.decompress(open(sys.argv[2], 'rb').read(), modelfile.load(sys.argv[1]), progress=False); "
              "np.save(sys.argv[3], out.images); assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "a.acnz"), str(tmp_path / "out.npy")],
                   check=True)
    key = lambda a: sorted(im.tobytes() for im in a)
    assert key(np.load(tmp_path / "out.npy")) == key(images.images)
    x = torch.from_numpy(images.images.transpose(0, 3, 1, 2).astype(np.int64))
    with torch.no_grad():
        assert (bare.net.encoder(x) - model.net.encoder(x)).abs().max() < 1e-2


@pytest.mark.parametrize("damage", ["truncated", "trailing", "flipped", "header", "magic-only", "hash"])
def test_damaged_exact_model_files_are_refused(exact_model, tmp_path, damage):
    from acncodec.errors import AcnError
    _, model = exact_model
    path = tmp_path / "m.acn"
    modelfile.save(model, path, weights=False)
    data = path.read_bytes()
    length = int.from_bytes(data[8:12], "little")
    if damage == "truncated":
        data = data[:-50]
    elif damage == "trailing":
        data += b"\0"
    elif damage == "flipped":
        data = data[:-200] + bytes([data[-200] ^ 0x40]) + data[-199:]
    elif damage == "header":
        data = data[:12] + data[12:12 + length].replace(b'"sections"', b'"sectionz"') + data[12 + length:]
    elif damage == "magic-only":
        data = data[:10]
    else:   # a changed integer weight, re-packed consistently: only the hash can see it
        import json
        header = json.loads(data[12:12 + length])
        arrays = modelfile.unpack_arrays(header["sections"]["exact"]["arrays"], data[12 + length:12 + length
                                         + header["sections"]["exact"]["bytes"]])
        arrays["net.encoder.fc1.weight"] = arrays["net.encoder.fc1.weight"].copy()
        arrays["net.encoder.fc1.weight"][0, 0] += 1
        manifest, blob = modelfile.pack_arrays(arrays, narrow=True)
        rest = data[12 + length + header["sections"]["exact"]["bytes"]:]
        header["sections"]["exact"] = {"arrays": manifest, "bytes": len(blob)}
        text = json.dumps(header).encode()
        data = data[:8] + len(text).to_bytes(4, "little") + text + blob + rest
    path.write_bytes(data)
    with pytest.raises(AcnError, match="damaged|hash"):
        modelfile.load(path)


@pytest.mark.parametrize("kind", SPECS)
def test_the_senders_full_pass_writes_the_replays_bytes(kind, monkeypatch):
    """Where the numerics make it exact (exact1), the sender scores a round's pixels in one full pass instead of
    replaying the stepper, and computes every datum's code once in large batches instead of in each round's
    batch. Both are only speed changes: the archive is byte for byte the one the step-by-step, round-by-round
    sender writes, in the plain and the set orders, and it decodes exactly."""
    from acncodec import codec
    from acncodec.coding.exact_numerics import ExactModel
    from helpers import tiny_exact_model
    spec = SPECS[kind]
    model, images = tiny_exact_model(spec), random_images(spec, 7, seed=2)
    for order in ("tour", "original", "set", "associative"):
        fast, _ = codec.compress(images, model, order=order, chains=3, progress=False, estimate=False)
        with monkeypatch.context() as m:
            m.setattr(ExactModel, "full_pass_exact", False)
            m.setattr(ExactModel, "batch_invariant", False)
            replayed, _ = codec.compress(images, model, order=order, chains=3, progress=False, estimate=False)
        assert fast == replayed
        out, _ = codec.decompress(fast, model, progress=False)
        assert sorted(im.tobytes() for im in out.images) == sorted(im.tobytes() for im in images.images)
