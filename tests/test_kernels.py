"""The compiled kernels (acncodec/coding/kernels.py, numba) give numpy's numbers bit for bit: the per-pixel step
and the full pass, for exact1's wide maps (float64) and exact2's narrow ones (float32), every kind of image, and
the pixel probabilities; without numba the stepper runs the numpy step."""

import numpy as np
import pytest

from acncodec.coding import intnet
from acncodec.quantize import quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, step_through, tiny_model

FRAC = 12


def stepped_logits(decoder, x, z, compiled):
    stepper = intnet.Stepper(decoder, z, compiled=compiled)
    assert (stepper.compiled is not None) == compiled
    return step_through(stepper, x, decoder.outputs)


@pytest.mark.parametrize("narrow", [False, True], ids=["exact1", "exact2"])
@pytest.mark.parametrize("name", list(SPECS))
def test_compiled_step_equals_the_numpy_step(name, narrow):
    spec = SPECS[name]
    images = to_tensor(random_images(spec, 13, seed=3).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC,
                                                          narrow=narrow).to_dict())
    x = images.numpy()
    z = nets.encoder(x)
    compiled = stepped_logits(nets.decoder, x, z, True)
    assert np.array_equal(compiled, stepped_logits(nets.decoder, x, z, False))
    full = nets.decoder.logits(x, z)
    assert np.array_equal(compiled, full)
    assert np.array_equal(full, nets.decoder.logits(x, z, compiled=False))


def test_without_numba_the_stepper_runs_numpy(monkeypatch):
    spec = SPECS["digits-like"]
    images = to_tensor(random_images(spec, 5).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC).to_dict())
    monkeypatch.setattr(intnet, "_kernels", lambda: None)
    x = images.numpy()
    z = nets.encoder(x)
    stepper = intnet.Stepper(nets.decoder, z)
    assert stepper.compiled is None
    assert np.array_equal(stepped_logits(nets.decoder, x, z, False), nets.decoder.logits(x, z))


def test_ranked_gate_tables_hold_every_entry():
    """`intnet.ranked`: every entry of a table whose steps are 0 or 1, and its end value past the end (the clip),
    read back compiled; tables with other steps stay plain."""
    from acncodec.coding import kernels
    from numba import njit

    @njit
    def read(table, indices):
        last = np.float64(kernels._last(table))
        return np.array([kernels._entry(table, kernels._index(last, 0.0, np.float64(i))) for i in indices])

    rng = np.random.default_rng(5)
    for length, first in ((1, -300), (15, 7), (16, -2 ** 15), (17, 2 ** 15 - 20), (1000, -300), (4097, -2048)):
        table = (first + np.concatenate([[0], np.cumsum(rng.integers(0, 2, length - 1))])).astype(np.int16)
        ranks = intnet.ranked(table)
        assert ranks is not None and ranks.nbytes <= 4 * (length // 16 + 1)
        indices = np.arange(-3, 16 * len(ranks) + 70)
        want = table[np.clip(indices, 0, length - 1)].astype(np.int64)
        assert np.array_equal(read(ranks, indices), want)
        assert np.array_equal(read(table, indices), want)
    assert intnet.ranked(np.array([0, 1, 3], np.int16)) is None          # a step of 2
    assert intnet.ranked(np.array([0, 1, 0], np.int16)) is None          # a step down
    assert intnet.ranked(np.array([0.0, 0.5])) is None                   # not integers
    assert intnet.ranked(np.array([2 ** 15 - 1, 2 ** 15])) is None       # beyond int16


@pytest.mark.parametrize("name", ["binary", "grey"])
def test_compiled_step_reads_plain_tables_alike(name, monkeypatch):
    """Where a gate table cannot be ranked, the kernels read it as it is: the same logits."""
    spec = SPECS[name]
    images = to_tensor(random_images(spec, 7, seed=4).images)
    parts = quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC, narrow=True).to_dict()
    x = images.numpy()
    ranked = intnet.IntNetworks.from_dict(parts)
    monkeypatch.setattr(intnet, "ranked", lambda table: None)
    plain = intnet.IntNetworks.from_dict(parts)
    assert [t.dtype for t in ranked.decoder.gate.compiled_tables] == [np.uint32, np.uint32]
    assert [t.dtype for t in plain.decoder.gate.compiled_tables] == [np.int16, np.int16]
    z = ranked.encoder(x)
    want = stepped_logits(ranked.decoder, x, z, True)
    assert np.array_equal(stepped_logits(plain.decoder, x, z, True), want)
    assert np.array_equal(plain.decoder.logits(x, z), want)


