"""The model file: config, data spec, unconditional prior, bucket tables, the networks and a content hash.

Two containers, both read without running any stored code:

* Version 4 (exact models, numerics "exact1"): read with numpy alone, so that decoding an archive needs no
  torch. Layout: the 8 bytes `MAGIC`, a little-endian u32 length, a JSON header (format, version, hash, spec,
  config, numerics, meta, and a manifest per section), then each section's blob. A section is a set of arrays
  stored as xz-compressed byte planes (see below); integer-valued arrays are stored in the narrowest integer
  type that holds them and restored to their own dtype, every bit kept. Sections: "exact" (the integer
  networks and tables, `quantize.py` and `coding/exact_tables.py`), "unconditional", "buckets", and
  optionally "weights" (the float network, which training, evaluation and the estimates read; coding does not).
  The parts that need torch (the float network, the prior, the tables) are built the first time they are read.
* Versions 1 to 3 (float models): `torch.save`, read back with `weights_only=True`. Version 3 stores the
  unconditional head tables (computed once, in `with_buckets`) and the numerics name, both hashed; versions 1
  and 2 still load, checked against their old hash, their head tables computed at load time.

The hash covers everything that changes a probability, so an archive names exactly the model it needs. For an
exact model that is the integer parts, the unconditional prior, the buckets, spec, config and numerics; not
the float weights, which no coded probability comes from (version 3 exact files hashed them too: they are
checked that way and keep the hash they were written with).

Weights are stored losslessly compressed (since version 2): each array's bytes are split into byte planes (all
first bytes of every value, then all second bytes, ...) and the whole is xz-compressed. The sign-and-exponent
planes of trained float32 weights are highly redundant, so this saves about 16 % with every bit kept; the
content hash is computed on the restored arrays.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .data import DataSpec
from .errors import AcnError
from .fileio import atomic_write_bytes

FORMAT = "acncodec-model"
FORMAT_VERSION = 3          # float models (torch.save)
EXACT_FORMAT_VERSION = 4    # exact models (numpy container)
READABLE_VERSIONS = (1, 2, 3, 4)
NUMERICS = ("float32", "exact1", "exact2")
#: The exact numerics: "exact2" is "exact1" with narrow decoder maps (inputs rounded to
#: their own formats first, `quantize.IntAffine.quantise_narrow`), which an exact1 reader would misread.
EXACT_NUMERICS = ("exact1", "exact2")
MAGIC = b"ACNMODEL"
MAX_HEADER = 1 << 22        # a JSON header is a few kB
#: Array dtypes a model file may hold, with the names the content hash uses for them (torch's, as written
#: since version 1).
_DTYPES = ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool")
_HASH_NAMES = {name: f"torch.{name}" for name in _DTYPES}


@dataclass
class Model:
    """A trained ACN ready for evaluation and coding."""

    net: "ACN"
    spec: DataSpec
    unconditional: "UnconditionalPrior"
    buckets: "BucketTable"
    meta: dict = field(default_factory=dict)
    head: "HeadTables | None" = None
    numerics: str = "float32"
    exact: dict | None = None     # numerics "exact1": the integer networks and tables (arrays, `quantize.py`)
    digest: str | None = None     # the content hash, when read from a file (checked there)

    @property
    def config(self) -> ModelConfig:
        return self.net.config

    @property
    def bucket_bits(self) -> int:
        return self.buckets.bits

    @property
    def has_weights(self) -> bool:
        """Whether the file holds float weights (an exact model file may leave them out)."""
        return self.net is not None

    @property
    def hash(self) -> str:
        if self.digest is not None:
            return self.digest
        head = None if self.numerics in EXACT_NUMERICS else (self.head or _head_tables(self))
        state = None if self.numerics in EXACT_NUMERICS else self.net.state_dict()
        return content_hash(state, self.spec, self.config, self.unconditional, self.buckets, head,
                            self.numerics, self.exact)

    def __repr__(self) -> str:
        c = self.config
        source = self.meta.get("train_source")
        trained = f", trained on {source!r}" if source else ""
        return (f"Model({self.hash[:12]}, for {self.spec}; latent {c.latent_dim}, decoder {c.decoder_layers} "
                f"layers of {c.decoder_channels} channels{trained})")


class StoredModel(Model):
    """A model read from a version 4 file. The parts that need torch (the float network, the unconditional
    prior, the bucket and head tables) are built from the file's arrays the first time they are read: coding
    with the integer parts alone never imports torch."""

    def __init__(self, spec: DataSpec, config: ModelConfig, numerics: str, meta: dict, exact: dict,
                 arrays: dict, digest: str, where: str):
        self.spec, self._config, self.numerics, self.meta, self.exact = spec, config, numerics, meta, exact
        self.digest, self._arrays, self._where, self._built = digest, arrays, where, {}

    def _part(self, name: str, build):
        if name not in self._built:
            self._built[name] = build()
        return self._built[name]

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def bucket_bits(self) -> int:
        return int(np.asarray(self._arrays["buckets"]["centres"]).shape[1]).bit_length() - 1

    @property
    def has_weights(self) -> bool:
        return "weights" in self._arrays

    @property
    def net(self):
        """The float network: the stored float weights, or, in a file without them, the float network that
        the integer maps stand for (`quantize.dequantised_state`)."""
        def build():
            state = self._arrays.get("weights")
            if state is None:
                from .quantize import dequantised_state
                try:
                    state = dequantised_state(self.exact, network_layout(self.spec, self.config)[1])
                except (KeyError, ValueError, IndexError) as e:
                    raise AcnError(f"{self._where}: damaged model file (integer networks do not match the "
                                   f"model configuration: {e.__class__.__name__})") from None
            return _network(self.spec, self.config, state, self._where)
        return self._part("net", build)

    @property
    def unconditional(self):
        from .prior import UnconditionalPrior
        return self._part("unconditional", lambda: UnconditionalPrior.from_dict(self._arrays["unconditional"]))

    @property
    def buckets(self):
        from .buckets import BucketTable
        return self._part("buckets", lambda: BucketTable.from_dict(self._arrays["buckets"]))

    @property
    def head(self):
        return self._part("head", lambda: _head_tables(self))


def _head_tables(model: Model):
    from .buckets import HeadTables
    return HeadTables.from_prior(model.unconditional, model.buckets)


def with_buckets(model: Model, bits: int) -> Model:
    """The latent discretisation: 2^bits equal-mass buckets per dimension under p(z)'s marginals.

    Computed once, when the model is made, and stored in the model file: both sides of the codec read the
    same table and never re-derive it.
    """
    from .buckets import BucketTable, HeadTables
    table = BucketTable.from_reference(model.unconditional.marginal(), bits)
    # Integer tables are derived from the bucket table: an exact model must be quantised again after this.
    return Model(model.net, model.spec, model.unconditional, table, dict(model.meta),
                 HeadTables.from_prior(model.unconditional, table))


MAX_PARAMETERS = 64_000_000   # 256 MB of float32 weights, many times the shipped models


def build(spec: DataSpec, config: ModelConfig):
    from .acn import ACN
    return ACN(spec.height, spec.width, spec.channels, spec.levels, config)


def network_layout(spec: DataSpec, config: ModelConfig) -> tuple[int, dict]:
    """Parameter count and {name: [dtype, shape]} of the network, found without allocating it."""
    import torch
    with torch.device("meta"):
        state = build(spec, config).state_dict()
    layout = {name: [str(t.dtype).removeprefix("torch."), list(t.shape)] for name, t in state.items()}
    return sum(t.numel() for t in state.values()), layout


def _network(spec: DataSpec, config: ModelConfig, state: dict, where: str):
    """The float network from stored arrays {name: array}, checked against the configuration's layout."""
    import torch
    count, layout = network_layout(spec, config)
    if count > MAX_PARAMETERS:
        raise AcnError(f"{where}: model has {count:,} parameters, more than the {MAX_PARAMETERS:,} acncodec loads")
    if {k: [str(np.asarray(v).dtype), list(np.shape(v))] for k, v in state.items()} != layout:
        raise AcnError(f"{where}: damaged model file (weights do not match the model configuration)")
    net = build(spec, config)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return net.eval()


