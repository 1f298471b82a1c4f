"""Compiled (numba) kernels for the exact decoder: `layer_step`, a gated layer's whole horizontal step for one
pixel, which numpy spends some thirty calls on (`intnet.Stepper._stack_numpy`); `write_pixel`, a decoded pixel
into layer 0's inputs; `affine`, one map (the head); `vertical`, a gated layer's vertical stack over some rows
and columns (the stepper's next row, or every row of the full pass, each layer's conditioning terms made there
too); `horizontal`, a gated layer's horizontal stack over every position (the full pass); `conv`, a convolution
in one pass (the encoder's, and each phase of the conditioning map's transposed ones); `pixel_probs`, the pixel
probabilities from the logits (`exact_tables.pixel_probs`); and `prior_masses` and `posterior_masses`, the
latent probabilities (`exact_tables.prior_masses`, `posterior_masses`).

Why compiled: at a round of a few dozen images the step is overhead-bound (bench/results/speed-coding.md):
each numpy call costs about a microsecond whatever its size. Here the input's rounding and clamp, the window
gather, the bias and rounding, the gate's table reads and the residual add are loops in one call; the
matrix products are BLAS products of the same operands (float32 for narrow maps, float64 otherwise), or for a
narrow map on a CPU with AVX-512BW 16-bit integer products (`products16`, picked by `intnet._operand`), and
for a wide map's convolution there 16-bit products of its inputs split in two parts (`intnet._conv_operand`):
each map then comes with its weight, its bias and each output's unit, the power-of-two scale its integer sums
are multiplied by (1 for a float weight, which carries its scale).

Why the numbers are `intnet`'s and `exact_tables`', bit for bit: every value is an integer (times a power of
two), every operation is exact (integers below 2^24 in float32, below 2^53 in float64, 32-bit integer sums
within 2^31; the gate's product below 2^31; the masses' integer arithmetic in int64 on non-negative numbers
where it divides or shifts, a floor division made exactly from a float estimate and integer checks,
`_floor_divide`), so the order and the type an operation is done in cannot change its result
(docs/NUMERICS.md).
tests/test_kernels.py compares every kernel with numpy's path.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types  # numba's np.dot calls scipy's BLAS, which `exact_numerics._blas_pool` loads and holds
from numba.core import cgutils
from numba.extending import intrinsic, overload

from . import products16


@njit(cache=True, nogil=True, inline="always")
def _read(x, limit, scale, offset):
    # a map's input as it reads it (`intnet.Affine.clamped`), without branches so that loops vectorise:
    # clamped (limit inf where the map does not clamp), then rounded to its format (scale 2^-in_shift and
    # offset 0.5; scale 1 and offset 0 leave an integer as it is)
    return np.floor(min(max(x, -limit), limit) * scale + offset)


@intrinsic
def _popcount(typingctx, x):
    """The number of bits set in a uint32 (LLVM's ctpop: one instruction where the CPU has one, and a vector one
    in a loop LLVM vectorises)."""
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), [ir.IntType(32)]),
                                            "llvm.ctpop.i32")
        return builder.call(fn, args)
    return types.uint32(types.uint32), codegen


def _word(table, i):
    """What a gate table holds for entry i: a plain table's entry, or the word of i's block in a ranked one
    (`intnet.ranked`, uint32)."""


def _entry_of(table, word, i):
    """Entry i of a gate table from `_word`'s read."""


def _last(table):
    """The last index of a gate table, plain or ranked."""


@overload(_word, inline="always")
def _word_impl(table, i):
    if table.dtype == types.uint32:
        return lambda table, i: table[i >> 4]
    return lambda table, i: table[i]


@overload(_entry_of, inline="always")
def _entry_of_impl(table, word, i):
    if table.dtype == types.uint32:
        def ranked(table, word, i):
            # the block's first entry (the high half, signed) plus its steps below entry i & 15 (the low half)
            below = (np.uint32(1) << np.uint32(i & 15)) - np.uint32(1)
            return np.int64(np.int32(word) >> 16) + np.int64(_popcount(word & below))
        return ranked
    return lambda table, word, i: word


@overload(_last, inline="always")
def _last_impl(table):
    if table.dtype == types.uint32:
        return lambda table: 16 * table.shape[0] - 1       # the steps past the end are zeros: the end value
    return lambda table: table.shape[0] - 1


@njit(cache=True, nogil=True, inline="always")
def _entry(table, i):
    return _entry_of(table, _word(table, i), i)


