"""The exact implementation of the seam (numerics "exact1", and "exact2", whose decoder maps are narrow):
integer networks (`quantize.py`) and integer probability tables (`exact_tables.py`), so an archive decodes
bit-exactly on any machine.

Every number on the coding path is an integer: the networks' activations are integer-valued float64 whose
accumulations are proven exact when the model is quantised, the nonlinearities and every probability come
from stored integer tables, and constriction receives masses m / 2^MASS_BITS whose quantisation is exact
(`exact_tables.to_constriction`). The full pass therefore equals the incremental stepper bit for bit, for
any batch size and thread count: `full_pass_exact` is True.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import numpy as np

from . import exact_tables as tables
from . import intnet
from .codecs import DimByDim, components
from .intnet import IntNetworks, _kernels
from .numerics import PixelStepper, ProbabilityModel


def split_parts(parts: dict) -> tuple[dict, dict, dict]:
    """A model file's exact parts ("net.*", "latent.*", "pixel.*" tensors) split by owner, prefixes removed."""
    out = ({}, {}, {})
    for key, value in parts.items():
        owner, _, name = key.partition(".")
        out[("net", "latent", "pixel").index(owner)][name] = value
    return out


def join_parts(nets, latent: "tables.LatentTables", pixel: "tables.PixelTables") -> dict:
    parts = {f"net.{k}": v for k, v in nets.to_dict().items()}
    parts.update({f"latent.{k}": v for k, v in latent.to_dict().items()})
    parts.update({f"pixel.{k}": v for k, v in pixel.to_dict().items()})
    return parts


#: Images per network call in `encode` and `score`. Every number is batch-invariant, so this is only a speed
#: choice: the activations of a few images stay in cache (on the binarized-MNIST and Fashion-MNIST models the
#: full pass ran markedly slower on 64 images at once). `bench/coding_speed.py` measures the whole effect.
ENCODE_BLOCK = 16
SCORE_BLOCK = 4
#: Codes per thread from which `prior_probs` shares a round's codes among the threads.
PRIOR_SPLIT = 32


#: Threads that run the blocks of `encode` and `score` side by side; None: as many as the BLAS pool has (so a
#: worker process limited to one core, or OPENBLAS_NUM_THREADS=1, stays on one). Blocks are independent and every
#: number is batch-invariant, so the result is the same array whatever the count; each thread's matrix
#: products then run on one BLAS thread, since a block's are too small to share (bench/results/speed-blas-*).
PASS_THREADS: int | None = None

_blas = None


def _blas_pool():
    """The BLAS libraries, as threadpoolctl controls them (found once): numpy's, loaded at its import, and the
    one the compiled kernels' products call (scipy's, through numba's np.dot), which may be another. That one is
    loaded here, before the kernels are: the pool must be held at one thread before their first product."""
    global _blas
    if _blas is None:
        import importlib.util
        from threadpoolctl import ThreadpoolController
        if importlib.util.find_spec("numba") is not None:
            import scipy.linalg.cython_blas  # noqa: F401
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def pass_threads() -> int:
    if PASS_THREADS is not None:
        return max(1, PASS_THREADS)
    return max([lib.num_threads for lib in _blas_pool().lib_controllers], default=1)


@contextmanager
def side_by_side():
    """For a whole compress or decompress: the thread count resolved once (`PASS_THREADS`) and, where it is
    above one, numpy's BLAS held at one thread, so that the threads that share out the blocks and the decoder's
    rows do not each start a pool as wide as the machine."""
    global PASS_THREADS
    before = PASS_THREADS
    PASS_THREADS = threads = pass_threads()
    try:
        with _blas_pool().limit(limits=1) if threads > 1 else nullcontext():
            yield threads
    finally:
        PASS_THREADS = before


