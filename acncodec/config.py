"""The settings of a model (network sizes) and of a training run, with their defaults.

Kept apart from the networks and the training loop so that the command line can show every default without
importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import AcnError


#: Largest network acncodec builds: a model file asking for more is refused before anything is allocated.
MODEL_LIMITS = {"latent_dim": 1024, "prior_components": 256, "prior_hidden": 8192, "encoder_channels": 1024,
                "encoder_hidden": 8192, "decoder_channels": 1024, "decoder_layers": 64, "decoder_kernel": 31,
                "decoder_cond_channels": 1024}


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes. Defaults train in reasonable time on two CPU cores; the paper's are larger."""

    latent_dim: int = 16
    prior_components: int = 8
    prior_hidden: int = 512
    encoder_channels: int = 64
    encoder_hidden: int = 256
    decoder_channels: int = 32
    decoder_layers: int = 5
    decoder_kernel: int = 5
    decoder_cond_channels: int = 16

    def __post_init__(self):
        for name, value in self.to_dict().items():
            if not isinstance(value, int) or value < 1:
                raise AcnError(f"model setting {name} must be a positive integer, got {value!r}")
            if value > MODEL_LIMITS[name]:
                raise AcnError(f"model setting {name} is {value}, more than the {MODEL_LIMITS[name]} acncodec "
                               f"builds")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**d)


#: What `acncodec train` trains: the ACN; a Gated PixelVAE (the same networks, the prior network's input cut, so
#: it learns one mixture prior for all data); a Gated PixelCNN alone (the decoder's input from z cut).
VARIANTS = ("acn", "pixelvae", "pixelcnn")

#: Covariance shapes of p(z), the unconditional prior: diagonal, or full (coded by the exact numerics only).
COVARIANCES = ("diag", "full")

#: How the learning rate moves over a run (train.learning_rate_at).
LR_SCHEDULES = ("constant", "cosine")

#: Where `acncodec train` can run; auto picks CUDA, then Apple's MPS, then the CPU.
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Its length is `steps` when given; otherwise as many steps as fit in `minutes` at the
    speed measured on the first steps, and no more than `max_epochs` passes over the data (so a run's length
    suits both 500 images and 60,000). The KL warm-up is `kl_warmup` steps when given, else a fraction of
    the run, so the full loss is reached at any length."""

    steps: int | None = None
    minutes: float = 15.0
    max_epochs: float = 200.0
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"   # constant, or cosine: from learning_rate down to 0 at the last step
    neighbours: int = 5
    unique_neighbours: bool = False
    neighbour_pool: int | None = None   # search the K nearest among this many codes drawn afresh each step
    ema_decay: float = 0.999
    kl_warmup: int | None = None
    kl_warmup_fraction: float = 0.25
    bucket_bits: int = 8
    seed: int = 0
    threads: int = 2
    device: str = "auto"        # cpu, cuda, mps, or auto: the best available (train.resolve_device)
    variant: str = "acn"        # acn, pixelvae or pixelcnn: which inputs the networks may read (train.cut_inputs)
    checkpoint_every: int = 500
    checkpoint_minutes: float = 2.0
    log_every: int = 50

    def __post_init__(self):
        positive = {"batch size": self.batch_size, "neighbours": self.neighbours, "threads": self.threads,
                    "checkpoint interval": self.checkpoint_every, "log interval": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise AcnError(f"{name} must be at least 1, got {value}")
        if self.neighbour_pool is not None and self.neighbour_pool <= self.neighbours:
            raise AcnError(f"the neighbour pool must hold more than the {self.neighbours} neighbours, got "
                           f"{self.neighbour_pool}")
        if (self.steps is not None and self.steps < 0) or (self.kl_warmup is not None and self.kl_warmup < 0):
            raise AcnError(f"steps and KL warm-up must not be negative, got {self.steps} and {self.kl_warmup}")
        if not self.minutes > 0 or not self.max_epochs > 0 or not self.checkpoint_minutes > 0:
            raise AcnError(f"the time budget, the epoch limit and the checkpoint interval must be positive, got "
                           f"{self.minutes} min, {self.max_epochs} epochs and {self.checkpoint_minutes} min")
        if not 0 <= self.kl_warmup_fraction <= 1:
            raise AcnError(f"the KL warm-up fraction must be in 0..1, got {self.kl_warmup_fraction}")
        if not self.learning_rate > 0 or not 0 <= self.ema_decay < 1:
            raise AcnError(f"need learning rate > 0 and 0 <= EMA decay < 1, got {self.learning_rate} and "
                           f"{self.ema_decay}")
        if self.variant not in VARIANTS:
            raise AcnError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise AcnError(f"learning-rate schedule must be one of {', '.join(LR_SCHEDULES)}, got "
                           f"{self.lr_schedule!r}")
        if self.device not in DEVICES:
            raise AcnError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if not 1 <= self.bucket_bits <= 16:
            raise AcnError(f"bucket bits must be in 1..16, got {self.bucket_bits}")

    def warmup_steps(self, total_steps: int) -> int:
        """The KL warm-up of a run of `total_steps` steps."""
        if self.kl_warmup is not None:
            return self.kl_warmup
        return round(self.kl_warmup_fraction * total_steps)

    def budget_steps(self, n: int, seconds_per_step: float) -> int:
        """The default length: what fits in the time budget, at most `max_epochs` passes over n images."""
        by_time = int(self.minutes * 60 / max(seconds_per_step, 1e-9))
        by_epochs = epochs_to_steps(self.max_epochs, n, self.batch_size)
        return max(1, min(by_time, by_epochs))


def epochs_to_steps(epochs: float, n: int, batch_size: int) -> int:
    return max(1, math.ceil(epochs * n / batch_size))