@njit(cache=True, nogil=True, inline="always")
def _gate(tanh, sigmoid, at, st, words, half, inv, limit, scale, offset, out):
    # tanh(a) sigmoid(b) at each (row, channel) from the tables' entries at and st (rows, channels), rounded
    # (`intnet.Gate`: the product below 2^31, exact), into out (rows, channels) as the next map reads it
    # (`_read`). The loads first, into words (2, rows, channels) in the tables' type, then the arithmetic, a loop
    # LLVM vectorises; over all the rows at once where that pays (a row at a time, the layer step took a third
    # longer)
    for r in range(at.shape[0]):
        for o in range(at.shape[1]):
            words[0, r, o] = _word(tanh, at[r, o])
            words[1, r, o] = _word(sigmoid, st[r, o])
    for r in range(at.shape[0]):
        for o in range(at.shape[1]):
            t = np.float64(_entry_of(tanh, words[0, r, o], at[r, o]))
            g = np.floor((t * np.float64(_entry_of(sigmoid, words[1, r, o], st[r, o])) + half) * inv)
            out[r, o] = _read(g, limit, scale, offset)


@njit(cache=True, nogil=True, inline="always")
def _index(last, offset, x):
    # where a gate table is read for input x, clipped to its ends (`intnet.Gate._read`: np.take mode "clip").
    # Clipped while a float, then made a 32-bit index: x + offset is an integer, so this is the same index.
    # `last` is the table's last index as a float (`_last`), taken before the loop: a read of the table's
    # shape inside it kept LLVM from vectorising the loop (five times slower)
    return np.int32(min(max(x + offset, 0.0), last))


def _scratch(rows, cols, weight):
    """Scratch (rows, cols) for a map's inputs as it reads them, to be multiplied by its weight (`_matmul`): in
    the weight's type, or for a 16-bit weight (`products16`) int16 with the packed weight's columns (an extra
    column meets a zero weight row, so whatever it holds adds nothing)."""


def _sums(rows, weight):
    """Scratch for `_matmul`'s result: (rows, the weight's columns), float or int32."""


def _matmul(x, weight, out):
    """out = x @ weight: a BLAS product for a float weight, `products16.products` for a 16-bit one."""


@overload(_scratch, inline="always")
def _scratch_impl(rows, cols, weight):
    if weight.dtype == types.int32:
        return lambda rows, cols, weight: np.empty((rows, 2 * weight.shape[0]), np.int16)
    return lambda rows, cols, weight: np.empty((rows, cols), weight.dtype)


@overload(_sums, inline="always")
def _sums_impl(rows, weight):
    if weight.dtype == types.int32:
        return lambda rows, weight: np.empty((rows, weight.shape[1]), np.int32)
    return lambda rows, weight: np.empty((rows, weight.shape[1]), weight.dtype)


@overload(_matmul, inline="always")
def _matmul_impl(x, weight, out):
    if weight.dtype == types.int32:
        return lambda x, weight, out: products16.products(x, weight, out)

    def dot(x, weight, out):
        np.dot(x, weight, out)
        return out
    return dot


def _window_products(buf, j, kw, window, weight, out):
    """out = hconv's windows at column j of buf (B, kw - 1 + W + 1, Cin) times its weight: each image's window
    is kw Cin consecutive values (columns j .. j + kw - 1), which a 16-bit weight (`products16`) reads where they
    lie when that count is even; otherwise they are copied into window (B, kw Cin) first."""


@njit(cache=True, nogil=True, inline="always")
def _copied_window_products(buf, j, kw, window, weight, out):
    B, cin = buf.shape[0], buf.shape[2]
    flat = buf.reshape(B, -1)
    for b in range(B):
        for k in range(kw * cin):
            window[b, k] = flat[b, j * cin + k]
    _matmul(window, weight, out)


@overload(_window_products, inline="always")
def _window_products_impl(buf, j, kw, window, weight, out):
    if weight.dtype != types.int32:
        return lambda buf, j, kw, window, weight, out: _copied_window_products(buf, j, kw, window, weight, out)

    def in_place(buf, j, kw, window, weight, out):
        if (kw * buf.shape[2]) % 2 or not buf.flags.c_contiguous:
            _copied_window_products(buf, j, kw, window, weight, out)
        else:
            products16.rows_at(buf, j * buf.strides[1], buf.strides[0], buf.shape[0], weight, out)
    return in_place


def _vconv_sums(vin, row0, rows, c0, n, kh, kernel, weight):
    """vconv's sums at rows row0 .. row0 + rows - 1, columns c0 .. c0 + n - 1 of vin's B images, ordered (row,
    column, image) as `vertical`'s vrow is: for a float weight (scaled), the gathered windows times it (the
    integer sums times the map's scale); for a 16-bit weight (`products16`), read where they lie, the integer
    sums, which `vertical` scales (vc_units)."""


