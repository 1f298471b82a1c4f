"""The model file: weights (the averaged ones), config, data spec, unconditional prior and a content hash.

Stored with `torch.save` and read back with `weights_only=True`, so loading never runs pickled code. The hash
covers everything that changes a probability, so an archive can name exactly the model it needs.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .acn import ACN, ModelConfig
from .buckets import BucketTable
from .data import DataSpec
from .errors import AcnError
from .fileio import atomic_write_bytes
from .prior import UnconditionalPrior

FORMAT = "acncodec-model"
FORMAT_VERSION = 1


@dataclass
class Model:
    """A trained ACN ready for evaluation and coding."""

    net: ACN
    spec: DataSpec
    unconditional: UnconditionalPrior
    buckets: BucketTable
    meta: dict = field(default_factory=dict)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def hash(self) -> str:
        return content_hash(self.net.state_dict(), self.spec, self.config, self.unconditional, self.buckets)


def with_buckets(model: Model, bits: int) -> Model:
    """The latent discretisation: 2^bits equal-mass buckets per dimension under p(z)'s marginals.

    Computed once, when the model is made, and stored in the model file: both sides of the codec read the
    same table and never re-derive it.
    """
    table = BucketTable.from_reference(model.unconditional.marginal(), bits)
    return Model(model.net, model.spec, model.unconditional, table, dict(model.meta))


def build(spec: DataSpec, config: ModelConfig) -> ACN:
    return ACN(spec.height, spec.width, spec.channels, spec.levels, config)


def content_hash(state: dict, spec: DataSpec, config: ModelConfig, prior: UnconditionalPrior,
                 buckets: BucketTable) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"spec": spec.to_dict(), "config": config.to_dict()}, sort_keys=True).encode())
    tensors = dict(state)
    tensors.update({f"unconditional.{k}": v for k, v in prior.to_dict().items()})
    tensors.update({f"buckets.{k}": v for k, v in buckets.to_dict().items() if k != "bits"})
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save(model: Model, path: str | Path) -> str:
    """Write the model file atomically; returns its content hash."""
    model.net.eval()
    state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    digest = content_hash(state, model.spec, model.config, model.unconditional, model.buckets)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "hash": digest, "spec": model.spec.to_dict(),
               "config": model.config.to_dict(), "state": state, "unconditional": model.unconditional.to_dict(),
               "buckets": model.buckets.to_dict(), "meta": json.dumps(model.meta)}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return digest


def load(path: str | Path) -> Model:
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise AcnError(f"{path}: not an acncodec model file ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AcnError(f"{path}: not an acncodec model file")
    if payload.get("version") != FORMAT_VERSION:
        raise AcnError(f"{path}: model format version {payload.get('version')} is not supported "
                       f"(this acncodec reads version {FORMAT_VERSION})")
    try:
        spec = DataSpec.from_dict(payload["spec"], where=str(path))
        config = ModelConfig.from_dict(payload["config"])
        prior = UnconditionalPrior.from_dict(payload["unconditional"])
        buckets = BucketTable.from_dict(payload["buckets"])
        net = build(spec, config)
        net.load_state_dict(payload["state"])
        stored_hash = str(payload["hash"])
        meta = json.loads(payload.get("meta", "{}"))
        if not isinstance(meta, dict):
            raise TypeError("meta")
    except AcnError:
        raise
    except Exception as e:  # any damage to the structure: keys, types, shapes, JSON
        raise AcnError(f"{path}: damaged model file ({e.__class__.__name__})") from None
    net.eval()
    digest = content_hash(net.state_dict(), spec, config, prior, buckets)
    if digest != stored_hash:
        raise AcnError(f"{path}: model file is damaged (content hash {digest[:12]} does not match the "
                       f"stored {stored_hash[:12]})")
    return Model(net, spec, prior, buckets, meta)
