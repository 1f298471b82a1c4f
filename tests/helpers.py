"""Tiny untrained models and random images for codec tests.

Exactness does not need a trained model: an untrained network's probabilities are as arbitrary as a real
model's, and far faster to compute.
"""

import functools

import numpy as np
import torch

from acncodec import modelfile
from acncodec.acn import ModelConfig
from acncodec.data import DataSpec, ImageSet
from acncodec.evaluate import encode_all
from acncodec.train import to_tensor
from acncodec.unconditional import fit_unconditional

TINY = ModelConfig(latent_dim=3, prior_components=3, prior_hidden=16, encoder_channels=4, encoder_hidden=16,
                   decoder_channels=6, decoder_layers=2, decoder_kernel=3, decoder_cond_channels=3)


def tiny_model(spec: DataSpec, seed: int = 0, bits: int = 6, components=(1, 2)) -> modelfile.Model:
    torch.manual_seed(seed)
    net = modelfile.build(spec, TINY).eval()
    rng = np.random.default_rng(seed)
    images = rng.integers(0, spec.levels, (64, spec.height, spec.width, spec.channels), dtype=np.uint8)
    codes = encode_all(net, to_tensor(images)).numpy()
    prior, _ = fit_unconditional(codes, seed=seed, candidates=components)
    return modelfile.with_buckets(modelfile.Model(net, spec, prior, None, {}), bits)


def random_images(spec: DataSpec, n: int, seed: int = 1, names: bool = False) -> ImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, spec.levels, (n, spec.height, spec.width, spec.channels), dtype=np.uint8)
    # Some structure, so the tour and the priors have something to work with.
    images[: n // 2] = images[: n // 2] // 2 * 2
    return ImageSet(images, spec.levels, [f"img {i:03d}.png" for i in range(n)] if names else None, "test")


SPECS = {"binary": DataSpec(5, 6, 1, 2), "digits-like": DataSpec(4, 4, 1, 17), "grey": DataSpec(4, 5, 1, 256),
         "rgb": DataSpec(3, 4, 3, 256)}


def step_through(stepper, x: np.ndarray, outputs: int) -> np.ndarray:
    """A decoder stepper's logits (N, C, H, W, outputs) for images x (N, C, H, W) level indices, pixel by pixel."""
    n, channels, height, width = x.shape
    out = np.zeros((n, channels, height, width, outputs))
    for i in range(height):
        for j in range(width):
            for c in range(channels):
                out[:, c, i, j] = stepper.logits(i, j, c, x[:, :, i, j])
            stepper.set_pixel(i, j, x[:, :, i, j])
    return out


@functools.lru_cache(maxsize=None)
def tiny_exact_model(spec: DataSpec, seed: int = 0) -> modelfile.Model:
    """`tiny_model` quantised to numerics "exact1" (calibrated on random images of the spec)."""
    from acncodec.quantize import calibration_set, quantise_model
    return quantise_model(tiny_model(spec, seed), calibration_set(random_images(spec, 32, seed=9)))