@overload(_vconv_sums, inline="always")
def _vconv_sums_impl(vin, row0, rows, c0, n, kh, kernel, weight):
    if weight.dtype == types.int32:
        def direct(vin, row0, rows, c0, n, kh, kernel, weight):
            B = vin.shape[0]
            offsets = products16.conv_offsets(vin, kh, kernel)
            sums = np.empty((rows * n * B, weight.shape[1]), np.int32)
            for r in range(rows):
                for b in range(B):
                    products16.conv_row(vin, offsets, weight, sums, b, row0 + r, c0, n, r * n * B + b, B, 1)
            return sums
        return direct

    def gathered(vin, row0, rows, c0, n, kh, kernel, weight):
        B, cin = vin.shape[0], vin.shape[3]
        span = kernel * cin
        window = np.empty((rows * n * B, kh * span), weight.dtype)
        for r in range(rows):
            for b in range(B):
                for dr in range(kh):
                    src = vin[b, row0 + r + dr]
                    for c in range(n):
                        q = (r * n + c) * B + b
                        for k in range(kernel):
                            for ch in range(cin):
                                window[q, dr * span + k * cin + ch] = src[c0 + c + k, ch]
        sums = np.empty((window.shape[0], weight.shape[1]), weight.dtype)
        np.dot(window, weight, sums)
        return sums
    return gathered


@njit(cache=True, nogil=True)
def layer_step(buf, j, kw, h_in, write_input,
               hc_limit, hc_scale, hc_offset, hc_weight, hc_bias, hc_units, vrow,
               tanh, tanh_offset, sigmoid, sigmoid_offset, half, inv,
               ho_limit, ho_scale, ho_offset, ho_weight, ho_bias, ho_units, first,
               window, pre, gated, acc, out):
    """One gated layer's horizontal step at column j for a round of B images; returns `out` (B, Cout).

    buf (B, kw - 1 + W + 1, Cin) in hconv's input type (`intnet.Decoder._compiled_args`, "hin"): the layer's
    horizontal input row as hconv reads it; h_in (B, Cin) float64, the layer below's output, is written there at
    column j + kw - 1 first when `write_input`, read as hconv reads it (a window is then a plain copy), and is the
    residual added to the output unless `first`. vrow (B, 2C) float64: the row terms.
    hconv and hout: how the map reads its input (`_read`: clamp limit in the input's format, scale, offset),
    the weight and the scaled bias with its rounding, and each output's unit (`intnet._operand`: a scaled
    float32 or float64 weight and units 1, or a 16-bit one and units 2^-s). Scratch as `_scratch` and `_sums`
    make it for the maps: window (B, kw Cin), pre (B, 2C), gated (B, C), acc (B, Cout)."""
    B = buf.shape[0]
    cin = buf.shape[2]
    if write_input:
        for b in range(B):
            for c in range(cin):
                buf[b, j + kw - 1, c] = _read(h_in[b, c], hc_limit, hc_scale, hc_offset)
    _window_products(buf, j, kw, window, hc_weight, pre)
    channels = hc_bias.shape[0] // 2
    at = np.empty((B, channels), np.int32)
    st = np.empty((B, channels), np.int32)
    tanh_last, sigmoid_last = np.float64(_last(tanh)), np.float64(_last(sigmoid))
    for b in range(B):
        # the table indices first (a loop that vectorises), then the gate
        for o in range(channels):
            at[b, o] = _index(tanh_last, tanh_offset,
                              np.floor(np.float64(pre[b, o]) * hc_units[o] + np.float64(hc_bias[o])) + vrow[b, o])
            q = np.floor(np.float64(pre[b, o + channels]) * hc_units[o + channels]
                         + np.float64(hc_bias[o + channels]))
            st[b, o] = _index(sigmoid_last, sigmoid_offset, q + vrow[b, o + channels])
    _gate(tanh, sigmoid, at, st, np.empty((2, B, channels), tanh.dtype), half, inv, ho_limit, ho_scale, ho_offset,
          gated)
    _matmul(gated, ho_weight, acc)
    for b in range(B):
        for o in range(out.shape[1]):
            y = np.floor(np.float64(acc[b, o]) * ho_units[o] + np.float64(ho_bias[o]))
            if not first:
                y += h_in[b, o]
            out[b, o] = y
    return out


