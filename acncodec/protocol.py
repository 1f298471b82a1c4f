"""The bits-back Alice/Bob protocol, one round at a time (DESIGN.md sections 3 and 4).

Bob, for the B data of a round (datum r of every active chain), with previous codes ĉ (None for chain heads):
  1. pop the latent buckets under the discretised p(z|ĉ) (the unconditional prior for heads)
  2. pop the pixels under r(x|z), pixel by pixel, channel by channel
  3. c = E(x); push the latent buckets under the discretised q(z|x) (the bits back)
Alice runs the exact inverse, rounds in reverse order. She replays Bob's incremental decoder with the true
pixels, with the same batch, so every probability she uses is bit for bit the one Bob will compute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .buckets import BucketTable, posterior_probabilities, prior_probabilities
from .entropy import (pop_bernoulli, pop_categorical, pop_mixture_latent, push_bernoulli, push_categorical,
                      push_mixture_latent)
from .incremental import IncrementalDecoder
from .prior import Mixture


@dataclass
class CodingModel:
    """Everything both sides share: the averaged network, the stored bucket table, p(z) over buckets."""

    net: torch.nn.Module
    table: BucketTable
    weights: np.ndarray            # (K,) unconditional mixture weights
    component_probs: np.ndarray    # (K, D, nbuckets) bucket masses under each unconditional component
    log_component_probs: np.ndarray

    @classmethod
    def from_model(cls, model) -> "CodingModel":
        prior = model.unconditional
        components = Mixture(log_weights=torch.zeros(prior.components, prior.means.shape[1], 1, dtype=torch.float64),
                             means=torch.from_numpy(prior.means)[..., None],
                             scales=torch.from_numpy(np.sqrt(prior.variances))[..., None])
        model.net.eval()
        probs = prior_probabilities(model.buckets, components)
        return cls(model.net, model.buckets, np.asarray(prior.weights, np.float64), probs, np.log(probs))

    def latent_values(self, buckets: np.ndarray) -> torch.Tensor:
        """The decoder sees each bucket's representative value."""
        centres = self.table.centres
        d = np.arange(buckets.shape[1])
        return torch.from_numpy(centres[d, buckets]).float()

    def prior_probs(self, previous_codes: torch.Tensor) -> np.ndarray:
        return prior_probabilities(self.table, self.net.prior(previous_codes))

    @property
    def binary(self) -> bool:
        return self.net.decoder.binary


def pixel_probabilities(logits: torch.Tensor, binary: bool) -> np.ndarray:
    """Float64 probabilities from float32 logits: P(1) for binary data, a categorical otherwise."""
    logits = logits.double()
    if binary:
        return torch.sigmoid(logits[:, 0]).numpy()
    return F.softmax(logits, dim=-1).numpy()


@torch.no_grad()
def replay_pixels(cm: CodingModel, z: torch.Tensor, x: torch.Tensor) -> list[np.ndarray]:
    """Alice: the probabilities Bob's decoder will use, in his order, computed on his code path."""
    _, channels, height, width = x.shape
    dec = IncrementalDecoder(cm.net.decoder, z, width)
    probs = []
    for i in range(height):
        for j in range(width):
            pixel = x[:, :, i, j]
            for c in range(channels):
                probs.append(pixel_probabilities(dec.logits(i, j, c, pixel), cm.binary))
            dec.set_pixel(i, j, pixel)
    return probs


@torch.no_grad()
def push_pixels(stack, cm: CodingModel, z: torch.Tensor, x: torch.Tensor) -> None:
    probs = np.stack(replay_pixels(cm, z, x))                  # (H*W*C, B[, L]) in Bob's order
    symbols = x.permute(2, 3, 1, 0).reshape(len(probs), -1)   # same order: (i, j, c) outer, batch inner
    if cm.binary:
        push_bernoulli(stack, symbols.numpy(), probs)
    else:
        push_categorical(stack, symbols.numpy(), probs)


@torch.no_grad()
def pop_pixels(stack, cm: CodingModel, z: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    channels, height, width = shape
    dec = IncrementalDecoder(cm.net.decoder, z, width)
    x = torch.zeros(len(z), channels, height, width, dtype=torch.long)
    for i in range(height):
        for j in range(width):
            pixel = torch.zeros(len(z), channels, dtype=torch.long)
            for c in range(channels):
                p = pixel_probabilities(dec.logits(i, j, c, pixel), cm.binary)
                pixel[:, c] = torch.from_numpy(pop_bernoulli(stack, p) if cm.binary else pop_categorical(stack, p))
            dec.set_pixel(i, j, pixel)
            x[:, :, i, j] = pixel
    return x


@torch.no_grad()
def encode_round(cm: CodingModel, x: torch.Tensor) -> torch.Tensor:
    """Codes of one round's data, computed with the round's batch on both sides."""
    return cm.net.encoder(x)


@torch.no_grad()
def alice_round(stack, cm: CodingModel, x: torch.Tensor, codes: torch.Tensor,
                previous_codes: torch.Tensor | None) -> None:
    """Inverse of `bob_round`: x (B, C, H, W) levels, codes = encode_round(x), previous codes or None."""
    buckets = pop_categorical(stack, posterior_probabilities(cm.table, codes))
    push_pixels(stack, cm, cm.latent_values(buckets), x)
    if previous_codes is None:
        push_mixture_latent(stack, buckets, cm.weights, cm.component_probs, cm.log_component_probs)
    else:
        push_categorical(stack, buckets, cm.prior_probs(previous_codes))


@torch.no_grad()
def bob_round(stack, cm: CodingModel, n: int, shape: tuple[int, int, int],
              previous_codes: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode n data; returns their pixels (n, C, H, W) and codes."""
    if previous_codes is None:
        buckets = pop_mixture_latent(stack, n, cm.weights, cm.component_probs, cm.log_component_probs)
    else:
        buckets = pop_categorical(stack, cm.prior_probs(previous_codes))
    x = pop_pixels(stack, cm, cm.latent_values(buckets), shape)
    codes = encode_round(cm, x)
    push_categorical(stack, buckets, posterior_probabilities(cm.table, codes))
    return x, codes
