"""The 16-bit integer products (acncodec/coding/products16.py): every sum exact against int64 arithmetic, the
convolution read where its windows lie, the operands refused outside their range, and the decoder's logits the
same with them as with the float32 products."""

import numpy as np
import pytest

from acncodec.coding import intnet, products16
from acncodec.quantize import quantise_networks
from acncodec.train import to_tensor

from helpers import SPECS, random_images, step_through, tiny_model

#: The 16-bit path exists only where numba compiles for AVX-512BW; elsewhere the coder takes the float32 and
#: float64 products, which tests/test_kernels.py and test_exact_networks.py cover, so there is nothing here to run.
needs_16_bit = pytest.mark.skipif(not products16.available(),
                                  reason="this CPU has no AVX-512BW: the coder takes the float products here")


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
@pytest.mark.parametrize("kh,kw,cin,n,stride", [(3, 5, 32, 28, 1), (2, 3, 6, 5, 1), (1, 3, 2, 1, 1), (3, 5, 48, 7, 1),
                                                (3, 3, 64, 14, 2), (2, 2, 4, 5, 3)])
def test_convolution_reads_its_windows_where_they_lie(kh, kw, cin, n, stride):
    """`conv_row` at n positions of each row, `stride` apart (every column count, so the 4-row steps and the
    single rows both run), equals the gathered windows times the weight, written where q0 and q_step say."""
    rng = np.random.default_rng(n + cin)
    B, H = 3, kh + 2
    x = rng.integers(-2048, 2049, (B, H, (n - 1) * stride + kw + 1, cin)).astype(np.int16)
    w = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (kh * kw * cin, 40))
    packed, offsets = products16.pack(w), products16.conv_offsets(x, kh, kw)
    out = np.full((H * n * B, packed.shape[1]), -1, np.int32)
    for row in range(H - kh + 1):
        for b in range(B):
            products16.conv_row(x, offsets, packed, out, b, row, 1, n, row * n * B + b, B, stride)
    for row in range(H - kh + 1):
        for b in range(B):
            for c in range(n):
                left = 1 + c * stride
                window = x[b, row:row + kh, left:left + kw].reshape(-1).astype(np.int64)
                assert np.array_equal(out[(row * n + c) * B + b, :40], wrapped(window @ w))


@needs_16_bit
@pytest.mark.parametrize("kw,cin", [(2, 4), (3, 32), (3, 1), (3, 3)])
def test_layer_step_reads_hconv_windows_in_place(kw, cin):
    """The layer step's hconv windows (kw Cin consecutive values of the row) times a 16-bit weight: read where
    they lie when kw Cin is even, copied first when odd; the exact sums either way, at every column."""
    from numba import njit
    from acncodec.coding import kernels

    @njit
    def windows(buf, j, kw, window, weight, out):
        kernels._window_products(buf, j, kw, window, weight, out)
        return out

    rng = np.random.default_rng(kw * cin)
    B, W = 6, 5
    buf = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (B, kw - 1 + W + 1, cin)).astype(np.int16)
    w = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (kw * cin, 20))
    packed = products16.pack(w)
    for j in range(W):
        window, out = intnet._scratch(B, packed)
        got = windows(buf, j, kw, window, packed, out)
        want = buf[:, j:j + kw].reshape(B, -1).astype(np.int64) @ w
        assert np.array_equal(got[:, :20], wrapped(want))