@njit(cache=True, nogil=True)
def write_pixel(values, pixel_in, hin, column, h_limit, h_scale, h_offset, vin, row, v_column, v_limit, v_scale,
                v_offset):
    """A decoded pixel, its channels' levels values (B, C), into layer 0's inputs as its hconv and vconv read
    them (`_read` of the level's input value pixel_in[level]): hin[:, column] and vin[:, row, v_column]
    (`intnet.Stepper.set_pixel`)."""
    for b in range(values.shape[0]):
        for c in range(values.shape[1]):
            level = values[b, c]
            if not 0 <= level < pixel_in.shape[0]:
                raise ValueError("a pixel level beyond the model's levels")
            x = pixel_in[level]
            hin[b, column, c] = _read(x, h_limit, h_scale, h_offset)
            vin[b, row, v_column, c] = _read(x, v_limit, v_scale, v_offset)


@njit(cache=True, nogil=True)
def affine(x, relu, limit, scale, offset, weight, bias, window, acc, out):
    """One map (`intnet.Affine`) on rows x (B, fan_in) float64, relu(x) first when `relu`: out (B, out) float64.
    weight, bias, window (B, fan_in) and acc (B, out) in the map's type."""
    for b in range(x.shape[0]):
        for k in range(x.shape[1]):
            v = x[b, k]
            if relu:
                v = max(v, 0.0)
            window[b, k] = _read(v, limit, scale, offset)
    np.dot(window, weight, acc)
    for b in range(x.shape[0]):
        for o in range(out.shape[1]):
            out[b, o] = np.floor(np.float64(acc[b, o]) + np.float64(bias[o]))
    return out


@njit(cache=True, nogil=True)
def _vertical_rows(vin, row0, rows, c0, c1, kh, kernel, vc_weight, vc_bias, vc_units, cmap,
             tanh, tanh_offset, sigmoid, sigmoid_offset, half, inv,
             write_next, vnext, pad, nx_limit, nx_scale, nx_offset,
             v2_limit, v2_scale, v2_offset, v2_weight, v2_bias, v2_units, cond_map, crow, vrow):
    """`vertical` on rows row0 .. row0 + rows - 1 in one matrix product each for vconv and v2h."""
    B = vin.shape[0]
    n = c1 - c0
    m = rows * n * B                  # output positions, ordered (row, column, image) as vrow is
    sums = _vconv_sums(vin, row0, rows, c0, n, kh, kernel, vc_weight)
    # the conditioning terms (the layer's cond map of the conditioning map): cond_v, then cond_h
    cd_limit, cd_scale, cd_offset, cd_weight, cd_bias, cd_units = cond_map
    features = cmap.shape[3]
    cwin = _scratch(m, features, cd_weight)
    for r in range(rows):
        for c in range(n):
            for b in range(B):
                q = (r * n + c) * B + b
                for k in range(features):
                    cwin[q, k] = _read(cmap[b, crow + r, c0 + c, k], cd_limit, cd_scale, cd_offset)
    cond = _matmul(cwin, cd_weight, _sums(m, cd_weight))
    channels = vc_bias.shape[0] // 2         # a 16-bit weight may have more columns (`products16.pack`)
    reads = _scratch(m, 2 * channels, v2_weight)
    pre = np.empty(2 * channels)
    at = np.empty((1, channels), np.int32)
    st = np.empty((1, channels), np.int32)
    words = np.empty((2, 1, channels), tanh.dtype)
    tanh_last, sigmoid_last = np.float64(_last(tanh)), np.float64(_last(sigmoid))
    for r in range(rows):
        for c in range(n):
            for b in range(B):
                q = (r * n + c) * B + b
                for o in range(2 * channels):
                    v = np.floor(np.float64(sums[q, o]) * vc_units[o] + np.float64(vc_bias[o])) \
                        + np.floor(np.float64(cond[q, o]) * cd_units[o] + np.float64(cd_bias[o]))
                    pre[o] = v
                    reads[q, o] = _read(v, v2_limit, v2_scale, v2_offset)
                if write_next:
                    # a position at a time: over the block's positions at once (as `layer_step` does its round's
                    # images) this kernel took half as long again
                    for o in range(channels):
                        at[0, o] = _index(tanh_last, tanh_offset, pre[o])
                        st[0, o] = _index(sigmoid_last, sigmoid_offset, pre[o + channels])
                    column = pad + c0 + c
                    _gate(tanh, sigmoid, at, st, words, half, inv, nx_limit, nx_scale, nx_offset,
                          vnext[b, row0 + r + kh - 1, column:column + 1])
    acc = _matmul(reads, v2_weight, _sums(m, v2_weight))
    for r in range(rows):
        for c in range(n):
            for b in range(B):
                q = (r * n + c) * B + b
                for o in range(v2_bias.shape[0]):
                    h = 2 * channels + o
                    y = np.floor(np.float64(acc[q, o]) * v2_units[o] + np.float64(v2_bias[o]))
                    vrow[r, c0 + c, b, o] = y + np.floor(np.float64(cond[q, h]) * cd_units[h] + np.float64(cd_bias[h]))


