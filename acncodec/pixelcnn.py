"""Gated PixelCNN decoder r(x|z) (van den Oord et al. 2016), conditioned on the latent z in every layer.

Layout chosen so that fast incremental decoding is straightforward:

* the vertical stack at row i sees only image rows < i (its first layer reads the image shifted down by one
  row), so it can be computed once per row;
* the horizontal stack at (i, j) sees image row i at columns < j (its first layer reads the row shifted right
  by one column) plus the vertical stack at row i, so there is no blind spot;
* colour channels are autoregressive inside a pixel (R, G|R, B|R,G): the output head for channel c also reads
  the values of channels < c at the same pixel through a masked 1x1 map;
* z enters every layer through a spatial map computed from z alone (a small transposed-convolution net), so
  the latent can say *where* strokes are: a per-image bias cannot, and with one the decoder learns to ignore z.

Pixels enter the network as level indices scaled to [-1, 1]; the output is one Bernoulli logit per channel for
binary data and a categorical over the levels otherwise.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scale_pixels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Level indices (N, C, H, W) -> floats in [-1, 1], always in the standard contiguous layout.

    The layout is part of the code path: a single-channel batch whose channel stride is 1 also looks
    channels-last to PyTorch, which then runs a different convolution kernel with different rounding
    (measured: codes differing in the last bit between the two sides of the codec).
    """
    return x.to(torch.float32, memory_format=torch.contiguous_format) * (2.0 / (levels - 1)) - 1.0


