"""Narrow decoder maps (numerics "exact2", `quantize.IntAffine.quantise_narrow`): every sum below 2^24, so
float32 computes them exactly; the coder's float32 products give the integers the float64 ones give, and the
full pass still equals the stepper bit for bit. (Round trips, rate and damaged files of exact2 models:
tests/test_exact_networks.py, whose exact models come in both numerics.)"""

import numpy as np
import pytest
import torch

from acncodec.coding import intnet
from acncodec.quantize import IntAffine, quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, tiny_model

FRAC = 12


@pytest.mark.parametrize("fan_in", [16, 480])
def test_narrow_map_sums_stay_below_2_to_the_24_and_follow_the_real_map(fan_in):
    torch.manual_seed(fan_in)
    weight = torch.randn(24, fan_in) * torch.logspace(-3, 1, 24)[:, None]    # outputs of very different scales
    weight[3] = 0.0                                                          # and one of no weight at all
    bias = torch.randn(24) * 0.01     # small enough that no output gives up a weight bit to its bias
    aff = IntAffine.quantise(weight, bias, 14, 14, 3.0, narrow=True)
    coded = intnet.Affine(aff.weight, aff.bias, aff.shift, aff.bound, aff.clamp, aff.in_shift)
    assert coded.float32 and coded.worst_sum() < intnet.FLOAT32_LIMIT
    # each output has its own scale, the finest that keeps its sum of |weights| times the bound within 2^23:
    # one bit more would not
    l1 = aff.weight.abs().sum(1) * aff.bound
    assert (l1 <= 2 ** 23 + 0.5 * fan_in * aff.bound).all() and (l1[l1 > 0] * 2 > 2 ** 23).all() and l1[3] == 0
    x = np.floor(np.random.default_rng(1).uniform(-4 * 2 ** 14, 4 * 2 ** 14, (300, fan_in)))
    x[0] = 2.0 ** 30                                                        # far beyond the bound: clamped
    got = coded(x)
    # the same integers as float64 sums of the rounded, clamped input
    x64 = np.clip(np.floor(x * 2.0 ** -aff.in_shift + 0.5), -aff.bound, aff.bound)
    assert np.array_equal(got, np.floor(x64 @ coded.scaled_weight_t + coded.scaled_bias))
    # ... and close to the real map, output by output: a few per cent of each output's spread at a fan-in of
    # 480, where the budget leaves weights of about 5.5 bits beside 10-bit inputs (measured: 0.9 to 4.3 %)
    real = (x / 2 ** 14).clip(-6.0, 6.0) @ weight.double().numpy().T + bias.double().numpy()
    rms = lambda a: np.sqrt((a ** 2).mean(0))
    assert (rms(got / 2 ** 14 - real) < 0.06 * rms(real)).all()


def test_float32_is_used_only_where_the_sums_fit():
    rng = np.random.default_rng(0)
    w = rng.integers(-63, 64, (8, 480)).astype(np.float64)
    fits = intnet.Affine(w, np.zeros(8), 10, 511.0)
    assert fits.float32
    wide = intnet.Affine(w, np.zeros(8), 10, 2047.0 * 2)        # 480 * 63 * 4094 > 2^24: float64
    assert not wide.float32
    bounded = intnet.Affine(w, np.zeros(8), 10, 512.0, clamp=False, in_shift=3)   # an input within 2^12
    assert bounded.float32
    x12 = rng.integers(-4096, 4097, (50, 480)).astype(np.float64)
    assert np.array_equal(bounded(x12), np.floor(np.floor(x12 / 8 + 0.5) @ bounded.scaled_weight_t
                                                 + bounded.scaled_bias))
    x = rng.integers(-600, 600, (50, 480)).astype(np.float64)
    assert np.array_equal(fits(x), wide.finish(fits.clamped(x) @ fits.scaled_weight_t))


@pytest.mark.parametrize("name", list(SPECS))
def test_narrow_decoder_full_pass_equals_the_stepper_and_stays_close_to_exact1(name):
    spec = SPECS[name]
    model = tiny_model(spec)
    images = to_tensor(random_images(spec, 24).images)
    narrow = intnet.IntNetworks.from_dict(quantise_networks(model.net, images, FRAC, FRAC, FRAC, narrow=True)
                                          .to_dict())
    wide = intnet.IntNetworks.from_dict(quantise_networks(model.net, images, FRAC, FRAC, FRAC).to_dict())
    dec = narrow.decoder
    assert all(a.float32 for layer in dec.layers for a in layer.maps.values())
    assert not any(a.float32 for layer in wide.decoder.layers for a in layer.maps.values())
    x = images.numpy()
    z = narrow.encoder(x)
    full = dec.logits(x, z)
    stepper = dec.stepper(z)
    n, channels, height, width = x.shape
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                assert np.array_equal(stepper.logits(i, j, c, x[:, :, i, j]), full[:, c, i, j])
            stepper.set_pixel(i, j, x[:, :, i, j])
    assert np.abs(full - wide.decoder.logits(x, z)).max() / 2 ** FRAC < 0.25


def test_a_stored_input_shift_out_of_range_is_refused():
    spec = SPECS["digits-like"]
    images = to_tensor(random_images(spec, 8).images)
    stored = quantise_networks(tiny_model(spec).net, images, FRAC, FRAC, FRAC, narrow=True).to_dict()
    key = next(k for k in stored if k.endswith(".in_shift"))
    with pytest.raises(ValueError, match="input shift"):
        intnet.IntNetworks.from_dict(dict(stored, **{key: torch.tensor(-1)}))


def test_a_kernel_part_takes_the_whole_maps_type():
    """The stepper adds a convolution's part sums before the whole map's rounding, so a part is float32 only
    where the whole map is: here each of 3 kernel rows alone would fit 2^24, the whole kernel does not."""
    rng = np.random.default_rng(2)
    cin, kh, kw, out = 4, 3, 3, 5
    weight = np.full((out, cin * kh * kw), 60.0)
    bound = 2.0 ** 24 / (60 * cin * kw) * 0.9          # one kernel row's sum of |w| times bound < 2^24
    whole = intnet.Affine(weight, np.zeros(out), 8, bound)
    part = whole.taps(cin, kh, kw, [0], list(range(kw)))
    assert not whole.float32 and not part.float32
    assert intnet.Affine(part.weight, part.bias, part.shift, part.bound).float32   # on its own it would be
    x = rng.integers(-int(bound), int(bound), (2, kh, kw + 2, cin)).astype(np.float64)
    sums = sum(intnet.conv_sums(x[:, r:r + 1], whole.taps(cin, kh, kw, [r], list(range(kw))), (1, kw))
               for r in range(kh))
    assert sums.dtype == np.float64
    assert np.array_equal(whole.finish(sums), intnet.conv(x, whole, (kh, kw)))
