"""The settings of a model and of a training run: plain data, importable without torch (the command line
reads their defaults for its help text before it knows which command runs)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import AcnError


# Upper bounds on each network size: a model file is read from elsewhere, and a setting far past any useful
# network (a 40,000-unit layer) must fail as an error, not exhaust memory while the network is built.
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


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    batch_size: int = 64
    learning_rate: float = 1e-3
    neighbours: int = 5
    unique_neighbours: bool = False
    ema_decay: float = 0.999
    kl_warmup: int = 2000
    bucket_bits: int = 8
    seed: int = 0
    threads: int = 2
    checkpoint_every: int = 500
    log_every: int = 50

    def __post_init__(self):
        positive = {"batch size": self.batch_size, "neighbours": self.neighbours, "threads": self.threads,
                    "checkpoint interval": self.checkpoint_every, "log interval": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise AcnError(f"{name} must be at least 1, got {value}")
        if self.steps < 0 or self.kl_warmup < 0:
            raise AcnError(f"steps and KL warm-up must not be negative, got {self.steps} and {self.kl_warmup}")
        if not self.learning_rate > 0 or not 0 <= self.ema_decay < 1:
            raise AcnError(f"need learning rate > 0 and 0 <= EMA decay < 1, got {self.learning_rate} and "
                           f"{self.ema_decay}")
        if not 1 <= self.bucket_bits <= 16:
            raise AcnError(f"bucket bits must be in 1..16, got {self.bucket_bits}")