def _blocks(f, n: int, block: int, *arrays) -> np.ndarray:
    if n <= block:
        return f(*arrays)
    starts = range(0, n, block)
    part = lambda i: f(*(a[i:i + block] for a in arrays))
    threads = min(pass_threads(), len(starts))
    if threads == 1:
        return np.concatenate([part(i) for i in starts])
    from concurrent.futures import ThreadPoolExecutor
    with _blas_pool().limit(limits=1), ThreadPoolExecutor(threads) as pool:
        return np.concatenate(list(pool.map(part, starts)))


def _ints(a: np.ndarray) -> np.ndarray:
    """Integer-valued float64 activations as int64 (exact: all below 2^53)."""
    return a.astype(np.int64)


def probabilities(pixel_tables: "tables.PixelTables", kernels):
    """A function from integer-valued float64 logits (..., outputs) to `exact_tables.pixel_probs`' numbers: one
    compiled call (`kernels.pixel_probs`) where `kernels` is given and the exp table is expanded, its fixed
    arguments made here once (a decoder step calls it every pixel)."""
    exp = pixel_tables.exp
    if kernels is None or exp.dense is None:
        return lambda logits: tables.pixel_probs(pixel_tables, _ints(logits))
    fixed = (exp.dense, exp.start, tables.MASS_BITS, tables.EXP_BITS, tables.raw_shift(tables.EXP_BITS + 1))
    binary = pixel_tables.levels == 2

    def probs(logits: np.ndarray) -> np.ndarray:
        tables.check_outputs(pixel_tables, logits.shape[-1])
        flat = np.ascontiguousarray(logits).reshape(-1, logits.shape[-1])
        out = kernels.pixel_probs(flat, *fixed, np.empty(flat.shape))
        return out.reshape(logits.shape[:-1] if binary else logits.shape)
    return probs


class ExactStepper(PixelStepper):
    def __init__(self, stepper, pixel_tables):
        self.stepper = stepper
        self.probs = probabilities(pixel_tables, stepper.kernels if stepper.compiled is not None else None)

    def predict(self, i, j, c, pixel):
        return self.probs(self.stepper.logits(i, j, c, pixel))

    def set_pixel(self, i, j, pixel):
        self.stepper.set_pixel(i, j, pixel)


