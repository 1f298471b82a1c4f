"""Convolutional encoder E: q(z|x) = N(E(x), I). The mean E(x) is the datum's code."""

from __future__ import annotations

import torch
from torch import nn

from .pixelcnn import scale_pixels


def downsampled_size(size: int) -> int:
    return (size + 1) // 2


class Encoder(nn.Module):
    """Stride-2 convolutions until the feature map is at most 7 pixels on a side, then an MLP to the code."""

    def __init__(self, height: int, width: int, image_channels: int, levels: int, latent_dim: int,
                 channels: int = 64, hidden: int = 256):
        super().__init__()
        self.levels = levels
        layers: list[nn.Module] = [nn.Conv2d(image_channels, channels, 3, padding=1), nn.ReLU()]
        h, w = height, width
        while max(h, w) > 7:
            layers += [nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU()]
            h, w = downsampled_size(h), downsampled_size(w)
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Flatten(),
                   nn.Linear(channels * h * w, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Level indices (N, C, H, W) -> codes (N, latent_dim)."""
        return self.net(scale_pixels(x, self.levels))
