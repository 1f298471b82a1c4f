"""The integer networks of numerics "exact1" and "exact2" at coding time: encoder, conditional prior and Gated
PixelCNN decoder (full pass and incremental stepper), in numpy (and numba for the stepper's per-pixel step).

`acncodec/quantize.py` makes these networks from a float model and stores them in the model file; this module
reads them back and runs them. It imports no torch: decoding an archive of an exact model needs numpy and
constriction only (numba where present), which is why it starts quickly.

Every activation is an integer held in a float64 array, standing for value / 2^frac. Why the results are the
same on every machine (Balle, Johnston, Minnen 2019, "Integer networks for data compression with latent-variable
models"; docs/NUMERICS.md):

* a linear map (a matmul, or a convolution done as im2col + matmul) of integer weights and integer activations
  is computed exactly by float64 hardware in any summation order, blocking, thread split or FMA use, as long as
  every partial sum stays below 2^53 (by float32 hardware below 2^24: exact2's narrow maps, `Affine.float32`).
  Each map clamps its input to a bound fixed at quantisation time, and `Affine.check_bound` proves, for each
  output, sum |w| * bound + |bias| < 2^53 (a bound on every partial sum);
* rescaling multiplies by an exact power of two and rounds with floor(x + 0.5): exact in float64;
* tanh and sigmoid come from integer tables stored in the model file, read with integer-only interpolation;
  ReLU, clamps, adds of aligned integers and the gates' products (both factors below 2^15) are exact.

Images and activations are laid out channels-last (N, H, W, C): every map then reads its input's last axis.
The full pass (`Decoder.logits`) and the stepper (`Stepper`) compute each map's rounded output from the same
inputs, so their logits are identical whatever the batch size (tests/test_exact_networks.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 2.0 ** 53


def _array(v, dtype=np.float64) -> np.ndarray:
    """A stored part (numpy array or anything array-like, such as a torch tensor) as a numpy array."""
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=dtype, order="C")


def rescale(acc: np.ndarray, shift) -> np.ndarray:
    """round(acc / 2^shift), halves rounded up; exact for integer acc below 2^53 (power-of-two scaling)."""
    return np.floor(acc * np.exp2(-np.asarray(shift, dtype=np.float64)) + 0.5)


class Affine:
    """y = round((W x + b) / 2^shift) with integer W (out, fan_in), b at in_frac + w_frac; x clamped to
    |x| <= bound first unless `clamp` is False (the input is bounded by construction: a gate's output or a
    pixel). `shift` may differ per output.

    The map is one matmul, one add and one floor: the rounding is folded into the bias (round(a / 2^s), halves
    up, = floor((a + 2^(s-1)) / 2^s)), and the scale into the weight and the bias, W 2^-s and (b + 2^(s-1)) 2^-s.
    Scaling by a power of two is exact, so every product and every partial sum of the matmul is the integer
    one times 2^-s, exactly (all below 2^53 times it, `check_bound`): the result is (W x + b + 2^(s-1)) 2^-s in
    every bit, whatever the summation order."""

    def __init__(self, weight, bias, shift, bound: float, clamp: bool = True, in_shift: int = 0):
        self.weight = _array(weight)
        self.bias = _array(bias)
        self.shift = _array(shift)
        self.bound, self.clamp = float(bound), bool(clamp)
        self.in_shift = int(in_shift)
        if not 0 <= self.in_shift <= 52:
            raise ValueError(f"integer layer's input shift {self.in_shift} is out of range")
        half = np.where(self.shift >= 1, np.exp2(self.shift - 1), 0.0)
        self.bias_rounding = np.ascontiguousarray(self.bias + half)
        inv = np.exp2(-self.shift)
        self.scaled_weight_t = np.ascontiguousarray(self.weight.T * inv)
        self.scaled_bias = np.ascontiguousarray(self.bias_rounding * inv)
        self._windows: dict = {}    # the scaled weight as convolutions read it, per (cin, kh, kw)
        # sums below 2^24 (inputs within the bound: clamped, or bounded by construction): float32 computes them
        # exactly, twice as fast
        self.float32 = self.worst_sum() < FLOAT32_LIMIT
        self.scaled_bias32 = self.scaled_bias.astype(np.float32) if self.float32 else None

    def sliced(self, rows=slice(None), cols=slice(None), clamp: bool | None = None) -> "Affine":
        """The map restricted to some outputs and inputs (the unused inputs held at zero)."""
        shift = self.shift if self.shift.ndim == 0 else self.shift[rows]
        return Affine(self.weight[rows, cols], self.bias[rows], shift, self.bound,
                      self.clamp if clamp is None else clamp, self.in_shift)

    def worst_sum(self) -> float:
        """A bound on |W x + b + rounding|, and on every partial sum of it, for any input within the bound:
        each output's sum of |weights| times the bound, plus its |bias and rounding|."""
        if not self.bias_rounding.size:
            return 0.0
        l1 = np.abs(self.weight).sum(axis=1) if self.weight.size else np.zeros(len(self.bias_rounding))
        return float((l1 * self.bound + np.abs(self.bias_rounding)).max())

    def check_bound(self) -> None:
        worst = self.worst_sum()
        if not worst < EXACT_LIMIT:
            raise ValueError(f"integer layer may exceed 2^53 in its accumulator ({worst:.3g})")

    def clamped(self, x: np.ndarray, dtype=None) -> np.ndarray:
        """The input as the map reads it: moved to the map's input format (rounded, halves up) when it has
        one, then clamped to the bound; in `dtype` (float32 holds every clamped input of a float32 map)."""
        if self.clamp:
            # clamped first, to the bound in the input's own format (an integer, so the rounding of the clamped
            # input gives the clamp of the rounded one); every value is then below 2^24, which float32 holds
            limit = self.bound * 2.0 ** self.in_shift
            # two ufuncs: np.clip's Python wrapper costs more than the clamp on small rows
            out = np.maximum(x, -limit, dtype=dtype)
            np.minimum(out, limit, out=out)
            if not self.in_shift:
                return out
            out *= 2.0 ** -self.in_shift
        elif self.in_shift:
            out = np.multiply(x, 2.0 ** -self.in_shift, dtype=dtype)    # bounded by construction
        else:
            return x if dtype is None else x.astype(dtype)
        out += 0.5
        return np.floor(out, out=out)

    def products(self, x: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """(W x) 2^-s (..., out) for a raw input x (..., fan_in): the sums before bias and rounding, in
        float32 where the map's sums stay below 2^24 (`float32`), else in float64; the same numbers either way.
        `weight` is the scaled weight in the layout x is flattened in (default: the map's own)."""
        weight = self.scaled_weight_t if weight is None else weight
        if self.float32:
            return self.clamped(x, np.float32) @ self.weight32(weight)
        return self.clamped(x) @ weight

    def weight32(self, weight: np.ndarray) -> np.ndarray:
        """A scaled weight of this map in float32 (exact: integers below 2^24 times a power of two)."""
        key = ("float32", id(weight))
        if key not in self._windows:
            self._windows[key] = (weight, weight.astype(np.float32))   # the original kept, so its id stays its
        return self._windows[key][1]

    def finish(self, acc: np.ndarray) -> np.ndarray:
        """(W x) 2^-s (..., out), from the scaled weight -> the map's output (float64): bias and rounding, in
        place where the sums are float64 (float32 sums plus the bias are exact in float64)."""
        if acc.dtype == np.float64:
            acc += self.scaled_bias
            return np.floor(acc, out=acc)
        # float32 sums: adding the bias and rounding are exact in float32 too (`worst_sum` < 2^24)
        acc += self.scaled_bias32
        return np.floor(acc, out=acc).astype(np.float64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x (..., fan_in) integers -> (..., out) integers."""
        return self.finish(self.products(x))

    def window_weight(self, cin: int, kh: int, kw: int) -> np.ndarray:
        """The scaled weight as a convolution's (kh * kw * cin, out), windows flattened (row, column, channel):
        the layout `conv` gathers its input in. Made once per shape."""
        if (cin, kh, kw) not in self._windows:
            out = self.weight.shape[0]
            self._windows[(cin, kh, kw)] = np.ascontiguousarray(
                self.scaled_weight_t.T.reshape(out, cin, kh, kw).transpose(2, 3, 1, 0).reshape(kh * kw * cin, out))
        return self._windows[(cin, kh, kw)]

    def taps(self, cin: int, kh: int, kw: int, rows: list[int], cols: list[int]) -> "Affine":
        """The convolution restricted to some kernel rows and columns (the others' inputs held at zero)."""
        key = ("taps", cin, kh, kw, tuple(rows), tuple(cols))
        if key not in self._windows:
            out = self.weight.shape[0]
            w = self.weight.reshape(out, cin, kh, kw)[:, :, rows][:, :, :, cols]
            part = Affine(w.reshape(out, -1), self.bias, self.shift, self.bound, self.clamp, self.in_shift)
            # a part takes the whole map's type: parts' sums may be added up before the whole map's bias and
            # rounding (tests/test_narrow_maps.py), and the whole map's proof covers their total
            part.float32 = self.float32
            part.scaled_bias32 = self.scaled_bias32
            self._windows[key] = part
        return self._windows[key]

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "Affine":
        in_shift = int(_array(d[f"{prefix}.in_shift"], np.int64)) if f"{prefix}.in_shift" in d else 0
        return cls(d[f"{prefix}.weight"], d[f"{prefix}.bias"], d[f"{prefix}.shift"],
                   float(_array(d[f"{prefix}.bound"])), bool(_array(d[f"{prefix}.clamp"], bool)), in_shift)


#: float32 computes a map exactly when every |partial sum| stays below 2^24 (its significand): the products and
#: sums are integers times the map's power of two, so any order, blocking or FMA gives the same number.
FLOAT32_LIMIT = 2.0 ** 24


class Table:
    """A function f stored at knots lo + k 2^-step_frac as integers, read for integer inputs at in_frac by
    clamping to [lo, -lo] and interpolating between knots in integers. Expanded once, at load, to every input
    in range: a read is then one gather."""

    def __init__(self, values, half_range: int, in_frac: int, step_frac: int):
        values = _array(values)
        self.lo = half_range * 2 ** in_frac
        step = 2.0 ** (in_frac - step_frac)
        u = np.arange(0, 2 * self.lo + 1, dtype=np.float64)
        k = np.floor(u / step)
        r = u - k * step
        k = k.astype(np.int64)
        lo, hi = values[k], values[k + 1]
        self.dense = lo + rescale((hi - lo) * r, in_frac - step_frac)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.dense[(np.minimum(np.maximum(x, -self.lo), self.lo) + self.lo).astype(np.int64)]

    @classmethod
    def from_dict(cls, d: dict, prefix: str) -> "Table":
        half_range, in_frac, step_frac = (int(v) for v in _array(d[f"{prefix}.format"], np.int64))
        return cls(d[f"{prefix}.values"], half_range, in_frac, step_frac)


def joined(maps: list[Affine]) -> list[Affine]:
    """Maps of one input side by side: consecutive maps with the same clamp become one map whose outputs are
    theirs, one after another (one clamp and one matmul instead of several; every output is the same sum)."""
    out = []
    for m in maps:
        last = out[-1][-1] if out else None
        if last is not None and (last.clamp, last.bound, last.in_shift) == (m.clamp, m.bound, m.in_shift) \
                and last.weight.shape[1] == m.weight.shape[1]:
            out[-1].append(m)
        else:
            out.append([m])
    return [group[0] if len(group) == 1 else Affine(
        np.concatenate([m.weight for m in group]), np.concatenate([m.bias for m in group]),
        np.concatenate([np.broadcast_to(m.shift, m.bias.shape) for m in group]), group[0].bound, group[0].clamp,
        group[0].in_shift)
        for group in out]


# ------------------------------------------------------------------------------------------ convolutions
def pad(x: np.ndarray, top: int = 0, bottom: int = 0, left: int = 0, right: int = 0) -> np.ndarray:
    """Zero padding of (N, H, W, C) along H and W (what np.pad does, without its per-call overhead)."""
    n, h, w, c = x.shape
    out = np.zeros((n, top + h + bottom, left + w + right, c), dtype=x.dtype)
    out[:, top:top + h, left:left + w] = x
    return out


#: Output positions per im2col block in `conv`: the gathered windows (block x kh kw Cin float64) stay in cache
#: (on the binarized-MNIST decoder, blocks of 4,096 positions ran at two thirds of this speed), and the matrix
#: product has rows enough for both cores (a stepper's row of 128 images ran 8% faster than in blocks of 512).
CONV_BLOCK = 1600


def conv(x: np.ndarray, aff: Affine, kernel: tuple[int, int], stride: int = 1) -> np.ndarray:
    """A convolution of an already padded input (N, H, W, Cin) -> (N, Ho, Wo, out): im2col by blocks of
    images, each block's windows gathered (row, column, channel) by kh * kw slice copies into one buffer, then
    one matmul. The sums are of integers below 2^53, so blocking changes no bit of the result."""
    return aff.finish(conv_sums(x, aff, kernel, stride))


def conv_sums(x: np.ndarray, aff: Affine, kernel: tuple[int, int], stride: int = 1) -> np.ndarray:
    """`conv` before its bias and rounding: the exact sums (W x) 2^-s. Sums over parts of a kernel (`Affine.taps`)
    add up to the whole kernel's, exactly."""
    n, hp, wp, cin = x.shape
    kh, kw = kernel
    ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
    weight = aff.window_weight(cin, kh, kw)
    dtype = np.float32 if aff.float32 else np.float64
    if aff.float32:
        weight = aff.weight32(weight)
    x = aff.clamped(x, dtype)
    out = np.empty((n, ho, wo, weight.shape[1]), dtype=dtype)
    block = max(1, min(n, CONV_BLOCK // (ho * wo)))
    cols = np.empty((block, ho, wo, kh * kw * cin), dtype=dtype)
    for start in range(0, n, block):
        part = x[start:start + block]
        m = len(part)
        k = 0
        for a in range(kh):
            for b in range(kw):
                rows = slice(a, a + stride * (ho - 1) + 1, stride)
                columns = slice(b, b + stride * (wo - 1) + 1, stride)
                cols[:m, :, :, k:k + cin] = part[:, rows, columns]
                k += cin
        np.matmul(cols[:m].reshape(-1, cols.shape[-1]), weight, out=out[start:start + m].reshape(-1, weight.shape[1]))
    return out


def upsample_conv(x: np.ndarray, aff: Affine, kernel: int, stride: int, padding: int, relu: bool = False,
                  compiled: bool = True) -> np.ndarray:
    """A transposed convolution, its weight stored as the plain convolution over the input with zeros inserted
    (stride - 1 between samples) and padded by kernel - 1 - padding. Computed as that convolution without the
    zeros: output rows of one phase (index mod stride) read only the kernel rows that meet samples, which are
    a regular convolution of the input itself (columns alike). The zeros added nothing to the exact sums, so
    the result is the same in every bit, with stride^2 times fewer multiply-adds. relu(.) of it when `relu`; each
    phase's convolution compiled (`kernels.conv`) unless `compiled` is False or numba is missing."""
    n, h, w, c = x.shape
    p = kernel - 1 - padding
    size = lambda length: (length - 1) * stride + 1 + 2 * p - kernel + 1     # the output's length

    def phase(r: int, length: int) -> tuple[list[int], int, int]:
        # taps a of output index o = r + stride t read input t + (r + a - p) // stride when (r + a - p) % stride
        # == 0: consecutive offsets, so a plain convolution of the input padded to reach them
        taps = [a for a in range(kernel) if (r + a - p) % stride == 0]
        first = (r + taps[0] - p) // stride
        count = len(range(r, size(length), stride))
        return taps, first, count

    out = np.empty((n, size(h), size(w), aff.weight.shape[0]))
    kernels = _kernels() if compiled else None
    for ry in range(stride):
        rows, top, th = phase(ry, h)
        for rx in range(stride):
            cols, left, tw = phase(rx, w)
            if kernels is not None:
                part = aff.taps(c, kernel, kernel, rows, cols)
                phase_out = np.empty((n, th, tw, aff.weight.shape[0]))
                kernels.conv(x, -top, -left, len(rows), len(cols), 1, *_reads(part),
                             *_conv_operand(part, part.window_weight(c, len(rows), len(cols)), c), relu,
                             phase_out)
                out[:, ry::stride, rx::stride] = phase_out
                continue
            need_h, need_w = th - 1 + len(rows), tw - 1 + len(cols)
            xp = pad(x, max(0, -top), max(0, top + need_h - h), max(0, -left), max(0, left + need_w - w))
            y0, x0 = max(0, top), max(0, left)
            part = xp[:, y0:y0 + need_h, x0:x0 + need_w]
            out[:, ry::stride, rx::stride] = conv(part, aff.taps(c, kernel, kernel, rows, cols),
                                                  (len(rows), len(cols)))
    return np.maximum(out, 0.0, out=out) if relu and kernels is None else out


def align(x: np.ndarray, frac_from: int, frac_to: int) -> np.ndarray:
    """An integer activation moved from one format to another (exact when gaining bits)."""
    return x * 2.0 ** (frac_to - frac_from) if frac_to >= frac_from else rescale(x, frac_from - frac_to)


# ------------------------------------------------------------------------------------------ networks
class Encoder:
    """E(x): codes (N, D) at code_frac from images (N, C, H, W) of level indices."""

    def __init__(self, pixel_in: np.ndarray, convs: list, strides: list[int], fc: list[Affine]):
        self.pixel_in, self.convs, self.strides, self.fc = pixel_in, convs, strides, fc

    def __call__(self, x: np.ndarray, compiled: bool = True) -> np.ndarray:
        """The codes; the convolutions run compiled (`kernels.conv`) unless `compiled` is False or numba is
        missing: the numbers are the same."""
        h = self.pixel_in[np.asarray(x, dtype=np.int64).transpose(0, 2, 3, 1)]
        kernels = _kernels() if compiled else None
        for aff, stride in zip(self.convs, self.strides):
            if kernels is None:
                h = np.maximum(conv(pad(h, 1, 1, 1, 1), aff, (3, 3), stride), 0.0)
                continue
            n, height, width, cin = h.shape
            out = np.empty((n, (height - 1) // stride + 1, (width - 1) // stride + 1, aff.weight.shape[0]))
            h = kernels.conv(h, 1, 1, 3, 3, stride, *_reads(aff),
                             *_conv_operand(aff, aff.window_weight(cin, 3, 3), cin), True, out)
        h = h.transpose(0, 3, 1, 2).reshape(len(h), -1)      # flattened channels-first, as trained
        return self.fc[1](np.maximum(self.fc[0](h), 0.0))

    @classmethod
    def from_dict(cls, d: dict, p: str, pixel_in: np.ndarray) -> "Encoder":
        strides = [int(s) for s in _array(d[f"{p}.strides"], np.int64)]
        return cls(pixel_in, [Affine.from_dict(d, f"{p}.conv{k}") for k in range(len(strides))], strides,
                   [Affine.from_dict(d, f"{p}.fc{k}") for k in range(2)])


class Prior:
    """The conditional prior's MLP: codes (N, D) at code_frac -> raw (N, D, M, 3), the mean (index 1) at
    code_frac, the weight logit and scale pre-activation at raw_frac."""

    NAMES = ("h1", "h2", "h3", "out")

    def __init__(self, layers: dict, tanh: Table, act_frac: int, code_frac: int, dims: tuple[int, int]):
        self.layers, self.tanh, self.act_frac, self.code_frac, self.dims = layers, tanh, act_frac, code_frac, dims

    def __call__(self, codes: np.ndarray) -> np.ndarray:
        c = align(np.asarray(codes, dtype=np.float64), self.code_frac, self.act_frac)
        h1 = self.tanh(self.layers["h1"](c))
        h2 = self.tanh(self.layers["h2"](np.concatenate([h1, c], -1)))
        h3 = self.tanh(self.layers["h3"](np.concatenate([h2, c], -1)))
        raw = self.layers["out"](np.concatenate([c, h1, h2, h3], -1))
        return raw.reshape(len(c), self.dims[0], self.dims[1], 3)

    @classmethod
    def from_dict(cls, d, p, tanh, act_frac, code_frac) -> "Prior":
        return cls({n: Affine.from_dict(d, f"{p}.{n}") for n in cls.NAMES}, tanh, act_frac, code_frac,
                   tuple(int(v) for v in _array(d[f"{p}.dims"], np.int64)))


@dataclass
class GatedLayer:
    maps: dict          # vconv, hconv, v2h, hout, cond
    first: bool
    kernel: int

    KEYS = ("vconv", "hconv", "v2h", "hout", "cond")

    @property
    def kh(self) -> int:
        return self.kernel // 2 + 1

    @property
    def half(self) -> int:
        return self.kernel // 2


#: Entries per word of a ranked gate table (`ranked`).
RANK_BLOCK = 16


def ranked(table: np.ndarray) -> np.ndarray | None:
    """A gate table whose consecutive entries differ by 0 or 1 (tanh's and sigmoid's, at the formats `quantize`
    gives them) and lie within int16, as one uint32 word per RANK_BLOCK entries: the block's first entry in the
    high 16 bits (two's complement) and, bit k of the low 16, whether entry k + 1 is one more than entry k. Entry
    i is the first of block i >> 4 plus the steps set below bit i & 15. An eighth of the int16 table's bytes (131
    KB for both against 1.04 MB), so that the gate's reads, at random over the whole table, stay in the core's
    cache, and one 32-bit load a read, so that the arithmetic after the loads vectorises. None where a step is
    not 0 or 1 or an entry is beyond int16 (the kernels then read the table itself)."""
    values = np.asarray(table)
    if values.dtype.kind not in "iu" or len(values) == 0:
        return None
    values = values.astype(np.int64)
    steps = np.diff(values)
    if (len(steps) and (steps.min() < 0 or steps.max() > 1)) or values.min() < -2 ** 15 or values.max() >= 2 ** 15:
        return None
    blocks = -(-len(values) // RANK_BLOCK)
    bits = np.zeros(blocks * RANK_BLOCK, np.int64)
    bits[:len(steps)] = steps
    low = (bits.reshape(blocks, RANK_BLOCK) << np.arange(RANK_BLOCK)).sum(1)
    return (((values[::RANK_BLOCK] & 0xFFFF) << 16) | low).astype(np.uint32)


class Gate:
    """tanh(a) sigmoid(b) for pre = [a, b] along the last axis, rounded to act_frac: a gather from each
    function's table, then the product, rounded. A table keeps only its function's non-constant span (a gather
    clipped to the table's ends reads the end value, which is the constant beyond it), and small integers when
    its values allow (int16; the product in int32); the compiled kernels read it ranked (`ranked`), an eighth of
    those bytes. Every path gives the same integers.

    The rounding floor((t s + 2^(act_frac-1)) / 2^act_frac) is an integer shift of a non-negative number: a
    multiple of 2^act_frac above every |t s| (`lift`) is added before the shift and its shifted value taken off
    after, since C leaves the shift of a negative number to the compiler (docs/NUMERICS.md)."""

    def __init__(self, tanh: Table, sigmoid: Table, act_frac: int):
        self.lo = sigmoid.lo
        span = np.arange(-self.lo, self.lo + 1, dtype=np.float64)
        self.tables, self.offsets = [], []
        for f in (tanh, sigmoid):
            values = f(span)
            changes = np.flatnonzero(np.diff(values))
            first, last = (int(changes[0]), int(changes[-1]) + 1) if len(changes) else (0, 0)
            self.tables.append(values[first:last + 1])
            self.offsets.append(float(self.lo - first))     # table index of input 0
        self.act_frac = act_frac
        self.half = 2 ** (act_frac - 1) if act_frac >= 1 else 0
        largest = int(np.abs(self.tables[0]).max()) * int(np.abs(self.tables[1]).max())
        self.lift = -(-largest // 2 ** act_frac) * 2 ** act_frac
        small = max(np.abs(t).max() for t in self.tables) < 2 ** 15 \
            and 2 * self.lift + self.half < 2 ** 31 and act_frac < 31
        self.integer = bool(small)
        self.tables = [t.astype(np.int16 if small else np.float64) for t in self.tables]
        ranks = [ranked(t) for t in self.tables]
        #: what the compiled kernels read: the ranked tables where both have them, else the tables themselves
        self.compiled_tables = ranks if all(r is not None for r in ranks) else self.tables

    def _read(self, k: int, pre: np.ndarray) -> np.ndarray:
        idx = pre + self.offsets[k]
        return self.tables[k].take(idx.astype(np.intp), mode="clip")

    def __call__(self, pre: np.ndarray) -> np.ndarray:
        half = pre.shape[-1] // 2
        if self.integer:
            out = self._read(0, pre[..., :half]).astype(np.int32)
            out *= self._read(1, pre[..., half:])
            out += np.int32(self.lift + self.half)
            out >>= self.act_frac
            out -= np.int32(self.lift >> self.act_frac)
            return out.astype(np.float64)
        out = self._read(0, pre[..., :half]) * self._read(1, pre[..., half:])
        out += self.half
        out *= 2.0 ** -self.act_frac
        return np.floor(out, out=out)


class Decoder:
    """The Gated PixelCNN: logits at logit_frac. `logits` is the full pass, `stepper` the incremental one;
    both compute the same rounded terms."""

    def __init__(self, pixel_in, cmap: dict, cmap_dims, layers: list[GatedLayer], head: dict, gate: Gate,
                 shape, outputs: int):
        self.pixel_in, self.cmap, self.cmap_dims, self.layers, self.head = pixel_in, cmap, cmap_dims, layers, head
        self.gate = gate
        self.C, self.H, self.W = shape
        self.outputs = outputs
        hid = cmap_dims[3]
        # the output head sliced per channel c (hidden units c*hid .. (c+1)*hid; `previous` reads channels < c)
        self.features_c = [head["features"].sliced(slice(c * hid, (c + 1) * hid)) for c in range(self.C)]
        self.previous_c = [None] + [head["previous"].sliced(slice(c * hid, (c + 1) * hid), slice(0, c))
                                    for c in range(1, self.C)]
        self.cond_maps = joined([layer.maps["cond"] for layer in layers])
        self._args = None           # `_compiled_args`, made at first use

    def condition(self, z: np.ndarray, compiled: bool = True) -> np.ndarray:
        """The conditioning map (N, H, W, channels) from latents z (N, D) at code_frac (its convolutions compiled
        unless `compiled` is False or numba is missing: the same numbers)."""
        hidden, h0, w0, _ = self.cmap_dims
        grid = np.maximum(self.cmap["fc"](np.asarray(z, dtype=np.float64)), 0.0)
        grid = grid.reshape(len(grid), hidden, h0, w0).transpose(0, 2, 3, 1)
        grid = upsample_conv(grid, self.cmap["up0"], 4, 2, 1, relu=True, compiled=compiled)
        return upsample_conv(grid, self.cmap["up1"], 4, 2, 1, compiled=compiled)[:, :self.H, :self.W]

    def cond_terms(self, cmap: np.ndarray) -> list:
        """Per layer, its (cond_v, cond_h) terms (..., 2 channels each) from (part of) the conditioning map.
        Made where they are used (a block of images, a row), so that they are still in cache there."""
        parts = [m(cmap) for m in self.cond_maps]            # every layer's cond_v and cond_h, side by side
        cond = parts[0] if len(parts) == 1 else np.concatenate(parts, -1)
        out, start = [], 0
        for layer in self.layers:
            width = layer.maps["cond"].weight.shape[0]
            out.append((cond[..., start:start + width // 2], cond[..., start + width // 2:start + width]))
            start += width
        return out

    def head_logits(self, top: np.ndarray, xs: np.ndarray, c: int) -> np.ndarray:
        """Channel c's logits (..., outputs) from relu(top features) (..., channels) and the scaled values
        xs (..., C) of the pixel's channels (those below c are read)."""
        hidden = self.features_c[c](top)
        if c > 0:
            hidden += self.previous_c[c](xs[..., :c])
        return self.head["logits"][c](np.maximum(hidden, 0.0))

    def logits(self, x: np.ndarray, z: np.ndarray, compiled: bool = True) -> np.ndarray:
        """x level indices (N, C, H, W), z (N, D) at code_frac -> integer logits (N, C, H, W, outputs). The gated
        layers run compiled (`kernels.vertical` and `kernels.horizontal`) unless `compiled` is False or numba is
        missing; the numbers are the same."""
        xs = self.pixel_in[np.asarray(x, dtype=np.int64).transpose(0, 2, 3, 1)]     # (N, H, W, C)
        kernels = _kernels() if compiled else None
        if kernels is not None:
            top = np.maximum(self._layers_compiled(kernels, xs, z), 0.0)
            return np.stack([self.head_logits(top, xs, c) for c in range(self.C)], 1)
        v = pad(xs, top=1)[:, :-1]
        h = pad(xs, left=1)[:, :, :-1]
        for layer, (cond_v, cond_h) in zip(self.layers, self.cond_terms(self.condition(z, compiled=False))):
            m = layer.maps
            v_pre = conv(pad(v, layer.kh - 1, 0, layer.half, layer.half), m["vconv"], (layer.kh, layer.kernel))
            v_pre += cond_v
            h_pre = conv(pad(h, left=layer.kh - 1), m["hconv"], (1, layer.kh))
            h_pre += m["v2h"](v_pre)
            h_pre += cond_h
            out = m["hout"](self.gate(h_pre))
            h = out if layer.first else out + h
            v = self.gate(v_pre)
        top = np.maximum(h, 0.0)
        return np.stack([self.head_logits(top, xs, c) for c in range(self.C)], 1)

    def _layers_compiled(self, kernels, xs: np.ndarray, z: np.ndarray) -> np.ndarray:
        """The gated layers' output (N, H, W, channels) for pixels xs (N, H, W, C), compiled: each layer's
        vertical stack over every row in one call, then its horizontal stack over every position. The inputs
        are kept as the next map reads them and laid out as `Stepper` keeps them (vertical: pixel row i at row
        i + kh; horizontal: pixel column j at column j + kw, a layer's output at j + kw - 1)."""
        N, H, W = xs.shape[:3]
        l0 = self.layers[0]
        kh, kw, half = l0.kh, l0.kh, l0.half
        args = self._compiled_args()
        vin = np.zeros((N, H + kh, W + 2 * half, self.C), args[0]["vin"])
        vin[:, kh:, half:half + W] = self.layers[0].maps["vconv"].clamped(xs)
        hin = np.zeros((N, H, kw + W, self.C), args[0]["hin"])
        hin[:, :, kw:] = self.layers[0].maps["hconv"].clamped(xs)
        raw, cmap = xs, self.condition(z)
        for n, layer in enumerate(self.layers):
            a, last = args[n], n + 1 == len(self.layers)
            channels = len(a["hout"][4])                 # outputs: the bias (a 16-bit weight has more columns)
            vrow = np.empty((H, W, N, len(a["v2h"][4])))
            vnext = vin if last else np.zeros((N, H + kh, W + 2 * half, channels), args[n + 1]["vin"])
            kernels.vertical(vin, 0, H, 0, W, kh, layer.kernel, *a["vconv"], cmap, *a["gate"], not last, vnext,
                             half, *a["next_v"], *a["v2h"], a["cond"], 0, vrow)
            out = np.empty((N, H, W, channels))
            hnext = np.zeros((N, H, kw + W, channels), a["next_h_type"])
            kernels.horizontal(hin, raw, vrow, kw, *a["hconv"], *a["gate"], *a["hout"], layer.first, *a["next_h"],
                               out, hnext)
            vin, hin, raw = vnext, hnext, out
        return raw

    def _compiled_args(self) -> list[dict]:
        """Per gated layer, the compiled kernels' fixed arguments (made once): each map's scaled weight (in the
        layout its kernel reads) and bias in the map's type, with how it reads its input (`_reads`); the gate's
        tables; how the next layer's maps read this layer's outputs; the types of the input buffers."""
        if self._args is not None:
            return self._args
        gate = self.gate
        gate_args = (gate.compiled_tables[0], gate.offsets[0], gate.compiled_tables[1], gate.offsets[1],
                     float(gate.half), 2.0 ** -gate.act_frac)
        ins = [self.C] + [l.maps["hout"].weight.shape[0] for l in self.layers[:-1]]
        dtype = lambda a: np.float32 if a.float32 else np.float64
        out = []
        for n, (layer, cin) in enumerate(zip(self.layers, ins)):
            m = layer.maps
            following = self.layers[n + 1].maps if n + 1 < len(self.layers) else None
            vconv = _operand(m["vconv"], m["vconv"].window_weight(cin, layer.kh, layer.kernel), cin % 2 == 0)
            hconv = _operand(m["hconv"], m["hconv"].window_weight(cin, 1, layer.kh))
            out.append({
                "vconv": vconv,
                "v2h": (*_reads(m["v2h"]), *_operand(m["v2h"], m["v2h"].scaled_weight_t)),
                "hconv": hconv,
                "hout": (*_reads(m["hout"]), *_operand(m["hout"], m["hout"].scaled_weight_t)),
                "cond": (*_reads(m["cond"]), *_operand(m["cond"], m["cond"].scaled_weight_t)),
                "gate": gate_args,
                "next_v": _reads(following["vconv"]) if following else (np.inf, 1.0, 0.0),
                "next_h": _reads(following["hconv"]) if following else (np.inf, 1.0, 0.0),
                "next_h_type": None,          # set below, from the next layer's hconv
                # a 16-bit vconv reads its input as int16, so that its windows are plain copies
                "vin": np.int16 if vconv[0].dtype == np.int32 else dtype(m["vconv"]),
                "hin": np.int16 if hconv[0].dtype == np.int32 else dtype(m["hconv"])})
        for a, following in zip(out, out[1:] + [None]):
            a["next_h_type"] = following["hin"] if following else np.float64
        self._args = out
        return out

    def stepper(self, z: np.ndarray, threads: int = 1) -> "Stepper":
        return Stepper(self, z, threads)

    @classmethod
    def from_dict(cls, d, p, pixel_in, gate) -> "Decoder":
        dims = [int(v) for v in _array(d[f"{p}.dims"], np.int64)]
        C, H, W, outputs = dims[4:]
        cmap = {n: Affine.from_dict(d, f"{p}.cmap.{n}") for n in ("fc", "up0", "up1")}
        layers = [GatedLayer({n: Affine.from_dict(d, f"{p}.layer{k}.{n}") for n in GatedLayer.KEYS},
                             bool(first), int(kernel))
                  for k, (first, kernel) in enumerate(_array(d[f"{p}.layers"], np.int64).tolist())]
        head = {"features": Affine.from_dict(d, f"{p}.head.features"),
                "logits": [Affine.from_dict(d, f"{p}.head.logits{c}") for c in range(C)]}
        if C > 1:
            head["previous"] = Affine.from_dict(d, f"{p}.head.previous")
        return cls(pixel_in, cmap, tuple(dims[:4]), layers, head, gate, (C, H, W), outputs)


#: A helper thread pays only where a row's vertical stack is worth handing over (multiply-adds per row: the round's
#: images times the vconv and v2h weights times the width). Decompress alone against with the helper
#: (bench/results/speed-helper.md, two runs each): binarized MNIST, 4 chains (12.3 million a row), 3.41-3.43 s
#: against 4.90-5.10; 8 chains (24.5 million), 2.41-2.55 s against 2.68-3.28; 16 chains (49 million),
#: 2.01-2.04 s against 1.90-1.96; 31 chains (95 million), 7.02-7.27 s against 5.40-5.90; digits, 56 chains
#: (16.7 million), 1.57-1.82 s against 1.57-1.60.
HELPER_MIN_MACS = 1 << 25
#: From this many images in a round the decoding thread makes the vertical stack of a share of the images itself
#: (`MAIN_SHARE`), each whole row at the row's start, and the helper the others' (in a big round the helper's
#: share of the work is the longer one). Decompress alternating in one process, three times each: 1,000
#: binarized-MNIST test images (31 chains) 7.1-7.3 s shared against 6.2-6.4 s with the helper making every
#: image's; 2,048 (128 chains) 9.5-11.9 s against 9.9-12.7 s. (Before, the two threads finished each row's
#: held-back columns half the images each: bench/results/speed-helper.md, 10,000 images 49.9-55.6 s against
#: 51.8-58.0 s with the helper alone.)
SHARE_MIN_IMAGES = 64
#: The decoding thread's share of the images in a big round, where the two threads' times per row even out: on
#: 2,048 binarized-MNIST test images in rounds of 128, at 0.3 the decoding thread's share took 3.9 ms a row and
#: its pixels 6.6 ms against the helper's 7.9 ms, which even out near 0.2. 0.1, 0.2 and 0.3 alternating in one
#: process gave 7.4-8.9, 7.9-9.1 and 7.5-8.9 s: within the machine's noise.
MAIN_SHARE = 0.2


def _kernels():
    """The compiled kernels (`kernels.py`), or None where numba is missing: numpy gives the same numbers."""
    try:
        from . import kernels
    except ImportError:
        return None
    return kernels


def _weights(a: Affine, weight: np.ndarray) -> tuple:
    """A map's scaled weight (in the layout given) and bias with its rounding, in the map's type."""
    return (a.weight32(weight), a.scaled_bias32) if a.float32 else (weight, a.scaled_bias)


def _integer_weight(a: Affine, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A map's scaled weight (in the layout given) as its integers and each output's scale 2^-s (exact: the
    scale is a power of two)."""
    scale = np.ascontiguousarray(np.broadcast_to(np.exp2(-a.shift), weight.shape[1:]), dtype=np.float64)
    return weight / scale, scale


def _operand(a: Affine, weight: np.ndarray, pairs: bool = True) -> tuple:
    """A compiled map's (weight, bias, units), each output's unit being what its sums are multiplied by: a
    16-bit integer weight (`products16.pack`) with units 2^-s, where the map is narrow, its integers fit 16 bits
    and the CPU multiplies 16-bit pairs (`products16.available`); else `_weights`' scaled weight with units 1.
    The same numbers either way. `pairs`: whether the kernel can read the map's inputs in pairs (a convolution
    read where its windows lie needs an even channel count)."""
    kernels = _kernels()
    sixteen = pairs and a.float32 and kernels is not None and kernels.products16.available()
    key = ("operand", id(weight), sixteen)         # made once per map and layout, like `Affine.weight32`
    if key not in a._windows:
        operand = (*_weights(a, weight), np.ones(weight.shape[1]))
        if sixteen:
            raw, scale = _integer_weight(a, weight)
            if kernels.products16.fits(raw, a.bound):
                operand = (kernels.products16.pack(raw), a.scaled_bias32, scale)
        a._windows[key] = (weight, operand)          # the weight kept, so that its id stays its own
    return a._windows[key][1]


def _conv_operand(a: Affine, weight: np.ndarray, cin: int) -> tuple:
    """A compiled convolution's (weight, bias, units, split), `kernels.conv`'s, over cin input channels: a
    narrow map's `_operand` with split 0; a wide map's 16-bit weight with units 2^-s and its inputs split in two
    16-bit parts (`products16.split_bits`), where its integers allow that, cin is even (the windows are read
    where they lie) and the CPU multiplies 16-bit pairs; else its scaled float64 weight, units 1 and split 0.
    The same numbers every way."""
    if a.float32:
        return (*_operand(a, weight), 0)
    kernels = _kernels()
    wide = cin % 2 == 0 and kernels is not None and kernels.products16.available()
    key = ("conv operand", id(weight), wide)
    if key not in a._windows:
        operand = (*_weights(a, weight), np.ones(weight.shape[1]), 0)
        if wide:
            raw, scale = _integer_weight(a, weight)
            split = kernels.products16.split_bits(raw, a.bound)
            if split is not None:
                operand = (kernels.products16.pack(raw), a.scaled_bias, scale, split)
        a._windows[key] = (weight, operand)
    return a._windows[key][1]


def _scratch(rows: int, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A compiled map's scratch for `rows` rows, as `kernels._scratch` and `kernels._sums` make it: its
    inputs as it reads them and its sums, int16 and int32 for a 16-bit weight, else the weight's type."""
    if weight.dtype == np.int32:
        return np.empty((rows, 2 * weight.shape[0]), np.int16), np.empty((rows, weight.shape[1]), np.int32)
    return np.empty((rows, weight.shape[0]), weight.dtype), np.empty((rows, weight.shape[1]), weight.dtype)


def _reads(a: Affine) -> tuple[float, float, float]:
    """How map a reads its input, as `kernels._read` takes it: the clamp limit in the input's own format (inf
    where it does not clamp), the scale 2^-in_shift and the rounding offset (0 where it does not round)."""
    limit = a.bound * 2.0 ** a.in_shift if a.clamp else np.inf
    return limit, 2.0 ** -a.in_shift, 0.5 if a.in_shift else 0.0


class _NextRow:
    """The next row's vertical stack while the current row is decoded: the columns each layer has done, its
    conditioning terms, its row-terms buffers, and the helper's task in flight."""

    def __init__(self, row: int, layers: int, vrow: list, images: slice = slice(None)):
        self.row, self.done, self.vrow, self.images = row, [0] * layers, vrow, images
        self.cond = None
        self.futures, self.asked = [], 0       # the helper's tasks for the row, and the pixels they were given
        self.conditioned = None                # the helper's task making `cond`
        self.parts = ()                        # where shared, both threads' parts (where the columns known count)


class Stepper:
    """Incremental decoding (the caching of `incremental.py`): per row, every layer's vertical stack and the
    horizontal stack's row terms; per pixel, one window matmul per layer. The per-pixel work and the vertical
    stack run compiled (`kernels.py`: one call per layer, where numpy makes some thirty) unless `compiled` is
    False or numba is missing; the numbers are the same.

    With `threads` > 1 a helper thread computes row i + 1's vertical stack while row i is decoded, column by
    column as the pixels it reads come: layer 0's column j reads row i's pixels j - half .. j + half, and layer
    n's reads layer n - 1's columns j - half .. j + half, so once row i's first d pixels are decoded, layer n's
    columns below d - (n + 1) half are known. At row i + 1's start only the columns the last pixels hold back
    are left. Each column's sums are the same exact sums, so the logits are the same in every bit; the decoding
    thread keeps the per-pixel work."""

    def __init__(self, dec: Decoder, z: np.ndarray, threads: int = 1, compiled: bool = True):
        self.dec = dec
        self.B, self.C, self.W = len(z), dec.C, dec.W
        l0 = dec.layers[0]
        self.kh, self.kw, self.half = l0.kh, l0.kh, l0.half
        self.ins = [self.C] + [l.maps["hout"].weight.shape[0] for l in dec.layers[:-1]]
        # hconv with its weight as `conv` reads it, (kw Cin, out): a (B, kw, Cin) window flattened times it
        self.hconv = [(l.maps["hconv"], l.maps["hconv"].window_weight(cin, 1, l.kh))
                      for l, cin in zip(dec.layers, self.ins)]
        # two sets of row terms, (W, B, 2C) per layer: the current row's, and the next row's being made
        widths = [l.maps["v2h"].weight.shape[0] for l in dec.layers]
        self.vrows = [[np.empty((1, self.W, self.B, w)) for w in widths] for _ in range(2)]
        self.helper = None
        per_row = self.B * self.W * sum(l.maps["vconv"].weight.size + l.maps["v2h"].weight.size
                                        for l in dec.layers)                # multiply-adds per row
        if threads > 1 and dec.H > 1 and per_row >= HELPER_MIN_MACS:
            from concurrent.futures import ThreadPoolExecutor
            self.helper = ThreadPoolExecutor(1, thread_name_prefix="acncodec-rows")
        if self.helper is not None and self.B >= 2:
            # the conditioning map, half of the images each (each image's map is its own: the same numbers)
            first = self.helper.submit(dec.condition, z[:self.B // 2])
            rest = dec.condition(z[self.B // 2:])
            self.cmap = np.concatenate([first.result(), rest])
        else:
            self.cmap = dec.condition(z)
        self.pending = None            # the next row's `_NextRow`, where a helper makes it
        self.kernels = _kernels() if compiled else None
        self.compiled = self._compile() if self.kernels is not None else None
        # vertical inputs, the rows above each decoded row (channels-last); compiled, as each vconv reads them
        # (rounded and clamped once, when written, in the map's type), so that a window is a plain copy
        vconvs = [l.maps["vconv"] for l in dec.layers]
        args = dec._compiled_args() if self.compiled is not None else None
        types = [a["vin"] for a in args] if args else [np.float64] * len(vconvs)
        self.vin = [np.zeros((self.B, dec.H + self.kh, self.W + 2 * self.half, cin), t)
                    for cin, t in zip(self.ins, types)]
        # how the compiled step's layer 0 reads its pixels: hconv's and vconv's `_reads`
        self.pixel_reads = None if self.compiled is None else (_reads(dec.layers[0].maps["hconv"]), _reads(vconvs[0]))
        # horizontal inputs, the current row's: raw for numpy's step, as each hconv reads them for the compiled one
        self.hin_types = [a["hin"] for a in args] if args else [np.float64] * len(self.ins)
        self.row, self.col, self.next = -1, -1, (0, 0)
        self.current = None            # this row's `_NextRow`

    def _vertical(self, work: _NextRow, n: int, end: int) -> None:
        """Layer n's vertical stack for row work.row at its columns work.done[n] .. end - 1: the gated output
        into the next layer's vertical input, the row terms into work.vrow[n]."""
        c0, i = work.done[n], work.row
        if end <= c0:
            return
        layer, kh, half = self.dec.layers[n], self.kh, self.half
        m, last = layer.maps, n + 1 == len(self.vin)
        b = work.images
        vin, vnext = self.vin[n][b], self.vin[0 if last else n + 1][b]
        if self.compiled is not None:
            vconv, v2h, gate, following, cond = self.compiled[3][n]
            self.kernels.vertical(vin, i, 1, c0, end, kh, layer.kernel, *vconv, self.cmap[b], *gate, not last,
                                  vnext, half, *following, *v2h, cond, i, work.vrow[n][:, :, b])
        else:
            cond_v, cond_h = work.cond[n]
            v_pre = conv(vin[:, i:i + kh, c0:end + 2 * half], m["vconv"], (kh, layer.kernel))[:, 0]
            v_pre += cond_v[b, 0, c0:end]
            if not last:
                vnext[:, i + kh - 1, half + c0:half + end] = self.dec.gate(v_pre)
            vh = m["v2h"](v_pre)
            vh += cond_h[b, 0, c0:end]
            work.vrow[n][0, c0:end, b] = vh.transpose(1, 0, 2)
        work.done[n] = end

    def _conditioning(self, work: _NextRow) -> None:
        if work.cond is None:
            work.cond = self.dec.cond_terms(self.cmap[:, work.row:work.row + 1])      # (B, 1, W, 2C) per layer

    def _advance(self, work: _NextRow, decoded: int) -> None:
        """Row work.row's vertical stack as far as the previous row's first `decoded` pixels allow (all of it
        once the row is decoded: the columns past the edge read padding)."""
        if self.compiled is None:
            self._conditioning(work)         # the compiled vertical stack makes its own
        for n in range(len(self.dec.layers)):
            end = self.W if decoded >= self.W else max(0, decoded - (n + 1) * self.half)
            self._vertical(work, n, end)

    def _start_row(self, i: int) -> None:
        work = self.pending
        if work is None or work.row != i:
            work = _NextRow(i, len(self.dec.layers), self.vrows[i % 2])
            self._advance(work, self.W)
        elif work.images != slice(None):
            # big rounds: this thread makes its share of the images' vertical stack for the whole row, while the
            # helper finishes the columns of its own share that the last pixels of the row above held back
            if work.conditioned is not None:
                work.conditioned.result()
            mine = _NextRow(i, len(self.dec.layers), work.vrow, slice(work.images.stop, None))
            mine.cond = work.cond
            work.parts = [work, mine]
            work.futures.append(self.helper.submit(self._advance, work, self.W))
            self._advance(mine, self.W)
        else:
            # the helper finishes the row's columns, after the task it may have in flight; the pixels wait for
            # them only when they reach the columns the last pixels of the row above held back
            work.futures.append(self.helper.submit(self._advance, work, self.W))
        self.current = work
        self.vrow = [v[0] for v in work.vrow]       # (W, B, 2C) per layer
        self.hin = [np.zeros((self.B, self.kw - 1 + self.W + 1, cin), t) for cin, t in zip(self.ins, self.hin_types)]
        self.row, self.col = i, -1
        self.pending = None
        if self.helper is not None and i + 1 < self.dec.H:
            share = int(round(MAIN_SHARE * self.B)) if self.B >= SHARE_MIN_IMAGES else 0
            self.pending = _NextRow(i + 1, len(self.dec.layers), self.vrows[(i + 1) % 2],
                                    slice(0, self.B - share) if share else slice(None))
            # numpy's vertical stack reads the row's conditioning terms: the helper makes them first (the compiled
            # one makes its own, block by block)
            if self.compiled is None:
                self.pending.conditioned = self.helper.submit(self._conditioning, self.pending)
                self.pending.futures.append(self.pending.conditioned)
        elif self.helper is not None:
            self.helper.shutdown(wait=False)        # its last task (this row's columns) still runs
            self.helper = None

    def _columns_ready(self, j: int) -> None:
        """Wait, if need be, until every layer's row terms of this row are known at column j."""
        work = self.current
        if work.futures and min(min(p.done) for p in work.parts or (work,)) <= j:
            for future in work.futures:
                future.result()         # raises the helper's exception, if it raised one
            work.futures.clear()

    def _hand_over(self, decoded: int) -> None:
        """Give the helper the next row's columns that the first `decoded` pixels of this row make known, when
        it is free and at least `half` more are known than it was last given (it finishes the row's end)."""
        work = self.pending
        if decoded >= self.W or decoded - work.asked < max(1, self.half) or decoded <= self.half:
            return
        if any(not f.done() for f in work.futures + self.current.futures):
            return
        work.asked = decoded
        work.futures.append(self.helper.submit(self._advance, work, decoded))

    def _stack(self, j: int) -> None:
        self._columns_ready(j)
        if self.compiled is None:
            return self._stack_numpy(j)
        h = self.compiled[0]
        for n, (head, tail, out) in enumerate(self.compiled[1]):
            h = self.kernels.layer_step(self.hin[n], j, self.kw, h, n > 0, *head, self.vrow[n][j], *tail, out)
        self.top = h                    # the head reads relu(top)
        self.col = j

    def _compile(self):
        """The compiled step's fixed arguments per layer (`kernels.layer_step`): (the layer-0 input placeholder,
        [(the arguments before the row terms, those after, the output buffer)])."""
        B, args = self.B, self.dec._compiled_args()
        layers = []
        for n, (layer, a) in enumerate(zip(self.dec.layers, args)):
            if layer.first != (n == 0):
                return None         # the compiled step adds the layer below's output (never so in these models)
            hconv, hout = layer.maps["hconv"], layer.maps["hout"]
            head = (*_reads(hconv), *a["hconv"])
            tail = (*a["gate"], *a["hout"], layer.first, *_scratch(B, a["hconv"][0]), *_scratch(B, a["hout"][3]))
            layers.append((head, tail, np.empty((B, hout.weight.shape[0]))))
        heads = [(self._compiled_map(f, B), self._compiled_map(l, B))
                 for f, l in zip(self.dec.features_c, self.dec.head["logits"])]
        vertical = [(a["vconv"], a["v2h"], a["gate"], a["next_v"], a["cond"]) for a in args]
        return np.zeros((B, self.C)), layers, heads, vertical

    @staticmethod
    def _compiled_map(a: Affine, B: int) -> tuple:
        """`kernels.affine`'s arguments between relu and the output for map a on B rows."""
        dtype = np.float32 if a.float32 else np.float64
        weight, bias = (a.weight32(a.scaled_weight_t), a.scaled_bias32) if a.float32 else (a.scaled_weight_t,
                                                                                            a.scaled_bias)
        return (*_reads(a), weight, bias,
                np.empty((B, weight.shape[0]), dtype), np.empty((B, weight.shape[1]), dtype))

    def _stack_numpy(self, j: int) -> None:
        kw, h, gate = self.kw, None, self.dec.gate
        for n, layer in enumerate(self.dec.layers):
            buf = self.hin[n]
            if n > 0:
                buf[:, j + kw - 1] = h
            hconv, weight = self.hconv[n]
            h_pre = hconv.finish(hconv.products(buf[:, j:j + kw].reshape(self.B, -1), weight))
            h_pre += self.vrow[n][j]
            out = layer.maps["hout"](gate(h_pre))
            h = out if layer.first else out + buf[:, j + kw - 1]
        self.top = h                    # the head reads relu(top)
        self.col = j

    def logits(self, i: int, j: int, c: int, pixel) -> np.ndarray:
        """Integer logits (B, outputs) of channel c at (i, j); pixel (B, C) holds the values of channels < c."""
        if (i, j) != self.next or not 0 <= c < self.C:
            raise ValueError(f"logits({i}, {j}, {c}) out of raster order: expected pixel {self.next}")
        if self.row != i:
            self._start_row(i)
        if self.col != j:
            self._stack(j)
        xs = self.dec.pixel_in[np.asarray(pixel, dtype=np.int64)] if c > 0 else None
        if self.compiled is None:
            return self.dec.head_logits(np.maximum(self.top, 0.0), xs, c)
        features, logits = self.compiled[2][c]
        hidden = self.kernels.affine(self.top, True, *features, np.empty((self.B, features[3].shape[1])))
        if c > 0:
            hidden += self.dec.previous_c[c](xs[..., :c])
        return self.kernels.affine(hidden, True, *logits, np.empty((self.B, logits[3].shape[1])))

    def set_pixel(self, i: int, j: int, values) -> None:
        if (i, j) != self.next or self.col != j or self.row != i:
            raise ValueError(f"set_pixel({i}, {j}) out of order: expected {self.next} after its logits")
        if self.pixel_reads is None:
            xs = self.dec.pixel_in[np.asarray(values, dtype=np.int64)]
            self.hin[0][:, j + self.kw] = xs
            self.vin[0][:, i + self.kh, self.half + j] = xs
        else:
            (h_limit, h_scale, h_offset), (v_limit, v_scale, v_offset) = self.pixel_reads
            self.kernels.write_pixel(np.asarray(values, dtype=np.int64), self.dec.pixel_in, self.hin[0], j + self.kw,
                                     h_limit, h_scale, h_offset, self.vin[0], i + self.kh, self.half + j, v_limit,
                                     v_scale, v_offset)
        self.next = (i, j + 1) if j + 1 < self.W else (i + 1, 0)
        if self.pending is not None:
            self._hand_over(j + 1)


# ------------------------------------------------------------------------------------------ the whole
@dataclass
class IntNetworks:
    """The three integer networks of an exact model, with their formats."""

    encoder: Encoder
    prior: Prior
    decoder: Decoder
    formats: dict      # act_frac, code_frac, raw_frac, logit_frac

    def maps(self) -> list[Affine]:
        """Every affine map (for proofs of their bounds)."""
        d = self.decoder
        return list(self.encoder.convs) + list(self.encoder.fc) + list(self.prior.layers.values()) \
            + list(d.cmap.values()) + [a for layer in d.layers for a in layer.maps.values()] \
            + [d.head["features"], *d.head["logits"]] + ([d.head["previous"]] if "previous" in d.head else [])

    @classmethod
    def from_dict(cls, d: dict) -> "IntNetworks":
        act, code, raw, logit = (int(v) for v in _array(d["formats"], np.int64))
        pixel_in = _array(d["pixel_in"])
        tanh, sigmoid = Table.from_dict(d, "tanh"), Table.from_dict(d, "sigmoid")
        nets = cls(Encoder.from_dict(d, "encoder", pixel_in),
                   Prior.from_dict(d, "prior", tanh, act, code),
                   Decoder.from_dict(d, "decoder", pixel_in, Gate(tanh, sigmoid, act)),
                   {"act_frac": act, "code_frac": code, "raw_frac": raw, "logit_frac": logit})
        for a in nets.maps():   # a crafted model file must not be able to break exactness
            a.check_bound()
        return nets