class ExactModel(ProbabilityModel):
    numerics = "exact1"
    full_pass_exact = True
    batch_invariant = True
    has_pointer_weights = True

    def __init__(self, model):
        if model.exact is None:
            raise ValueError(f"model has numerics {model.numerics!r} but no integer networks")
        self.numerics = model.numerics
        net_part, latent_part, pixel_part = split_parts(model.exact)
        self.nets = IntNetworks.from_dict(net_part)
        self.latent = tables.LatentTables.from_dict(latent_part)
        self.pixels = tables.PixelTables.from_dict(pixel_part)
        spec = model.spec
        self.shape = (spec.channels, spec.height, spec.width)
        self.levels = spec.levels
        self.binary = spec.levels == 2
        self.latent_dim = self.latent.dim
        self.bucket_bits = self.latent.buckets.bit_length() - 1
        self.head_weights = tables.to_constriction(self.latent.head_weights)
        self.head_probs = (None if self.latent.head_full is not None
                           else tables.to_constriction(self.latent.head_masses))

    def latent_values(self, buckets: np.ndarray) -> np.ndarray:
        return tables.latent_values(self.latent, buckets).astype(np.float64)

    def encode(self, x):
        """Codes as ints at CODE_FRAC (B, D) int64."""
        return _ints(_blocks(self.nets.encoder, len(x), ENCODE_BLOCK, np.asarray(x)))

    def float_codes(self, codes: np.ndarray) -> np.ndarray:
        """`encode`'s codes in the float model's unit (float32)."""
        return (np.asarray(codes, dtype=np.float64) * 2.0 ** -self.nets.formats["code_frac"]).astype(np.float32)

    def posterior_probs(self, codes):
        codes = np.asarray(codes, dtype=np.int64)
        kernels = _kernels()
        if kernels is None or codes.ndim != 2:
            return tables.to_constriction(tables.posterior_masses(self.latent, codes))
        tables.check_dims(self.latent, codes, -1, "codes")
        t = self.latent
        return kernels.posterior_masses(
            codes, t.edges, t.phi.interpolation(), tables.EDGE_LIMIT << tables.CODE_FRAC,
            1 << (tables.EDGE_FRAC - tables.CODE_FRAC), 1 << tables.CDF_BITS, tables.raw_shift(tables.CDF_BITS + 1),
            tables.MASS_BITS, np.empty(codes.shape + (t.buckets,)))

    def prior_probs(self, previous_codes):
        codes = np.asarray(previous_codes, dtype=np.float64)
        if codes.ndim == 2 and len(codes) >= 2 * PRIOR_SPLIT:
            # a round's priors shared among the threads, like a full pass's blocks
            return _blocks(self._prior_probs, len(codes), -(-len(codes) // pass_threads()), codes)
        return self._prior_probs(codes)

    def _prior_probs(self, codes: np.ndarray) -> np.ndarray:
        raw = _ints(self.nets.prior(codes))
        kernels = _kernels()
        if kernels is None or raw.ndim != 4 or raw.shape[-1] != 3:
            return tables.to_constriction(tables.prior_masses(self.latent, raw))     # (which checks the shape)
        tables.check_dims(self.latent, raw, -3, "raw prior outputs")
        return kernels.prior_masses(raw, *self._prior_args(raw.shape[-2]),
                                    np.empty(raw.shape[:-2] + (self.latent.buckets,)))

    def _prior_args(self, components: int) -> tuple:
        """`kernels.prior_masses`' fixed arguments (the checks `exact_tables.prior_masses` makes, made here)."""
        if components > tables.MAX_COMPONENTS:
            raise ValueError(f"{components} mixture components, the exact numerics take at most "
                             f"{tables.MAX_COMPONENTS}")
        t = self.latent
        return (t.edges, t.exp.interpolation(), tables.EXP_BITS - tables.WEIGHT_BITS, t.inv_scale.interpolation(),
                t.phi.interpolation(),
                tables.EDGE_LIMIT << tables.CODE_FRAC, 1 << (tables.EDGE_FRAC - tables.CODE_FRAC), tables.INV_FRAC,
                1 << tables.CDF_BITS, tables.raw_shift(tables.WEIGHT_BITS + tables.CDF_BITS
                                                       + components.bit_length()), tables.MASS_BITS)

    def head_posterior(self, buckets):
        return tables.head_posterior(self.latent, buckets)

    def head_codec(self, batch):
        if self.latent.head_full is None:
            return super().head_codec(batch)
        # A full-covariance component codes its dimensions in order, each given the buckets before it.
        def given(ks):
            return DimByDim(lambda d, buckets: tables.to_constriction(
                tables.full_head_masses(self.latent, ks, d, buckets)), len(ks), self.latent_dim)
        return components(self.head_weights, given, self.head_posterior, batch)

    def pointer_weights(self, buckets, neighbour_codes):
        n, k, d = neighbour_codes.shape
        raw = _ints(self.nets.prior(np.asarray(neighbour_codes, dtype=np.float64).reshape(n * k, d)))
        return tables.to_constriction(tables.pointer_masses(self.latent, buckets, raw.reshape(n, k, *raw.shape[1:])))

    def stepper(self, buckets):
        return ExactStepper(self.nets.decoder.stepper(self.latent_values(buckets), pass_threads()), self.pixels)

    def score(self, x, buckets):
        probs = probabilities(self.pixels, intnet._kernels())

        def block(x, z):    # each block's probabilities in its own thread
            return probs(self.nets.decoder.logits(x, z))                       # logits (B, C, H, W, outputs)
        return _blocks(block, len(x), SCORE_BLOCK, np.asarray(x), self.latent_values(buckets))
