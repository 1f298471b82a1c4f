"""The Associative Compression Network: encoder, conditional mixture prior and Gated PixelCNN decoder."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig  # noqa: F401  (re-exported: acncodec.acn.ModelConfig)
from .encoder import Encoder
from .pixelcnn import GatedPixelCNN
from .prior import LOG_SQRT_2PI, ConditionalPrior


class ACN(nn.Module):
    def __init__(self, height: int, width: int, channels: int, levels: int, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(height, width, channels, levels, config.latent_dim,
                               config.encoder_channels, config.encoder_hidden)
        self.prior = ConditionalPrior(config.latent_dim, config.prior_components, config.prior_hidden)
        self.decoder = GatedPixelCNN(channels, levels, config.latent_dim, config.decoder_channels,
                                     config.decoder_layers, config.decoder_kernel, height=height, width=width,
                                     cond_channels=config.decoder_cond_channels)

    def loss_terms(self, x: torch.Tensor, codes: torch.Tensor, neighbour_codes: torch.Tensor):
        """One-sample estimates of KL(q(z|x) || p(z|ĉ)) and -log r(x|z), in nats per image.

        `codes` are E(x) (with gradient); the caller encodes first because Algorithm 1 needs the codes to find
        the neighbours before the loss can be formed.
        """
        eps = torch.randn_like(codes)
        z = codes + eps
        log_q = (-0.5 * eps * eps - LOG_SQRT_2PI).sum(-1)
        log_p = self.prior(neighbour_codes).log_prob(z).sum(-1)
        reconstruction = -self.decoder.log_prob(x, z)
        return log_q - log_p, reconstruction