#: Output positions per matrix product in `vertical`, whatever the round or block size: the gathered
#: windows (positions x kh kernel Cin) then stay within the core's cache (2 MiB here). On the
#: binarized-MNIST full pass of 4 images, and on a stepper's rows of 128 images, it changed the time by a few
#: percent at most.
BLOCK_POSITIONS = 512


@njit(cache=True, nogil=True)
def vertical(vin, row0, rows, c0, c1, kh, kernel, vc_weight, vc_bias, vc_units, cmap,
             tanh, tanh_offset, sigmoid, sigmoid_offset, half, inv,
             write_next, vnext, pad, nx_limit, nx_scale, nx_offset,
             v2_limit, v2_scale, v2_offset, v2_weight, v2_bias, v2_units, cond_map, crow, vrow):
    """A gated layer's vertical stack for rows row0 .. row0 + rows - 1 at columns c0 .. c1 - 1, for B images
    (one row of a round: `intnet.Stepper._vertical`; every row of a block: `intnet.Decoder.logits`): the gated
    output written, as the next layer's vconv reads it, into its vertical input vnext (when `write_next`), the
    row terms (v2h plus conditioning) into vrow (rows, W, B, 2C).

    vin (B, H + kh, W + 2 pad, Cin), in vconv's type: the layer's vertical input as vconv reads it (rounded and
    clamped when written), so a window is kh runs of kernel Cin consecutive values, copied as they are: row
    r's window is rows r .. r + kh - 1, columns c .. c + kernel - 1. vconv's scaled weight is in the window's
    (kh kernel Cin, out) layout, or 16-bit and read where the windows lie (vin int16); nx_*: how the next
    layer's vconv reads its input (`_read`); v2h: how it reads its input, its weight (2C, 2C). Biases carry
    their rounding; each map's weight, bias and units are as `intnet._operand` makes them (float32, float64 or
    16-bit alike). The conditioning terms are made here, from the conditioning map cmap (B, H', W, F) float64
    (row r's at crow + r - row0) by the layer's cond map (`cond_map`: how it reads its input, its weight
    (F, 4C), bias and units): its first 2C outputs are added before the gate, the others to the row terms (as
    `intnet.Decoder.cond_terms` makes them, without the (B, H, W, 4C) arrays). Rows go in blocks of about
    BLOCK_POSITIONS positions."""
    B = vin.shape[0]
    width = max(1, c1 - c0)
    images = max(1, min(B, BLOCK_POSITIONS // width))           # a row of many images goes in parts too
    step = max(1, BLOCK_POSITIONS // (width * images))
    for r in range(0, rows, step):
        take = min(step, rows - r)
        for b in range(0, B, images):
            e = min(B, b + images)
            _vertical_rows(vin[b:e], row0 + r, take, c0, c1, kh, kernel, vc_weight, vc_bias, vc_units, cmap[b:e],
                           tanh, tanh_offset, sigmoid, sigmoid_offset, half, inv,
                           write_next, vnext[b:e], pad, nx_limit, nx_scale, nx_offset,
                           v2_limit, v2_scale, v2_offset, v2_weight, v2_bias, v2_units, cond_map, crow + r,
                           vrow[r:r + take, :, b:e])


@njit(cache=True, nogil=True)
def horizontal(hin, raw, vrow, kw, hc_weight, hc_bias, hc_units,
               tanh, tanh_offset, sigmoid, sigmoid_offset, half, inv,
               ho_limit, ho_scale, ho_offset, ho_weight, ho_bias, ho_units, first,
               nx_limit, nx_scale, nx_offset, out, hnext):
    """A gated layer's horizontal stack at every position of B images (`intnet.Decoder.logits`, compiled): out
    (B, H, W, Cout) float64, and the same written into hnext as the next layer's hconv reads it.

    hin (B, H, kw - 1 + W + 1, Cin), in hconv's type: the layer's horizontal input as hconv reads it, position
    j's window being columns j .. j + kw - 1 (`Stepper` keeps the same layout); raw (B, H, W, Cin) float64: the
    input itself, for the residual (unless `first`); vrow (H, W, B, 2C): the row terms (`vertical`). hnext
    (B, H, kw - 1 + W + 1, Cout): the next layer's input buffer, position j written at column j + kw - 1.
    Image rows go in blocks of about BLOCK_POSITIONS positions (the binarized-MNIST and Fashion-MNIST full passes
    of 4 images, each layer's whole block at once against this, alternating in one process: 5% faster)."""
    B, H = hin.shape[0], hin.shape[1]
    cin = hin.shape[3]
    W = out.shape[2]
    span = kw * cin
    per = max(1, BLOCK_POSITIONS // W)         # image rows per block, so that its arrays stay in cache
    channels = hc_bias.shape[0] // 2
    window = _scratch(per * W, span, hc_weight)
    pre = _sums(per * W, hc_weight)
    gated = _scratch(per * W, channels, ho_weight)
    acc = _sums(per * W, ho_weight)
    at = np.empty((per * W, channels), np.int32)
    st = np.empty((per * W, channels), np.int32)
    words = np.empty((2, per * W, channels), tanh.dtype)
    tanh_last, sigmoid_last = np.float64(_last(tanh)), np.float64(_last(sigmoid))
    for t0 in range(0, B * H, per):
        t1 = min(B * H, t0 + per)
        m = (t1 - t0) * W
        for t in range(t0, t1):
            src = hin[t // H, t % H]
            for j in range(W):
                q = (t - t0) * W + j
                for k in range(kw):
                    for ch in range(cin):
                        window[q, k * cin + ch] = src[j + k, ch]
        _matmul(window[:m], hc_weight, pre[:m])
        for t in range(t0, t1):
            b, i = t // H, t % H
            for j in range(W):
                q = (t - t0) * W + j
                for o in range(channels):
                    a = np.floor(np.float64(pre[q, o]) * hc_units[o] + np.float64(hc_bias[o]))
                    at[q, o] = _index(tanh_last, tanh_offset, a + vrow[i, j, b, o])
                    h = np.floor(np.float64(pre[q, o + channels]) * hc_units[o + channels]
                                 + np.float64(hc_bias[o + channels]))
                    st[q, o] = _index(sigmoid_last, sigmoid_offset, h + vrow[i, j, b, o + channels])
        _gate(tanh, sigmoid, at[:m], st[:m], words, half, inv, ho_limit, ho_scale, ho_offset, gated[:m])
        _matmul(gated[:m], ho_weight, acc[:m])
        for t in range(t0, t1):
            b, i = t // H, t % H
            for j in range(W):
                q = (t - t0) * W + j
                for o in range(ho_bias.shape[0]):
                    y = np.floor(np.float64(acc[q, o]) * ho_units[o] + np.float64(ho_bias[o]))
                    if not first:
                        y += raw[b, i, j, o]
                    out[b, i, j, o] = y
                    hnext[b, i, j + kw - 1, o] = _read(y, nx_limit, nx_scale, nx_offset)
    return out


@njit(cache=True, nogil=True)
def pixel_probs(logits, dense, start, mass_bits, exp_bits, shift, out):
    """`exact_tables.pixel_probs` of integer logits (B, outputs) float64 at LOGIT_FRAC, in one call: constriction's
    float64 probabilities out (B,) (P(1), from the one logit of binary data) or (B, L). `dense` is the exp
    table expanded to every input from `start` (`LookupTable._dense`); `shift` the categorical's raw shift
    (`normalise_masses`). All integer arithmetic, on non-negative numbers where it divides or shifts: the
    masses are exact_tables' in every bit (tests/test_kernels.py)."""
    span = dense.shape[0] - 1
    scale = 2.0 ** -mass_bits
    one = np.int64(1) << mass_bits
    B, L = logits.shape
    if L == 1:
        # `bernoulli_masses`: the less likely symbol gets 1 + floor(e F / (2^exp_bits + e)), e = exp(-|l|)
        for b in range(B):
            l = np.int64(logits[b, 0])
            e = dense[min(max(-abs(l) - start, 0), span)]
            small = 1 + (e * (one - 2)) // ((np.int64(1) << exp_bits) + e)
            out[b, 0] = (one - small if l > 0 else small) * scale
        return out
    raw = np.empty(L, np.int64)
    for b in range(B):
        top = np.int64(logits[b, 0])
        for i in range(1, L):
            top = max(top, np.int64(logits[b, i]))
        for i in range(L):
            raw[i] = dense[min(max(np.int64(logits[b, i]) - top - start, 0), span)]
        _normalised(raw, shift, mass_bits, out[b])
    return out


@njit(cache=True, nogil=True, inline="always")
def _floor_shift(x, shift):
    # `exact_tables.floor_shift`: floor(x / 2^shift), shifting only a non-negative number
    bias = np.int64(1) << 62
    return ((x + bias) >> shift) - (bias >> shift)


@njit(cache=True, nogil=True, inline="always")
def _table(table, x):
    # `exact_tables.LookupTable` (its `interpolation()`: values, steps, start, span, shift) at integer input x:
    # clamped to the grid, interpolated in integers
    values, steps, start, span, shift = table
    offset = min(max(x - start, 0), span)
    k = offset >> shift
    return values[k] + _floor_shift(steps[k] * (offset & ((np.int64(1) << shift) - 1)), shift)


@njit(cache=True, nogil=True)
def prior_masses(raw, edges, exp_table, exp_down, inv_table, phi_table, mean_limit, mean_up, inv_frac, cdf_one,
                 shift, mass_bits, out):
    """`exact_tables.prior_masses` then `to_constriction`, in one call: raw (B, D, M, 3) int64 (weight logit,
    mean, scale pre-activation) -> out (B, D, 2^b) float64, m / 2^mass_bits. Tables are (values, steps, start,
    span, shift) as `_table` reads them; edges (D, 2^b - 1) at EDGE_FRAC; `shift` is `normalise_masses`' raw
    shift. Integer arithmetic on the same numbers in the same formats: the masses are exact_tables' in every
    bit (tests/test_kernels.py)."""
    B, D, M = raw.shape[0], raw.shape[1], raw.shape[2]
    E = edges.shape[1]
    n = E + 1
    total = np.empty(n, np.int64)
    for b in range(B):
        for d in range(D):
            top = raw[b, d, 0, 0]
            for m in range(1, M):
                top = max(top, raw[b, d, m, 0])
            total[:] = 0
            for m in range(M):
                w = _table(exp_table, raw[b, d, m, 0] - top) >> exp_down
                inv = _table(inv_table, raw[b, d, m, 2])
                mu = min(max(raw[b, d, m, 1], -mean_limit), mean_limit) * mean_up
                below = np.int64(0)
                for e in range(E):
                    cdf = _table(phi_table, _floor_shift((edges[d, e] - mu) * inv, inv_frac))
                    total[e] += w * (cdf - below)
                    below = cdf
                total[E] += w * (cdf_one - below)
            _normalised(total, shift, mass_bits, out[b, d])
    return out


@njit(cache=True, nogil=True)
def posterior_masses(codes, edges, phi_table, code_limit, code_up, cdf_one, shift, mass_bits, out):
    """`exact_tables.posterior_masses` then `to_constriction`: codes (B, D) int64 at CODE_FRAC -> out (B, D, 2^b)
    float64, the masses of N(c, 1) in each bucket over 2^mass_bits (`prior_masses` for the rest)."""
    B, D = codes.shape
    E = edges.shape[1]
    total = np.empty(E + 1, np.int64)
    for b in range(B):
        for d in range(D):
            c = min(max(codes[b, d], -code_limit), code_limit) * code_up
            below = np.int64(0)
            for e in range(E):
                cdf = _table(phi_table, edges[d, e] - c)
                total[e] = cdf - below
                below = cdf
            total[E] = cdf_one - below
            _normalised(total, shift, mass_bits, out[b, d])
    return out


@njit(cache=True, nogil=True, inline="always")
def _floor_divide(a, b, inv):
    # a // b for 0 <= a < 2^62 and 0 < b, a quotient below 2^32, without an integer division (the masses' loops
    # make one per entry): a times inv, the rounded 1 / b, is within 2^-20 of a / b, so its truncation is the floor
    # or one off it, and one exact integer comparison each way settles it
    q = np.int64(np.float64(a) * inv)
    if q * b > a:
        q -= 1
    elif (q + 1) * b <= a:
        q += 1
    return q


@njit(cache=True, nogil=True)
def _normalised(raw, shift, mass_bits, out):
    # `exact_tables.normalise_masses` of one row of non-negative weights (overwritten), then `to_constriction`
    n = raw.shape[0]
    one = np.int64(1) << mass_bits
    total = np.int64(0)
    for i in range(n):
        raw[i] >>= shift
        total += raw[i]
    if total == 0:
        raw[:] = 1
        total = n
    free = one - n
    inv = 1.0 / np.float64(total)
    for i in range(n):
        raw[i] = 1 + _floor_divide(raw[i] * free, total, inv)
    left = one
    best, where = np.int64(-1), 0
    for i in range(n):
        left -= raw[i]
        if raw[i] > best:
            best, where = raw[i], i
    raw[where] += left
    scale = 2.0 ** -mass_bits
    for i in range(n):
        out[i] = raw[i] * scale


#: Output positions per matrix product in `conv`: the gathered windows stay in the core's cache.
CONV_POSITIONS = 256


def _direct_conv(x, top, left, kh, kw, stride, limit, scale, offset, weight, bias, units, split, relu, out):
    """`conv` with a 16-bit weight and an even channel count (the pairs a 16-bit step reads lie in one pixel):
    the input read once into int16 planes (padded; for split > 0 its two parts), the windows then read where
    they lie (`products16.conv_row`). Returns whether it ran (False for a float weight or an odd channel count:
    `conv` gathers the windows instead)."""


@overload(_direct_conv)
def _direct_conv_impl(x, top, left, kh, kw, stride, limit, scale, offset, weight, bias, units, split, relu, out):
    if weight.dtype != types.int32:
        return lambda x, top, left, kh, kw, stride, limit, scale, offset, weight, bias, units, split, relu, out: False

    def direct(x, top, left, kh, kw, stride, limit, scale, offset, weight, bias, units, split, relu, out):
        N, H, W, cin = x.shape
        if cin % 2:
            return False
        Ho, Wo = out.shape[1], out.shape[2]
        rows, cols = (Ho - 1) * stride + kh, (Wo - 1) * stride + kw      # the padded input the windows read
        parts = 2 if split else 1
        base, inv_base = 2.0 ** split, 2.0 ** -split
        planes = np.zeros((parts, N, rows, cols, cin), np.int16)
        for n in range(N):
            for r in range(max(0, top), min(rows, H + top)):
                for c in range(max(0, left), min(cols, W + left)):
                    for ch in range(cin):
                        v = _read(x[n, r - top, c - left, ch], limit, scale, offset)
                        if split:
                            h = np.floor(v * inv_base)
                            planes[1, n, r, c, ch] = h
                            v -= h * base
                        planes[0, n, r, c, ch] = v
        offsets = products16.conv_offsets(planes[0], kh, kw)
        sums = np.empty((parts, Wo, weight.shape[1]), np.int32)
        cout = bias.shape[0]
        for n in range(N):
            for i in range(Ho):
                for part in range(parts):
                    products16.conv_row(planes[part], offsets, weight, sums[part], n, i * stride, 0, Wo, 0, 1, stride)
                for j in range(Wo):
                    for o in range(cout):
                        t = np.float64(sums[0, j, o])
                        if split:
                            t += np.float64(sums[1, j, o]) * base       # exact: W x is below 2^53
                        y = np.floor(t * units[o] + np.float64(bias[o]))
                        out[n, i, j, o] = max(y, 0.0) if relu else y
        return True
    return direct


@njit(cache=True, nogil=True)
def conv(x, top, left, kh, kw, stride, limit, scale, offset, weight, bias, units, split, relu, out):
    """A convolution (`intnet.conv` of the input padded with zeros, `top` rows above and `left` columns to the
    left, as many as the output's size needs below and to the right) with its bias and rounding, then relu(.)
    when `relu`: x (N, H, W, Cin) float64, out (N, Ho, Wo, Cout) float64. The input is read as the map reads it
    (`_read`: limit, scale, offset), the padding as zeros; weight (kh kw Cin, Cout) in the window's (row,
    column, channel) layout, bias with its rounding and each output's unit (`intnet._conv_operand`: float64,
    float32 for a narrow map, or 16-bit). `split` > 0 (a wide map's 16-bit weight, `products16.split_bits`; only
    with an even channel count): each input is taken as 2^split h + l and the two parts' sums added, 2^split
    (W h) + W l. One pass over the input, without the padded, clamped and gathered copies numpy makes."""
    if _direct_conv(x, top, left, kh, kw, stride, limit, scale, offset, weight, bias, units, split, relu, out):
        return out
    if split:
        raise ValueError("a split 16-bit convolution needs an even channel count")
    N, H, W, cin = x.shape
    Ho, Wo = out.shape[1], out.shape[2]
    span = kh * kw * cin
    cout = bias.shape[0]
    window = _scratch(CONV_POSITIONS, span, weight)
    sums = _sums(CONV_POSITIONS, weight)
    for n in range(N):
        for p0 in range(0, Ho * Wo, CONV_POSITIONS):
            m = min(CONV_POSITIONS, Ho * Wo - p0)
            for q in range(m):
                i, j = divmod(p0 + q, Wo)
                k = 0
                for a in range(kh):
                    r = i * stride + a - top
                    for b in range(kw):
                        c = j * stride + b - left
                        if 0 <= r < H and 0 <= c < W:
                            for ch in range(cin):
                                window[q, k + ch] = _read(x[n, r, c, ch], limit, scale, offset)
                        else:
                            window[q, k:k + cin] = 0
                        k += cin
            _matmul(window[:m], weight, sums[:m])
            for q in range(m):
                i, j = divmod(p0 + q, Wo)
                for o in range(cout):
                    y = np.floor(np.float64(sums[q, o]) * units[o] + np.float64(bias[o]))
                    out[n, i, j, o] = max(y, 0.0) if relu else y
    return out
