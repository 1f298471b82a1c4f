"""The float implementation of the seam: the first release's torch networks and float64 tables.

Exact only on the kind of machine that wrote an archive (docs/DESIGN.md, "Determinism"): the sender
therefore replays the receiver's incremental decoder with the same batches, and never codes with the full
pass, which differs from the incremental path in the last bits.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..buckets import PROBABILITY_FLOOR, posterior_probabilities, prior_probabilities
from ..incremental import IncrementalDecoder
from .numerics import PixelStepper, ProbabilityModel


def pixel_probabilities(logits: torch.Tensor, binary: bool) -> np.ndarray:
    """Float64 probabilities from float32 logits: P(1) for binary data, a categorical otherwise."""
    logits = logits.double()
    if binary:
        return torch.sigmoid(logits[..., 0]).numpy()
    return F.softmax(logits, dim=-1).numpy()


def component_posterior(buckets: np.ndarray, log_weights: np.ndarray, log_component_probs: np.ndarray) -> np.ndarray:
    """q(k | z) for bucketed latents: buckets (B, D); log_component_probs (K, D, nbuckets) -> (B, K)."""
    d = np.arange(buckets.shape[1])
    joint = log_weights[None, :] + log_component_probs[:, d, buckets].sum(-1).T   # (B, K)
    joint -= joint.max(1, keepdims=True)
    post = np.exp(joint)
    return post / post.sum(1, keepdims=True)


class FloatStepper(PixelStepper):
    def __init__(self, decoder, z: torch.Tensor, width: int):
        self.dec = IncrementalDecoder(decoder, z, width)
        self.binary = decoder.binary

    def predict(self, i, j, c, pixel):
        return pixel_probabilities(self.dec.logits(i, j, c, torch.from_numpy(pixel)), self.binary)

    def set_pixel(self, i, j, pixel):
        self.dec.set_pixel(i, j, torch.from_numpy(pixel))


class FloatModel(ProbabilityModel):
    numerics = "float32"
    full_pass_exact = False
    has_pointer_weights = True

    def __init__(self, model):
        model.net.eval()
        self.net = model.net
        self.table = model.buckets
        spec = model.spec
        self.shape = (spec.channels, spec.height, spec.width)
        self.levels = spec.levels
        self.binary = self.net.decoder.binary
        self.latent_dim = model.config.latent_dim
        self.bucket_bits = self.table.bits
        self.head_weights = np.asarray(model.head.weights, np.float64)
        self.head_probs = np.asarray(model.head.probs, np.float64)
        self.unconditional = model.unconditional
        self._log_weights = np.log(self.head_weights)
        self._log_head_probs = np.log(self.head_probs)

    def latent_values(self, buckets: np.ndarray) -> torch.Tensor:
        """The decoder sees each bucket's representative value."""
        d = np.arange(buckets.shape[1])
        return torch.from_numpy(self.table.centres[d, buckets]).float()

    @torch.no_grad()
    def encode(self, x):
        return self.net.encoder(torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64))).numpy()

    def posterior_probs(self, codes):
        return posterior_probabilities(self.table, codes)

    @torch.no_grad()
    def prior_probs(self, previous_codes):
        return prior_probabilities(self.table, self.net.prior(torch.from_numpy(previous_codes)))

    def head_posterior(self, buckets):
        return component_posterior(buckets, self._log_weights, self._log_head_probs)

    @torch.no_grad()
    def pointer_weights(self, buckets, neighbour_codes):
        """Each component's density at the buckets' representative values, float64, normalised per row and
        floored like the bucket tables so that every component stays codable."""
        z = self.latent_values(buckets).double()                                   # (B, D)
        n, k, d = neighbour_codes.shape
        prior = self.net.prior(torch.from_numpy(np.ascontiguousarray(neighbour_codes.reshape(n * k, d))))
        log_w, means, scales = (t.double().reshape(n, k, d, -1) for t in
                                (prior.log_weights, prior.means, prior.scales))
        u = (z[:, None, :, None] - means) / scales
        comp = -0.5 * u * u - torch.log(scales) - 0.5 * np.log(2 * np.pi)
        conditional = torch.logsumexp(log_w + comp, dim=-1).sum(-1)               # (B, K)
        logp = torch.cat([self.unconditional.log_prob(z)[:, None], conditional], dim=1)
        probs = np.maximum(torch.softmax(logp, dim=1).numpy(), PROBABILITY_FLOOR)
        return probs / probs.sum(axis=1, keepdims=True)

    def stepper(self, buckets):
        return FloatStepper(self.net.decoder, self.latent_values(buckets), self.shape[2])

    @torch.no_grad()
    def score(self, x, buckets):
        logits = self.net.decoder.logits(torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)),
                                         self.latent_values(buckets))          # (B, C, outputs, H, W)
        return pixel_probabilities(logits.permute(0, 1, 3, 4, 2), self.binary)