def test_split_bits_keep_every_sum_within_32_bits():
    """A wide map splits its inputs where both parts' sums stay within 32 bits, at the bits that make the larger
    part smallest; a weight beyond 16 bits, an unbounded input, or a sum of |weights| too large is refused."""
    assert products16.split_bits(np.array([[3], [-2]]), 2 ** 17) == 9          # larger part 511 (8 bits: 512)
    assert products16.split_bits(np.array([[3], [-2]]), 2 ** 18) == 9          # 512 (8 bits: 1,024; 10: 1,023)
    # an output whose |weights| sum to L takes a split whose larger part is at most (2^31 - 1) / L, and no more
    largest = products16.split_bits(np.array([[1]]), 2 ** 17)
    part = max(2 ** largest - 1, 2 ** 17 // 2 ** largest)
    l1 = products16.SUM_LIMIT // part
    column = np.array([[products16.LIMIT]] * (l1 // products16.LIMIT) + [[l1 % products16.LIMIT]])
    assert products16.split_bits(column, 2 ** 17) == largest
    assert products16.split_bits(np.vstack([column, [[1]]]), 2 ** 17) is None
    assert products16.split_bits(np.array([[products16.LIMIT + 1]]), 10.0) is None
    assert products16.split_bits(np.array([[1]]), np.inf) is None


def wide_map(rng, cin: int, cout: int, kernel: int, bound: float) -> intnet.Affine:
    """A wide map (sums beyond 2^24) that takes the split: random 16-bit weights, each output's |weights| summing
    to at most the split's limit, and two outputs exactly at it (of the largest weights, both signs)."""
    fan_in = kernel * kernel * cin
    p = products16.split_bits(np.ones((1, 1)), bound)
    most = products16.SUM_LIMIT // max(2 ** p - 1, int(np.ceil(bound / 2 ** p)))   # the |weight| sum allowed
    weight = rng.integers(-products16.LIMIT, products16.LIMIT + 1, (cout, fan_in)).astype(np.float64)
    l1 = np.abs(weight).sum(1, keepdims=True)
    weight = np.trunc(weight * np.minimum(1.0, most / l1))
    edge = np.minimum(np.maximum(most - products16.LIMIT * np.arange(fan_in), 0), products16.LIMIT)
    weight[0], weight[1] = edge, -edge
    assert np.abs(weight[0]).sum() == most, "the test's fan-in cannot reach the limit"
    return intnet.Affine(weight, rng.integers(-2 ** 30, 2 ** 30, cout), 12, bound)


@needs_16_bit
@pytest.mark.parametrize("cin,stride,bound,relu", [(64, 2, 68990.0, True), (16, 1, 2 ** 17 - 5.0, False),
                                                   (48, 2, 20000.0, False)])
def test_split_convolution_gives_the_float64_numbers(cin, stride, bound, relu):
    """`kernels.conv` of a wide map with its inputs split in two 16-bit parts (inputs at +-bound, windows at the
    padded edges, strides 1 and 2) equals the float64 products and numpy's `intnet.conv`, every output."""
    from acncodec.coding import kernels
    rng = np.random.default_rng(cin)
    aff = wide_map(rng, cin, 24, 3, bound)
    x = rng.integers(-bound, bound + 1, (2, 9, 8, cin)).astype(np.float64)
    x[0, 0], x[0, 1] = bound, -bound
    x[1, 2] = bound + 7                                           # clamped to the bound first
    weight = aff.window_weight(cin, 3, 3)
    operand = intnet._conv_operand(aff, weight, cin)
    assert operand[0].dtype == np.int32 and operand[3] > 0
    assert not aff.float32
    shape = (2, (9 - 1) // stride + 1, (8 - 1) // stride + 1, 24)
    split = kernels.conv(x, 1, 1, 3, 3, stride, *intnet._reads(aff), *operand, relu, np.empty(shape))
    float64 = kernels.conv(x, 1, 1, 3, 3, stride, *intnet._reads(aff), weight, aff.scaled_bias, np.ones(24), 0, relu,
                           np.empty(shape))
    expected = intnet.conv(intnet.pad(x, 1, 1, 1, 1), aff, (3, 3), stride)
    assert np.array_equal(split, np.maximum(expected, 0.0) if relu else expected)
    assert np.array_equal(split, float64)


@needs_16_bit
def test_encoder_gives_the_float64_codes(monkeypatch):
    """A tiny exact1 encoder: its convolution over an even channel count takes the split 16-bit products, the
    first (one channel) the float64 ones, and the codes are the float64 path's and numpy's."""
    spec = SPECS["binary"]
    images = to_tensor(random_images(spec, 9, seed=5).images)
    nets = intnet.IntNetworks.from_dict(quantise_networks(tiny_model(spec).net, images, 12, 12, 12).to_dict())
    convs, x = nets.encoder.convs, images.numpy()
    cins = [a.weight.shape[1] // 9 for a in convs]
    assert [intnet._conv_operand(a, a.window_weight(c, 3, 3), c)[3] > 0 for a, c in zip(convs, cins)] == [False, True]
    codes = nets.encoder(x)
    monkeypatch.setattr(products16, "available", lambda: False)
    assert [intnet._conv_operand(a, a.window_weight(c, 3, 3), c)[3] for a, c in zip(convs, cins)] == [0, 0]
    assert np.array_equal(codes, nets.encoder(x))
    assert np.array_equal(codes, nets.encoder(x, compiled=False))


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