def test_floor_divide_by_reciprocal_is_exact():
    """`kernels._floor_divide` is a // b where the rounded reciprocal lands on either side of an integer quotient."""
    from acncodec.coding import kernels
    divide = kernels._floor_divide.py_func
    rng = np.random.default_rng(0)
    cases, high, low = 0, 0, 0
    for b in [1, 3, 7, 2 ** 20 - 1, 2 ** 33 + 1, *rng.integers(2, 2 ** 34, 300).tolist()]:
        for k in [0, 1, 2 ** 16 + 3, 2 ** 28 - 5, *rng.integers(0, 2 ** 28, 20).tolist()]:
            for a in (k * b - 1, k * b, k * b + 1, k * b + b - 1):
                if not 0 <= a < 2 ** 62:
                    continue
                estimate = int(float(a) * (1.0 / b))
                high, low = high + (estimate > a // b), low + (estimate < a // b)
                assert divide(np.int64(a), np.int64(b), 1.0 / b) == a // b, (a, b)
                cases += 1
    a, b = 2 ** 61 + 5, 2 ** 33 + 1                         # compiled too
    assert kernels._floor_divide(np.int64(a), np.int64(b), 1.0 / b) == a // b
    assert cases > 10000 and high > 0 and low > 0          # both corrections were needed somewhere


@pytest.mark.parametrize("raw_bits", [20, 40, 62, 70])
def test_compiled_normalisation_divides_exactly(raw_bits):
    """`kernels._normalised` (its floors by multiplying with a rounded reciprocal, then one correction) gives
    `exact_tables.normalise_masses`' masses: weights up to the largest the shift allows, quotients a hair either
    side of an integer, rows of one weight, rows that shift to zero."""
    from acncodec.coding import exact_tables as tables
    from acncodec.coding import kernels
    rng = np.random.default_rng(raw_bits)
    shift = tables.raw_shift(raw_bits)
    top = np.int64(2) ** min(raw_bits, 62) - 1
    rows = []
    for n in (2, 3, 17, 256):
        rows += [rng.integers(0, top, n, endpoint=True) for _ in range(200)]
        rows += [np.full(n, top), np.zeros(n, np.int64), np.eye(1, n, n // 2, dtype=np.int64)[0] * top]
        big = np.full(n, top)
        big[0] = top - (np.int64(1) << shift)                  # the quotient just below an integer
        rows.append(big)
    for raw in rows:
        raw = np.asarray(raw, dtype=np.int64)
        want = tables.normalise_masses(raw, raw_bits)
        got = np.empty(len(raw))
        kernels._normalised(raw.copy(), shift, tables.MASS_BITS, got)
        assert np.array_equal(got, tables.to_constriction(want)), (len(raw), raw[:4])


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_compiled_probabilities_equal_the_tables(levels):
    """`kernels.pixel_probs` gives `exact_tables.pixel_probs`' numbers, bit for bit: logits anywhere (beyond the
    exp table's ends too), ties for the likeliest level."""
    from acncodec.coding import exact_tables as tables
    from acncodec.coding import kernels
    pixel = tables.PixelTables.build(levels)
    rng = np.random.default_rng(levels)
    outputs = 1 if levels == 2 else levels
    logits = rng.integers(-2 ** 18, 2 ** 18, (300, outputs)).astype(np.float64)
    logits[:40] = rng.integers(-2 ** 12, 2 ** 12, (40, outputs))         # near one another: many levels count
    logits[40:50] = 7.0                                                   # all tied
    logits[50:60, :outputs // 2 + 1] = 2 ** 17                           # ties for the top, far from the rest
    logits[60] = 0.0
    exp = pixel.exp
    got = kernels.pixel_probs(logits, exp.dense, exp.start, tables.MASS_BITS, tables.EXP_BITS,
                              tables.raw_shift(tables.EXP_BITS + 1), np.empty(logits.shape))
    want = tables.pixel_probs(pixel, logits.astype(np.int64))
    assert np.array_equal(got[:, 0] if levels == 2 else got, want)
    if levels > 2:
        assert np.all(got.sum(1) == 1.0) and got.min() > 0


@pytest.mark.parametrize("model_name", ["digits", "binarized-mnist"])
def test_compiled_prior_masses_equal_the_tables(model_name, monkeypatch):
    """`kernels.prior_masses` (through `ExactModel.prior_probs`) gives `exact_tables.prior_masses`' numbers, bit for
    bit: raw outputs within the tables and beyond every table's ends and the means' clamp, ties of weights."""
    from acncodec import registry
    from acncodec.coding import exact_numerics
    from acncodec.coding import exact_tables as tables
    pm = exact_numerics.ExactModel(registry.by_name(model_name).load())
    raw = pm.nets.prior(np.zeros((1, pm.latent.dim)))
    rng = np.random.default_rng(1)
    shape = (40,) + raw.shape[1:]
    raw = np.stack([rng.integers(-2 ** 22, 2 ** 22, shape[:-1]),                          # weight logits
                    rng.integers(-(80 << tables.CODE_FRAC), 80 << tables.CODE_FRAC, shape[:-1]),   # means
                    rng.integers(-2 ** 22, 2 ** 22, shape[:-1])], -1)                    # scale pre-activations
    raw[:10] //= 2 ** 12                                     # within the tables
    raw[10:12, :, :, 0] = 5                                  # tied weights
    want = tables.to_constriction(tables.prior_masses(pm.latent, raw))
    got = exact_numerics._kernels().prior_masses(raw, *pm._prior_args(raw.shape[-2]),
                                                 np.empty(want.shape))
    assert np.array_equal(got, want)
    codes = rng.integers(-3 << tables.CODE_FRAC, 3 << tables.CODE_FRAC, (16, pm.latent.dim))
    compiled = pm.prior_probs(codes)
    with monkeypatch.context() as m:      # the round's codes shared among two threads: the same numbers
        m.setattr(exact_numerics, "PASS_THREADS", 2)
        m.setattr(exact_numerics, "PRIOR_SPLIT", 3)
        calls = []
        m.setattr(pm, "_prior_probs", lambda c, f=pm._prior_probs: calls.append(len(c)) or f(c))
        assert np.array_equal(pm.prior_probs(codes), compiled) and calls == [8, 8]
    monkeypatch.setattr(exact_numerics, "_kernels", lambda: None)
    assert np.array_equal(compiled, pm.prior_probs(codes))


def test_compiled_posterior_masses_equal_the_tables(monkeypatch):
    from acncodec import registry
    from acncodec.coding import exact_numerics
    from acncodec.coding import exact_tables as tables
    pm = exact_numerics.ExactModel(registry.by_name("binarized-mnist").load())
    rng = np.random.default_rng(4)
    codes = rng.integers(-(80 << tables.CODE_FRAC), 80 << tables.CODE_FRAC, (50, pm.latent.dim))  # beyond the clamp
    codes[:20] //= 2 ** 5
    compiled = pm.posterior_probs(codes)
    assert np.array_equal(compiled, tables.to_constriction(tables.posterior_masses(pm.latent, codes)))
    monkeypatch.setattr(exact_numerics, "_kernels", lambda: None)
    assert np.array_equal(compiled, pm.posterior_probs(codes))


@pytest.mark.parametrize("name", list(SPECS))
def test_compiled_encoder_and_conditioning_equal_numpys(name):
    spec = SPECS[name]
    images = to_tensor(random_images(spec, 9, seed=5).images)
    for narrow in (False, True):
        nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC,
                                                              narrow=narrow).to_dict())
        x = images.numpy()
        z = nets.encoder(x)
        assert np.array_equal(z, nets.encoder(x, compiled=False))
        assert np.array_equal(nets.decoder.condition(z), nets.decoder.condition(z, compiled=False))