def _as_array(t) -> np.ndarray:
    """A tensor or an array as a contiguous numpy array on the CPU."""
    if hasattr(t, "detach"):
        t = t.detach().contiguous().cpu().numpy()
    return np.asarray(t, order="C")     # (not ascontiguousarray: that makes a 0-d array 1-d)


def content_hash(state: dict | None, spec: DataSpec, config: ModelConfig, prior, buckets, head=None,
                 numerics: str | None = None, exact: dict | None = None) -> str:
    """SHA-256 over everything that changes a probability. `head` and `numerics` are None only when checking
    a version 1 or 2 file, whose hash did not cover them; `state` (the float weights) is None for an exact
    model of version 4."""
    h = hashlib.sha256()
    described = {"spec": spec.to_dict(), "config": config.to_dict()}
    if numerics is not None:
        described["numerics"] = numerics
    h.update(json.dumps(described, sort_keys=True).encode())
    tensors = dict(state or {})
    if head is not None:
        tensors.update({f"head.{k}": v for k, v in head.to_dict().items()})
    tensors.update({f"unconditional.{k}": v for k, v in _dict_of(prior).items()})
    tensors.update({f"buckets.{k}": v for k, v in _dict_of(buckets).items() if k != "bits"})
    if exact is not None:
        tensors.update({f"exact.{k}": v for k, v in exact.items()})
    for name in sorted(tensors):
        a = _as_array(tensors[name])
        h.update(f"{name}|{_HASH_NAMES[str(a.dtype)]}|{tuple(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _dict_of(part) -> dict:
    """An object's stored arrays (`to_dict`), or the arrays themselves when already a dict."""
    return part if isinstance(part, dict) else part.to_dict()


# ------------------------------------------------------------------------------------------ array packing
def _narrowest(a: np.ndarray) -> np.ndarray:
    """Integer-valued arrays in the narrowest integer type that holds them exactly (restored on reading)."""
    if a.size == 0 or a.dtype.kind not in "fiu" or a.dtype == np.uint8:
        return a
    if a.dtype.kind == "f" and not (np.all(np.isfinite(a)) and np.array_equal(a, np.round(a))):
        return a
    lo, hi = a.min(), a.max()
    for t in (np.int8, np.int16, np.int32):
        if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
            return a.astype(t)
    return a


def pack_arrays(arrays: dict, narrow: bool = False) -> tuple[list, bytes]:
    """{name: array} -> (manifest [[name, dtype, stored dtype, shape], ...], xz of byte-plane-shuffled bytes)."""
    manifest, parts = [], []
    for name, t in arrays.items():
        a = _as_array(t)
        if str(a.dtype) not in _DTYPES:
            raise AcnError(f"cannot store a {a.dtype} array ({name}) in a model file")
        stored = _narrowest(a) if narrow else a
        raw = stored.reshape(-1).view(np.uint8).reshape(stored.size, stored.itemsize)
        parts.append(raw.T.tobytes())
        manifest.append([name, str(a.dtype), str(stored.dtype), list(a.shape)])
    return manifest, lzma.compress(b"".join(parts), preset=9 | lzma.PRESET_EXTREME)


def unpack_arrays(manifest: list, blob: bytes, limit: int = 8 * MAX_PARAMETERS) -> dict:
    """The exact inverse of pack_arrays. The manifest is checked, and the blob never inflates past the size
    it declares (at most `limit` bytes); damage raises ValueError."""
    entries = []
    for name, dtype, stored, shape in manifest:
        if dtype not in _DTYPES or stored not in _DTYPES or not isinstance(name, str) \
                or not all(isinstance(n, int) and n >= 0 for n in shape) or len(shape) > 8:
            raise ValueError("bad manifest entry")
        size = int(np.prod(shape, dtype=object)) * np.dtype(stored).itemsize
        entries.append((name, dtype, stored, shape, size))
    total = sum(e[-1] for e in entries)
    if total > limit:
        raise ValueError("arrays larger than a model holds")
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    raw = dec.decompress(bytes(blob), max_length=total + 1)
    if len(raw) != total or not dec.eof:
        raise ValueError("arrays blob has the wrong length")
    out, offset = {}, 0
    for name, dtype, stored, shape, size in entries:
        item = np.dtype(stored).itemsize
        planes = np.frombuffer(raw, np.uint8, size, offset).reshape(item, size // item)
        a = planes.T.copy().reshape(-1).view(stored).reshape(shape)
        out[name] = a if stored == dtype else a.astype(dtype)
        offset += size
    return out


def pack_state(state: dict) -> dict:
    """Tensors -> {"manifest": JSON [[name, dtype, shape], ...], "blob": uint8 tensor} (versions 2 and 3)."""
    import torch
    manifest, blob = pack_arrays(state)
    return {"manifest": json.dumps([[name, dtype, shape] for name, dtype, _, shape in manifest]),
            "blob": torch.frombuffer(bytearray(blob), dtype=torch.uint8)}


def unpack_state(packed: dict, layout: dict | None = None) -> dict:
    """The exact inverse of pack_state, as tensors. Damage raises (the caller turns that into a one-line error).

    `layout` ({name: [dtype, shape]} of the network the weights are for) is checked before anything is
    inflated, so the blob can never inflate past the size of the network its configuration describes."""
    import torch
    manifest = json.loads(packed["manifest"])
    if layout is not None and {name: [dtype, list(shape)] for name, dtype, shape in manifest} != layout:
        raise ValueError("weights manifest does not match the model configuration")
    arrays = unpack_arrays([[name, dtype, dtype, shape] for name, dtype, shape in manifest],
                           packed["blob"].numpy().tobytes())
    return {name: torch.from_numpy(a) for name, a in arrays.items()}


# ------------------------------------------------------------------------------------------ saving
def save(model: Model, path: str | Path, weights: bool = True) -> str:
    """Write the model file atomically; returns its content hash. An exact model is written as version 4,
    with its float weights unless `weights` is False; a float model as version 3."""
    data, digest = to_bytes(model, weights)
    atomic_write_bytes(path, data)
    return digest


def to_bytes(model: Model, weights: bool = True) -> tuple[bytes, str]:
    """The model file's bytes (what `save` writes) and its content hash: how a model travels to workers."""
    if model.numerics in EXACT_NUMERICS:
        return _exact_file(model, weights)
    import torch
    from .buckets import HeadTables
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
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue(), digest


def _exact_file(model: Model, weights: bool) -> tuple[bytes, str]:
    sections = {"exact": model.exact, "unconditional": _dict_of(model.unconditional),
                "buckets": {k: v for k, v in _dict_of(model.buckets).items() if k != "bits"}}
    if weights and model.has_weights:   # weights are not the dequantised integer maps' (a resave keeps them out)
        sections["weights"] = model.net.state_dict()
    digest = content_hash(None, model.spec, model.config, sections["unconditional"], sections["buckets"], None,
                          model.numerics, model.exact)
    manifests, blobs = {}, []
    for name, arrays in sections.items():
        manifest, blob = pack_arrays(arrays, narrow=name == "exact")
        manifests[name] = {"arrays": manifest, "bytes": len(blob)}
        blobs.append(blob)
    header = json.dumps({"format": FORMAT, "version": EXACT_FORMAT_VERSION, "hash": digest,
                         "spec": model.spec.to_dict(), "config": model.config.to_dict(),
                         "numerics": model.numerics, "meta": model.meta, "sections": manifests}).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs), digest


# ------------------------------------------------------------------------------------------ loading
def load(path: str | Path) -> Model:
    path = Path(path)
    if not path.is_file():
        raise AcnError(f"{path}: model file not found")
    with open(path, "rb") as f:
        start = f.read(len(MAGIC))
    if start == MAGIC:
        return _load_exact(path.read_bytes(), str(path))
    return _load_torch(path, str(path))


def from_bytes(data: bytes, where: str = "model") -> Model:
    """A model from a model file's bytes (`to_bytes`), as `load` reads it from a file."""
    if data[:len(MAGIC)] == MAGIC:
        return _load_exact(data, where)
    return _load_torch(io.BytesIO(data), where)


def _load_exact(data: bytes, where: str) -> StoredModel:
    try:
        (length,) = struct.unpack_from("<I", data, len(MAGIC))
        if length > MAX_HEADER:
            raise ValueError("header too long")
        start = len(MAGIC) + 4
        header = json.loads(data[start:start + length].decode())
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise AcnError(f"{where}: not an acncodec model file")
        if header.get("version") != EXACT_FORMAT_VERSION:
            raise AcnError(f"{where}: model format version {header.get('version')} is not supported "
                           f"(this acncodec reads versions {', '.join(map(str, READABLE_VERSIONS))})")
        spec = DataSpec.from_dict(header["spec"], where=where)
        config = ModelConfig.from_dict(header["config"])
        numerics = str(header["numerics"])
        if numerics not in EXACT_NUMERICS:
            raise AcnError(f"{where}: model uses numerics {numerics!r}, which this acncodec does not know here")
        meta = header["meta"]
        if not isinstance(meta, dict):
            raise TypeError("meta")
        arrays, offset = {}, start + length
        sections = header["sections"]
        if set(sections) - {"exact", "unconditional", "buckets", "weights"} or \
                not {"exact", "unconditional", "buckets"} <= set(sections):
            raise ValueError("sections")
        for name, section in sections.items():
            size = int(section["bytes"])
            if size < 0 or offset + size > len(data):
                raise ValueError("truncated")
            arrays[name] = unpack_arrays(section["arrays"], data[offset:offset + size])
            offset += size
        if offset != len(data):
            raise ValueError("trailing bytes")
    except AcnError:
        raise
    except Exception as e:  # any damage to the structure: lengths, JSON, keys, types, shapes, blobs
        raise AcnError(f"{where}: damaged model file ({e.__class__.__name__})") from None
    digest = content_hash(None, spec, config, arrays["unconditional"], arrays["buckets"], None, numerics,
                          arrays["exact"])
    if digest != header["hash"]:
        raise AcnError(f"{where}: model file is damaged (content hash {digest[:12]} does not match the "
                       f"stored {str(header['hash'])[:12]})")
    return StoredModel(spec, config, numerics, meta, arrays["exact"], arrays, digest, where)


def _load_torch(source, where: str) -> Model:
    """A float model file (version 1 to 3), read by torch from `source` (a path or a file object)."""
    import torch
    from .buckets import BucketTable, HeadTables
    from .prior import UnconditionalPrior
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise AcnError(f"{where}: not an acncodec model file ({type(e).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AcnError(f"{where}: not an acncodec model file")
    if payload.get("version") not in (1, 2, 3):
        raise AcnError(f"{where}: model format version {payload.get('version')} is not supported "
                       f"(this acncodec reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    try:
        spec = DataSpec.from_dict(payload["spec"], where=where)
        config = ModelConfig.from_dict(payload["config"])
        prior = UnconditionalPrior.from_dict(payload["unconditional"])
        buckets = BucketTable.from_dict(payload["buckets"])
        count, layout = network_layout(spec, config)
        if count > MAX_PARAMETERS:
            raise AcnError(f"{where}: model has {count:,} parameters, more than the {MAX_PARAMETERS:,} acncodec "
                           f"loads")
        net = build(spec, config)
        state = payload["state"] if payload["version"] == 1 else unpack_state(payload["weights"], layout)
        net.load_state_dict(state)
        stored_hash = str(payload["hash"])
        if payload["version"] >= 3:
            numerics = str(payload["numerics"])
            if numerics not in NUMERICS:
                raise AcnError(f"{where}: model uses numerics {numerics!r}, which this acncodec does not know")
            head = HeadTables.from_dict(unpack_state(payload["head"]))
            exact = {k: v.numpy() for k, v in unpack_state(payload["exact"]).items()} \
                if numerics in EXACT_NUMERICS else None
        else:
            numerics, head, exact = "float32", None, None
        meta = json.loads(payload.get("meta", "{}"))
        if not isinstance(meta, dict):
            raise TypeError("meta")
    except AcnError:
        raise
    except Exception as e:  # any damage to the structure: keys, types, shapes, JSON
        raise AcnError(f"{where}: damaged model file ({e.__class__.__name__})") from None
    net.eval()
    digest = content_hash(net.state_dict(), spec, config, prior, buckets, head, None if head is None else numerics,
                          exact)
    if digest != stored_hash:
        raise AcnError(f"{where}: model file is damaged (content hash {digest[:12]} does not match the "
                       f"stored {stored_hash[:12]})")
    if head is None:   # versions 1 and 2: computed here, once, as `with_buckets` does for a new model
        head = HeadTables.from_prior(prior, buckets)
    # A version 3 exact model keeps the hash it was written with (it covered its float weights then, which
    # today's does not). Other models hash as today's do (versions 1 and 2 covered no head tables or numerics).
    return Model(net, spec, prior, buckets, meta, head, numerics, exact, digest if exact is not None else None)
