"""The seam: one probability model that both sides of the codec use for every probability they code with.

Sender and receiver must agree on every probability to the last bit (docs/DESIGN.md, "Determinism"). All of
them come from a `ProbabilityModel`:

- `encode(x)`: the codes E(x) of a round's images (they condition the next prior and give the bits back);
- `posterior_probs(codes)`: q(bucket | x) per latent dimension;
- `prior_probs(previous_codes)`: p(bucket | ĉ) per latent dimension;
- `head_codec(batch)`: the unconditional mixture p(z) that codes chain heads (and every latent of the
  unordered modes), from tables computed once when the model was made and stored in the model file: by
  default `head_weights`, `head_probs` (diagonal components) and `head_posterior(buckets)`;
- `pointer_weights(buckets, neighbour_codes)`: the associative set order's r(k | z) over the unconditional
  mixture and the conditional priors of a few decoded neighbours (set_order.py);
- `stepper(buckets)`: the next pixel's probabilities given the pixels so far, for a batch (`raster.py`);
- `score(x, buckets)`: every pixel's probabilities in one full pass.

The model file records which implementation its numbers come from (`Model.numerics`); `for_model` picks it.
The float implementation (`float_numerics.py`) reproduces the first release's probabilities exactly, and its
full pass is *not* bit-identical to its stepper, so the protocol only ever codes with the stepper
(`full_pass_exact` says whether the scorer may stand in for it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class PixelStepper(ABC):
    @abstractmethod
    def predict(self, i: int, j: int, c: int, pixel: np.ndarray) -> np.ndarray:
        """Probabilities for channel c of pixel (i, j): P(1) (B,) for binary data, (B, levels) otherwise.
        `pixel` (B, C) holds the values of channels < c of this pixel."""

    @abstractmethod
    def set_pixel(self, i: int, j: int, pixel: np.ndarray) -> None:
        """Record the values (B, C) of pixel (i, j) before moving to the next one."""


class ProbabilityModel(ABC):
    numerics: str = "abstract"
    full_pass_exact: bool = False
    #: Whether every datum's numbers (codes, latent and pixel probabilities) are the same bits whatever batch it
    #: is computed in. Then the sender may compute them in batches of her choosing, not only the receiver's.
    batch_invariant: bool = False

    latent_dim: int
    bucket_bits: int
    binary: bool
    levels: int
    shape: tuple[int, int, int]      # (C, H, W)
    head_weights: np.ndarray         # (K,)
    head_probs: np.ndarray           # (K, D, 2^bits)

    @abstractmethod
    def encode(self, x: np.ndarray) -> np.ndarray:
        """Codes (B, D) of images x (B, C, H, W) given as level indices."""

    def float_codes(self, codes: np.ndarray) -> np.ndarray:
        """`encode`'s codes in the unit the float model's priors expect (the sender's tour and estimate read them):
        here they are in it already."""
        return codes

    @abstractmethod
    def posterior_probs(self, codes: np.ndarray) -> np.ndarray:
        """q(bucket | x) as (B, D, 2^bits)."""

    @abstractmethod
    def prior_probs(self, previous_codes: np.ndarray) -> np.ndarray:
        """p(bucket | ĉ) as (B, D, 2^bits)."""

    @abstractmethod
    def head_posterior(self, buckets: np.ndarray) -> np.ndarray:
        """q(k | z) (B, K) of the unconditional mixture's component given bucketed latents (B, D)."""

    def head_codec(self, batch: int):
        """The codec of `batch` bucketed latents (B, D) under the unconditional mixture, bits back on the
        component: each component's dimensions independent, under `head_probs`."""
        from .codecs import mixture
        return mixture(self.head_weights, self.head_probs, self.head_posterior, batch)

    #: Whether `pointer_weights` exists (the associative set order needs it).
    has_pointer_weights: bool = False

    def pointer_weights(self, buckets: np.ndarray, neighbour_codes: np.ndarray) -> np.ndarray:
        """r(k | z) (B, 1 + K) over [the unconditional mixture, p(z | c_1), ..., p(z | c_K)] for bucketed
        latents (B, D) and neighbour codes (B, K, D): every entry positive, each row summing to 1."""
        raise NotImplementedError(f"numerics {self.numerics} has no associative pointer weights")

    @abstractmethod
    def stepper(self, buckets: np.ndarray) -> PixelStepper:
        """A pixel stepper for the decoder conditioned on the latents of `buckets` (B, D)."""

    @abstractmethod
    def score(self, x: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """Every pixel's probabilities in one pass: (B, C, H, W) for binary data, (B, C, H, W, levels)."""


def for_model(model) -> ProbabilityModel:
    """The implementation the model file records."""
    numerics = getattr(model, "numerics", "float32")
    if numerics == "float32":
        from .float_numerics import FloatModel
        return FloatModel(model)
    if numerics in ("exact1", "exact2"):
        from .exact_numerics import ExactModel
        return ExactModel(model)
    raise ValueError(f"unknown numerics {numerics!r}")
