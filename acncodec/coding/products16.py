"""16-bit integer matrix products for the compiled decoder (`kernels.py`), where the CPU multiplies pairs of
16-bit integers into 32-bit sums (x86's AVX-512BW `vpmaddwd`, fused into `vpdpwssd` where it has AVX-512 VNNI).

Why they give the float32 products' numbers: an exact2 map's operands are integers (its input clamped to
|x| <= bound, its weight W an integer before the power-of-two scale 2^-s), and every partial sum of W x stays
below 2^24 (`intnet.Affine.float32`). Where |x| and |W| are also below 2^15, each pair product and pair sum fits
a 32-bit integer, so the 32-bit sums are W x exactly, in any order, and (W x) 2^-s is the float32 product's
value in every bit. Integer arithmetic has no rounding, so every machine that takes this path computes the same
numbers, and so does every machine that takes the float path.

Why: on this project's CPU (AMD EPYC, AVX-512 VNNI), on one thread, a (448 x 480) @ (480 x 64) product, a
decoder layer's vconv on a block of four images, ran at 350 GOP/s against 104 GFLOP/s for OpenBLAS's float32
product (its Haswell kernels), and the products of the decoder's other shapes 2.9-3.9 times as fast
(`python bench/products16.py`, bench/results/products16.md).

The weight is stored packed: (ceil(K / 2), N) int32, entry [p, n] holding W[2p, n] in its low and W[2p + 1, n]
in its high 16 bits, so that 16 outputs' pairs are one 512-bit load. The input (M, K) int16 is read a pair at
a time and broadcast. `products` computes 4 rows by up to 64 outputs per step, its sums held in registers over
all K.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Operands within +-LIMIT: a pair's products then sum below 2^31 (vpmaddwd's one overflow, -2^15 * -2^15
#: twice, cannot occur).
LIMIT = 2 ** 15 - 1
ROWS = 4        # input rows per step
LANES = 16      # 32-bit sums per 512-bit register


def target_features() -> str:
    """The instruction-set features numba compiles for (its own setting, NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, or
    the host's)."""
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()._tm_features


def available() -> bool:
    """Whether the compiled kernels can take the 16-bit path on this machine (AVX-512BW in numba's target)."""
    try:
        return "+avx512bw" in target_features().split(",")
    except Exception:        # a numba without this attribute: the float path
        return False


def fits(raw_weight: np.ndarray, bound: float) -> bool:
    """Whether a map of integer weight raw_weight and inputs within +-bound can take the 16-bit path (its sums
    below 2^24 are the caller's condition, `Affine.float32`)."""
    return raw_weight.size > 0 and float(np.abs(raw_weight).max()) <= LIMIT and np.ceil(bound) <= LIMIT


#: The largest 32-bit sum.
SUM_LIMIT = 2 ** 31 - 1


def split_bits(raw_weight: np.ndarray, bound: float) -> int | None:
    """For a wide map (sums up to 2^53) of integer weight raw_weight (K, N), as `pack` takes it, and inputs within
    +-bound: the bits p of the low part when each input x is taken as 2^p h + l (h = floor(x / 2^p), 0 <= l <
    2^p), so that W l and W h are each 16-bit products whose every partial sum stays within 32 bits; None where
    no p does (a weight beyond 16 bits, or an output whose sum of |weights| times the larger part passes
    2^31 - 1).

    Why exact: every partial sum of W l or W h is at most the output's sum of |weights| times the largest |l| or
    |h|, so the 32-bit sums are W l and W h exactly, and 2^p (W h) + W l = W x exactly in float64 (it is below
    2^53, `intnet.Affine.check_bound`). The p taken is the one with the smallest larger part."""
    w = np.abs(np.asarray(raw_weight, dtype=np.float64))
    if w.size == 0 or float(w.max()) > LIMIT or not np.isfinite(bound):
        return None
    l1 = float(w.sum(axis=0).max())        # per output
    parts = {p: max(2 ** p - 1, int(np.ceil(bound / 2 ** p))) for p in range(1, 16)}
    p = min(parts, key=lambda p: (parts[p], p))
    return p if parts[p] <= LIMIT and l1 * parts[p] <= SUM_LIMIT else None


def pack(raw_weight: np.ndarray) -> np.ndarray:
    """(K, N) integer weight -> (ceil(K / 2), N') int32 of 16-bit pairs, N' = N rounded up to 16 (zeros added:
    a row where K is odd, columns whose sums nobody reads)."""
    w = np.asarray(raw_weight)
    if not np.array_equal(w, np.round(w)) or float(np.abs(w).max(initial=0)) > LIMIT:
        raise ValueError("a 16-bit weight must be integers within +-(2^15 - 1)")
    k, n = w.shape
    pairs = np.zeros((-(-k // 2) * 2, -(-n // LANES) * LANES), np.int16)
    pairs[:k, :n] = w
    return np.ascontiguousarray(pairs.reshape(-1, 2, pairs.shape[1]).transpose(0, 2, 1)).view(np.int32)[..., 0]


def _step(vectors: int, rows: int):
    """An intrinsic step(x, offsets, weight, out, x0, x_step, q0, q_step, n0): for i < rows,
    out[q0 + i q_step, n0:n0 + 16 vectors] (int32) = sum over p of the 16-bit pair at byte x0 + i x_step +
    offsets[p] of x's data times the packed weight's row p (`pack`). Its rows x vectors sums stay in registers
    over every p. The offsets let one step read a convolution's input where it lies (`conv_row`) as well as a
    matrix's rows (`products`)."""

    @intrinsic
    def step(typingctx, x, offsets, weight, out, x0, x_step, q0, q_step, n0):
        sig = types.void(x, offsets, weight, out, x0, x_step, q0, q_step, n0)

        def codegen(context, builder, signature, args):
            if "+avx512bw" not in context.codegen()._tm_features.split(","):
                raise NotImplementedError("16-bit products need AVX-512BW (products16.available)")
            arrays = [context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:4], args[:4])]
            x0, x_step, q0, q_step, n0 = args[4:]
            i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
            sums_t, pairs_t = ir.VectorType(i32, LANES), ir.VectorType(i16, 2 * LANES)
            const = lambda v: ir.Constant(i64, v)
            data = [builder.bitcast(a.data, i8.as_pointer()) for a in arrays]
            w_stride = builder.extract_value(arrays[2].strides, 0)
            out_stride = builder.extract_value(arrays[3].strides, 0)
            count = builder.extract_value(arrays[2].shape, 0)          # the weight's rows: input pairs
            madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(sums_t, [pairs_t, pairs_t]),
                                                  "llvm.x86.avx512.pmaddw.d.512")
            byte = lambda k, offset, kind: builder.bitcast(builder.gep(data[k], [offset]), kind.as_pointer())
            offsets = builder.bitcast(arrays[1].data, i64.as_pointer())
            zero = ir.Constant(sums_t, [0] * LANES)
            entry = builder.block
            loop, done = builder.append_basic_block("pairs"), builder.append_basic_block("stored")
            builder.cbranch(builder.icmp_signed(">", count, const(0)), loop, done)
            builder.position_at_end(loop)
            p = builder.phi(i64)
            p.add_incoming(const(0), entry)
            sums = [builder.phi(sums_t) for _ in range(rows * vectors)]
            for s in sums:
                s.add_incoming(zero, entry)
            w_row = builder.mul(p, w_stride)
            columns = [builder.bitcast(builder.load(byte(2, builder.add(w_row, builder.mul(
                builder.add(n0, const(LANES * v)), const(4))), sums_t), align=4), pairs_t) for v in range(vectors)]
            at = builder.add(x0, builder.load(builder.gep(offsets, [p])))
            new = []
            for r in range(rows):
                pair = builder.load(byte(0, builder.add(at, builder.mul(x_step, const(r))), i32), align=2)
                spread = builder.insert_element(ir.Constant(sums_t, ir.Undefined), pair, ir.Constant(i32, 0))
                spread = builder.shuffle_vector(spread, ir.Constant(sums_t, ir.Undefined),
                                                ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
                spread = builder.bitcast(spread, pairs_t)
                new += [builder.add(sums[r * vectors + v], builder.call(madd, [spread, columns[v]]))
                        for v in range(vectors)]
            p_next = builder.add(p, const(1))
            p.add_incoming(p_next, builder.block)
            for s, n in zip(sums, new):
                s.add_incoming(n, builder.block)
            builder.cbranch(builder.icmp_signed("<", p_next, count), loop, done)
            last = builder.block
            builder.position_at_end(done)
            totals = [builder.phi(sums_t) for _ in new]          # every phi first, then the stores
            for total, n in zip(totals, new):
                total.add_incoming(zero, entry)
                total.add_incoming(n, last)
            for r in range(rows):
                row = builder.mul(builder.add(q0, builder.mul(q_step, const(r))), out_stride)
                for v in range(vectors):
                    at_out = builder.add(row, builder.mul(builder.add(n0, const(LANES * v)), const(4)))
                    builder.store(totals[r * vectors + v], byte(3, at_out, sums_t), align=4)
            return context.get_dummy_value()

        return sig, codegen

    return step


def _columns(wide, middle, narrow):
    """A function running steps over every column of the weight: `wide` (64 outputs) while they last, then
    `middle` (32) and `narrow` (16) for the rest, all for the same rows."""

    @njit(cache=True, nogil=True, inline="always")
    def columns(x, offsets, weight, out, x0, x_step, q0, q_step):
        N = weight.shape[1]
        n = 0
        while n + 4 * LANES <= N:
            wide(x, offsets, weight, out, x0, x_step, q0, q_step, n)
            n += 4 * LANES
        if n + 2 * LANES <= N:
            middle(x, offsets, weight, out, x0, x_step, q0, q_step, n)
            n += 2 * LANES
        if n < N:
            narrow(x, offsets, weight, out, x0, x_step, q0, q_step, n)

    return columns


_four_rows = _columns(_step(4, ROWS), _step(2, ROWS), _step(1, ROWS))
_one_row = _columns(_step(4, 1), _step(2, 1), _step(1, 1))


@njit(cache=True, nogil=True, inline="always")
def _rows(x, offsets, weight, out, x0, x_step, n, q0, q_step):
    """Rows i < n of x's data, row i at byte x0 + i x_step (its pairs at `offsets` from there), times the packed
    weight into out[q0 + i q_step]: 4-row steps while they last, then single rows."""
    i = 0
    while i + ROWS <= n:
        _four_rows(x, offsets, weight, out, x0 + i * x_step, x_step, q0 + i * q_step, q_step)
        i += ROWS
    while i < n:
        _one_row(x, offsets, weight, out, x0 + i * x_step, x_step, q0 + i * q_step, q_step)
        i += 1


@njit(cache=True, nogil=True)
def products(x, weight, out):
    """out (M, N) int32 = x (M, 2 P) int16 @ the packed weight (P, N) int32 (`pack`); x's rows contiguous."""
    return rows_at(x, 0, x.strides[0], x.shape[0], weight, out)


@njit(cache=True, nogil=True)
def rows_at(x, x0, x_step, rows, weight, out):
    """out[:rows] (int32) = rows of 2 P int16 read where they lie in x's data, row i at byte x0 + i x_step, @ the
    packed weight (P, N) int32: a matrix's rows, or a convolution's windows of consecutive values."""
    _rows(x, np.arange(weight.shape[0]) * 4, weight, out, x0, x_step, rows, 0, 1)
    return out


@njit(cache=True, nogil=True)
def conv_offsets(x, kh, kw):
    """Per input pair of a (kh, kw) window over x (B, H, W, Cin) int16, Cin even, in the window's (row, column,
    channel) order: its byte offset from the window's first element."""
    pairs = x.shape[3] // 2
    offsets = np.empty(kh * kw * pairs, np.int64)
    for dr in range(kh):
        for k in range(kw):
            for c in range(pairs):
                offsets[(dr * kw + k) * pairs + c] = dr * x.strides[1] + k * x.strides[2] + 4 * c
    return offsets


@njit(cache=True, nogil=True)
def conv_row(x, offsets, weight, out, b, row, c0, n, q0, q_step, stride):
    """A convolution's sums at n positions of one row, `stride` columns apart: the window at x[b, row, c0 +
    c stride] (its first element; `conv_offsets` gives the rest) into out[q0 + c q_step] (int32), for c < n."""
    x0 = b * x.strides[0] + row * x.strides[1] + c0 * x.strides[2]
    _rows(x, offsets, weight, out, x0, stride * x.strides[2], n, q0, q_step)
