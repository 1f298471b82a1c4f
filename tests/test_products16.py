"""The 16-bit integer products (acncodec/coding/products16.py): every sum exact against int64 arithmetic, the
convolution read where its windows lie, the operands refused outside their range, and the decoder's logits the
same with them as with the float32 products."""

import numpy as np
import pytest

from acncodec.coding import intnet, products16
from acncodec.quantize import quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, step_through, tiny_model

#: The 16-bit path exists only where numba compiles for AVX-512BW; elsewhere the coder takes the float32
#: products, which tests/test_kernels.py and test_exact_networks.py cover, so there is nothing here to run.
needs_16_bit = pytest.mark.skipif(not products16.available(),
                                  reason="this CPU has no AVX-512BW: the coder takes the float32 products here")


def wrapped(a: np.ndarray) -> np.ndarray:
    """int64 values as 32-bit two's complement (what a 32-bit sum holds past 2^31)."""
    return ((a + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int64)


@needs_16_bit
@pytest.mark.parametrize("m,k,n", [(4, 2, 16), (1, 1, 1), (7, 15, 12), (13, 480, 64), (9, 720, 96), (6, 96, 48),
                                   (5, 3, 80), (8, 64, 130)])
def test_products_are_exact(m, k, n):
    rng = np.random.default_rng(m * k * n)
    x = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (m, k))
    w = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (k, n))
    x[0], w[:, 0] = -products16.LIMIT, -products16.LIMIT        # the largest products, of both signs
    if m > 1:
        x[1] = products16.LIMIT
    packed = products16.pack(w)
    padded = np.zeros((m, 2 * packed.shape[0]), np.int16)        # an odd K meets the packed weight's zero row
    padded[:, :k] = x
    out = products16.products(padded, packed, np.empty((m, packed.shape[1]), np.int32))
    assert np.array_equal(out[:, :n], wrapped(x @ w))
    assert not out[:, n:].any()                                  # the padding columns add nothing


@needs_16_bit
def test_a_pair_of_the_largest_products_does_not_overflow():
    x = np.full((4, 2), -products16.LIMIT, np.int16)
    out = products16.products(x, products16.pack(np.full((2, 16), -products16.LIMIT)), np.empty((4, 16), np.int32))
    assert (out == 2 * products16.LIMIT ** 2).all() and 2 * products16.LIMIT ** 2 < 2 ** 31


@needs_16_bit
@pytest.mark.parametrize("kh,kw,cin,n", [(3, 5, 32, 28), (2, 3, 6, 5), (1, 3, 2, 1), (3, 5, 48, 7)])
def test_convolution_reads_its_windows_where_they_lie(kh, kw, cin, n):
    """`conv_row` at n positions of each row (every column count, so the 4-row steps and the single rows both
    run) equals the gathered windows times the weight, written where q0 and q_step say."""
    rng = np.random.default_rng(n + cin)
    B, H = 3, kh + 2
    x = rng.integers(-2048, 2049, (B, H, n + kw + 1, cin)).astype(np.int16)
    w = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (kh * kw * cin, 40))
    packed, offsets = products16.pack(w), products16.conv_offsets(x, kh, kw)
    out = np.full((H * n * B, packed.shape[1]), -1, np.int32)
    for row in range(H - kh + 1):
        for b in range(B):
            products16.conv_row(x, offsets, packed, out, b, row, 1, n, row * n * B + b, B)
    for row in range(H - kh + 1):
        for b in range(B):
            for c in range(n):
                window = x[b, row:row + kh, 1 + c:1 + c + kw].reshape(-1).astype(np.int64)
                assert np.array_equal(out[(row * n + c) * B + b, :40], wrapped(window @ w))


def test_operands_outside_the_range_are_refused():
    with pytest.raises(ValueError):
        products16.pack(np.array([[products16.LIMIT + 1]]))
    with pytest.raises(ValueError):
        products16.pack(np.array([[0.5]]))
    assert products16.fits(np.array([[products16.LIMIT]]), products16.LIMIT)
    assert not products16.fits(np.array([[-products16.LIMIT - 1]]), 1.0)
    assert not products16.fits(np.array([[1]]), products16.LIMIT + 0.5)


def narrow_networks(spec_name: str):
    spec = SPECS[spec_name]
    images = to_tensor(random_images(spec, 13, seed=3).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, 12, 12, 12,
                                                          narrow=True).to_dict())
    return nets, images.numpy()


@needs_16_bit
@pytest.mark.parametrize("name", ["binary", "rgb"])
def test_decoder_gives_the_float_products_numbers(name, monkeypatch):
    """A tiny exact2 decoder: its second layer's vconv (even channels) takes the 16-bit path and its first (one
    or three channels) the float one; the full pass and the stepper give the logits of the float path."""
    nets, x = narrow_networks(name)
    dec = nets.decoder
    z = nets.encoder(x)
    assert [a["vconv"][0].dtype for a in dec._compiled_args()] == [np.float32, np.int32]
    assert [a["vin"] for a in dec._compiled_args()] == [np.float32, np.int16]
    full = dec.logits(x, z)
    stepped = step_through(intnet.Stepper(dec, z), x, dec.outputs)
    monkeypatch.setattr(products16, "available", lambda: False)
    dec._args = None
    assert [a["vconv"][0].dtype for a in dec._compiled_args()] == [np.float32, np.float32]
    assert np.array_equal(full, dec.logits(x, z))
    assert np.array_equal(stepped, step_through(intnet.Stepper(dec, z), x, dec.outputs))
    assert np.array_equal(full, dec.logits(x, z, compiled=False))


def test_wide_maps_keep_the_float64_products():
    """exact1's maps (sums up to 2^53) never take the 16-bit path."""
    spec = SPECS["binary"]
    images = to_tensor(random_images(spec, 5).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, 12, 12, 12).to_dict())
    assert all(a["vconv"][0].dtype == np.float64 for a in nets.decoder._compiled_args())
