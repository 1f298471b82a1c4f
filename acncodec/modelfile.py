"""The model file: weights (the averaged ones), config, data spec, unconditional prior and a content hash.

Stored with `torch.save` and read back with `weights_only=True`, so loading never runs pickled code. The hash
covers everything that changes a probability, so an archive can name exactly the model it needs.

Version 3 adds the unconditional head tables (the bucket masses that code chain heads, computed once when the
model is made) and the name of the numerics that the coding path uses (`coding/numerics.py`); both are
covered by the content hash. Versions 1 and 2 still load: their head tables are computed at load time.
A model with numerics "exact1" also stores `exact`, the integer networks and tables (`quantize.py`), hashed
with the rest.

Version 2 stores the weights losslessly compressed: each tensor's bytes are split into byte planes (all first
bytes of every float, then all second bytes, ...) and the whole is xz-compressed. The sign-and-exponent
planes of trained float32 weights are highly redundant, so this saves about 16 % with every bit kept; the
content hash is computed on the restored tensors and is the same as for version 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .acn import ACN, ModelConfig
from .buckets import BucketTable, HeadTables
from .data import DataSpec
from .errors import AcnError
from .fileio import atomic_write_bytes
from .prior import UnconditionalPrior

FORMAT = "acncodec-model"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
NUMERICS = ("float32", "exact1")
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "int64": torch.int64, "int32": torch.int32,
           "uint8": torch.uint8, "bool": torch.bool}


@dataclass
class Model:
    """A trained ACN ready for evaluation and coding."""

    net: ACN
    spec: DataSpec
    unconditional: UnconditionalPrior
    buckets: BucketTable
    meta: dict = field(default_factory=dict)
    head: HeadTables | None = None
    numerics: str = "float32"
    exact: dict | None = None     # numerics "exact1": the integer networks and tables (tensors, `quantize.py`)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def hash(self) -> str:
        head = self.head or HeadTables.from_prior(self.unconditional, self.buckets)
        return content_hash(self.net.state_dict(), self.spec, self.config, self.unconditional, self.buckets,
                            head, self.numerics, self.exact)

    def __repr__(self) -> str:
        c = self.config
        source = self.meta.get("train_source")
        trained = f", trained on {source!r}" if source else ""
        return (f"Model({self.hash[:12]}, for {self.spec}; latent {c.latent_dim}, decoder {c.decoder_layers} "
                f"layers of {c.decoder_channels} channels{trained})")


def with_buckets(model: Model, bits: int) -> Model:
    """The latent discretisation: 2^bits equal-mass buckets per dimension under p(z)'s marginals.

    Computed once, when the model is made, and stored in the model file: both sides of the codec read the
    same table and never re-derive it.
    """
    table = BucketTable.from_reference(model.unconditional.marginal(), bits)
    # Integer tables are derived from the bucket table: an exact model must be quantised again after this.
    return Model(model.net, model.spec, model.unconditional, table, dict(model.meta),
                 HeadTables.from_prior(model.unconditional, table))


MAX_PARAMETERS = 64_000_000   # 256 MB of float32 weights, many times the shipped models


def build(spec: DataSpec, config: ModelConfig) -> ACN:
    return ACN(spec.height, spec.width, spec.channels, spec.levels, config)


def network_layout(spec: DataSpec, config: ModelConfig) -> tuple[int, dict]:
    """Parameter count and {name: [dtype, shape]} of the network, found without allocating it."""
    with torch.device("meta"):
        state = build(spec, config).state_dict()
    layout = {name: [str(t.dtype).removeprefix("torch."), list(t.shape)] for name, t in state.items()}
    return sum(t.numel() for t in state.values()), layout


def content_hash(state: dict, spec: DataSpec, config: ModelConfig, prior: UnconditionalPrior,
                 buckets: BucketTable, head: HeadTables | None = None, numerics: str | None = None,
                 exact: dict | None = None) -> str:
    """SHA-256 over everything that changes a probability. `head` and `numerics` are None only when checking
    a version 1 or 2 file, whose hash did not cover them."""
    h = hashlib.sha256()
    described = {"spec": spec.to_dict(), "config": config.to_dict()}
    if numerics is not None:
        described["numerics"] = numerics
    h.update(json.dumps(described, sort_keys=True).encode())
    tensors = dict(state)
    if head is not None:
        tensors.update({f"head.{k}": v for k, v in head.to_dict().items()})
    tensors.update({f"unconditional.{k}": v for k, v in prior.to_dict().items()})
    tensors.update({f"buckets.{k}": v for k, v in buckets.to_dict().items() if k != "bits"})
    if exact is not None:
        tensors.update({f"exact.{k}": v for k, v in exact.items()})
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def pack_state(state: dict) -> dict:
    """Tensors -> {"manifest": JSON [[name, dtype, shape], ...], "blob": xz of byte-plane-shuffled bytes}."""
    manifest, parts = [], []
    for name, t in state.items():
        t = t.detach().contiguous().cpu()
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _DTYPES:
            raise AcnError(f"cannot store a {dtype} tensor ({name}) in a model file")
        raw = t.reshape(-1).numpy().view(np.uint8).reshape(t.numel(), t.element_size())
        parts.append(raw.T.tobytes())
        manifest.append([name, dtype, list(t.shape)])
    blob = lzma.compress(b"".join(parts), preset=9 | lzma.PRESET_EXTREME)
    return {"manifest": json.dumps(manifest), "blob": torch.frombuffer(bytearray(blob), dtype=torch.uint8)}


def unpack_state(packed: dict, layout: dict | None = None) -> dict:
    """The exact inverse of pack_state. Damage raises (the caller turns that into a one-line error).

    `layout` ({name: [dtype, shape]} of the network the weights are for) is checked before anything is
    inflated, so the blob can never inflate past the size of the network its configuration describes."""
    manifest = json.loads(packed["manifest"])
    if layout is not None and {name: [dtype, list(shape)] for name, dtype, shape in manifest} != layout:
        raise ValueError("weights manifest does not match the model configuration")
    items = [torch.empty((), dtype=_DTYPES[dtype]).element_size() for _, dtype, _ in manifest]
    sizes = [int(np.prod(shape, dtype=np.int64)) * item for (_, _, shape), item in zip(manifest, items)]
    total = sum(sizes)
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    raw = dec.decompress(packed["blob"].numpy().tobytes(), max_length=total + 1)
    if len(raw) != total or not dec.eof:
        raise ValueError("weights blob has the wrong length")
    state, offset = {}, 0
    for (name, dtype, shape), item, size in zip(manifest, items, sizes):
        planes = np.frombuffer(raw, np.uint8, size, offset).reshape(item, size // item)
        flat = torch.from_numpy(planes.T.copy().reshape(-1)).view(_DTYPES[dtype])
        state[name] = flat.reshape(shape)
        offset += size
    return state


def save(model: Model, path: str | Path) -> str:
    """Write the model file atomically; returns its content hash."""
    model.net.eval()
    state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
    head = model.head or HeadTables.from_prior(model.unconditional, model.buckets)
    digest = content_hash(state, model.spec, model.config, model.unconditional, model.buckets, head,
                          model.numerics, model.exact)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "hash": digest, "spec": model.spec.to_dict(),
               "numerics": model.numerics, "head": pack_state(head.to_dict()),
               "config": model.config.to_dict(), "weights": pack_state(state),
               "unconditional": model.unconditional.to_dict(),
               "buckets": model.buckets.to_dict(), "meta": json.dumps(model.meta)}
    if model.exact is not None:
        payload["exact"] = pack_state(model.exact)
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
    if payload.get("version") not in READABLE_VERSIONS:
        raise AcnError(f"{path}: model format version {payload.get('version')} is not supported "
                       f"(this acncodec reads version {FORMAT_VERSION})")
    try:
        spec = DataSpec.from_dict(payload["spec"], where=str(path))
        config = ModelConfig.from_dict(payload["config"])
        prior = UnconditionalPrior.from_dict(payload["unconditional"])
        buckets = BucketTable.from_dict(payload["buckets"])
        count, layout = network_layout(spec, config)
        if count > MAX_PARAMETERS:
            raise AcnError(f"{path}: model has {count:,} parameters, more than the {MAX_PARAMETERS:,} acncodec "
                           f"loads")
        net = build(spec, config)
        state = payload["state"] if payload["version"] == 1 else unpack_state(payload["weights"], layout)
        net.load_state_dict(state)
        stored_hash = str(payload["hash"])
        if payload["version"] >= 3:
            numerics = str(payload["numerics"])
            if numerics not in NUMERICS:
                raise AcnError(f"{path}: model uses numerics {numerics!r}, which this acncodec does not know")
            head = HeadTables.from_dict(unpack_state(payload["head"]))
            exact = unpack_state(payload["exact"]) if numerics == "exact1" else None
        else:
            numerics, head, exact = "float32", None, None
        meta = json.loads(payload.get("meta", "{}"))
        if not isinstance(meta, dict):
            raise TypeError("meta")
    except AcnError:
        raise
    except Exception as e:  # any damage to the structure: keys, types, shapes, JSON
        raise AcnError(f"{path}: damaged model file ({e.__class__.__name__})") from None
    net.eval()
    digest = content_hash(net.state_dict(), spec, config, prior, buckets, head, None if head is None else numerics,
                          exact)
    if digest != stored_hash:
        raise AcnError(f"{path}: model file is damaged (content hash {digest[:12]} does not match the "
                       f"stored {stored_hash[:12]})")
    if head is None:   # versions 1 and 2: computed here, once, as `with_buckets` does for a new model
        head = HeadTables.from_prior(prior, buckets)
    return Model(net, spec, prior, buckets, meta, head, numerics, exact)