def gate(pre: torch.Tensor) -> torch.Tensor:
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class ConditionMap(nn.Module):
    """z (B, D) -> (B, channels, H, W): a linear map to a quarter-resolution grid, then two x2 upsamplings."""

    def __init__(self, latent_dim: int, height: int, width: int, channels: int):
        super().__init__()
        self.height, self.width = height, width
        self.h0, self.w0 = math.ceil(height / 4), math.ceil(width / 4)
        self.hidden = 2 * channels
        self.fc = nn.Linear(latent_dim, self.hidden * self.h0 * self.w0)
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(self.hidden, self.hidden, 4, 2, 1), nn.ReLU(),
                                nn.ConvTranspose2d(self.hidden, channels, 4, 2, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        grid = self.fc(z).view(len(z), self.hidden, self.h0, self.w0)
        return self.up(grid)[:, :, :self.height, :self.width]


class GatedLayer(nn.Module):
    """One gated layer with a vertical and a horizontal stack; `first` layers read the (shifted) image."""

    def __init__(self, in_channels: int, channels: int, kernel: int, cond_channels: int, first: bool):
        super().__init__()
        self.first = first
        self.kh = kernel // 2 + 1  # vertical kernel height (rows above, including the one it sits on)
        self.kw = kernel // 2 + 1  # horizontal kernel width (columns to the left, including its own)
        self.half = kernel // 2
        self.vconv = nn.Conv2d(in_channels, 2 * channels, (self.kh, kernel))
        self.hconv = nn.Conv2d(in_channels, 2 * channels, (1, self.kw))
        self.v2h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.hout = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Conv2d(cond_channels, 4 * channels, 1)

    def vertical_pre(self, v_in: torch.Tensor, cond_v: torch.Tensor) -> torch.Tensor:
        """Pre-activation of the vertical stack: output row i reads input rows i-kh+1 .. i."""
        padded = F.pad(v_in, (self.half, self.half, self.kh - 1, 0))
        return self.vconv(padded) + cond_v

    def horizontal_pre(self, h_in: torch.Tensor) -> torch.Tensor:
        """Horizontal convolution: output column j reads input columns j-kw+1 .. j."""
        return self.hconv(F.pad(h_in, (self.kw - 1, 0, 0, 0)))

    def combine(self, h_in, h_conv, v_pre, cond_h):
        h_pre = h_conv + self.v2h(v_pre) + cond_h
        h_out = self.hout(gate(h_pre))
        return h_out if self.first else h_out + h_in

    def conditioning(self, cond_map: torch.Tensor):
        """Per-position conditioning terms (B, 2C, H, W) for the vertical and horizontal stacks."""
        return self.cond(cond_map).chunk(2, dim=1)

    def forward(self, v_in, h_in, cond_map):
        cond_v, cond_h = self.conditioning(cond_map)
        v_pre = self.vertical_pre(v_in, cond_v)
        h = self.combine(h_in, self.horizontal_pre(h_in), v_pre, cond_h)
        return gate(v_pre), h


class OutputHead(nn.Module):
    """Per-pixel distribution parameters from the top horizontal features.

    Channel c's hidden units add a masked linear map of the scaled values of channels < c at the same pixel,
    which makes colour autoregressive inside a pixel without touching the stacks.
    """

    def __init__(self, channels: int, image_channels: int, outputs_per_channel: int):
        super().__init__()
        self.image_channels = image_channels
        self.outputs = outputs_per_channel
        hidden = channels
        self.features = nn.Conv2d(channels, image_channels * hidden, 1)
        self.previous = nn.Conv2d(image_channels, image_channels * hidden, 1, bias=False)
        mask = torch.zeros(image_channels * hidden, image_channels, 1, 1)
        for c in range(image_channels):
            mask[c * hidden:(c + 1) * hidden, :c] = 1.0
        self.register_buffer("mask", mask, persistent=False)
        self.logits = nn.Conv2d(image_channels * hidden, image_channels * outputs_per_channel, 1,
                                groups=image_channels)

    def forward(self, h: torch.Tensor, x_scaled: torch.Tensor) -> torch.Tensor:
        """(N, channels, H, W), (N, C, H, W) -> logits (N, C, outputs, H, W)."""
        hidden = self.features(F.relu(h))
        if self.image_channels > 1:
            hidden = hidden + F.conv2d(x_scaled, self.previous.weight * self.mask)
        out = self.logits(F.relu(hidden))
        n, _, hh, ww = out.shape
        return out.view(n, self.image_channels, self.outputs, hh, ww)


class GatedPixelCNN(nn.Module):
    def __init__(self, image_channels: int, levels: int, latent_dim: int, channels: int = 32,
                 layers: int = 5, kernel: int = 5, *, height: int, width: int, cond_channels: int = 16):
        super().__init__()
        self.condition_map = ConditionMap(latent_dim, height, width, cond_channels)
        self.image_channels = image_channels
        self.levels = levels
        self.binary = levels == 2
        self.layers = nn.ModuleList(
            GatedLayer(image_channels if i == 0 else channels, channels, kernel, cond_channels, first=i == 0)
            for i in range(layers))
        self.head = OutputHead(channels, image_channels, 1 if self.binary else levels)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Full parallel pass (training): x level indices (N, C, H, W) -> logits (N, C, outputs, H, W)."""
        xs = scale_pixels(x, self.levels)
        v = F.pad(xs, (0, 0, 1, 0))[:, :, :-1, :]   # rows shifted down: row i sees rows < i
        h = F.pad(xs, (1, 0, 0, 0))[:, :, :, :-1]   # columns shifted right: (i, j) sees columns < j
        cond_map = self.condition_map(z)
        for layer in self.layers:
            v, h = layer(v, h, cond_map)
        return self.head(h, xs)

    def log_prob(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log r(x|z) in nats, one value per image."""
        return pixel_log_prob(self.logits(x, z), x, self.binary).flatten(1).sum(1)


def pixel_log_prob(logits: torch.Tensor, x: torch.Tensor, binary: bool) -> torch.Tensor:
    """Per-pixel-channel log-probabilities; logits (N, C, outputs, ...), x (N, C, ...)."""
    if binary:
        return -F.binary_cross_entropy_with_logits(logits[:, :, 0], x.float(), reduction="none")
    return -F.cross_entropy(logits.transpose(1, 2), x.long(), reduction="none")
