"""The reference models shipped inside the package: found by name, by data spec or by content hash.

`reference/index.json` lists them (bench/ship_models.py writes it from trained model files); each entry holds
what is needed to choose a model without loading it: its data spec, content hash and training command. An entry
`superseded_by` another is kept so that the archives written with it still decode (found by hash, or by name):
it is never chosen for new data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import DataSpec, ImageSet, set_levels
from .errors import AcnError
from . import modelfile

REFERENCE_DIR = Path(__file__).parent / "reference"
INDEX = "index.json"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    file: str
    hash: str
    spec: DataSpec
    trained_on: str
    command: str
    description: str
    superseded_by: str | None = None

    @property
    def path(self) -> Path:
        return REFERENCE_DIR / self.file

    def load(self) -> modelfile.Model:
        model = modelfile.load(self.path)
        if model.hash != self.hash:
            raise AcnError(f"{self.path}: shipped model {self.name} does not match its index entry "
                           f"(hash {model.hash[:12]}, index says {self.hash[:12]}); reinstall acncodec")
        return model

    def to_dict(self) -> dict:
        d = {"name": self.name, "file": self.file, "hash": self.hash, "spec": self.spec.to_dict(),
             "trained_on": self.trained_on, "command": self.command, "description": self.description}
        if self.superseded_by:
            d["superseded_by"] = self.superseded_by
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ShippedModel":
        return cls(d["name"], d["file"], d["hash"], DataSpec.from_dict(d["spec"], where=INDEX), d["trained_on"],
                   d["command"], d["description"], d.get("superseded_by"))


def shipped() -> list[ShippedModel]:
    """The shipped models for new data, in index order (empty if the package holds none)."""
    return [m for m in all_shipped() if not m.superseded_by]


def all_shipped() -> list[ShippedModel]:
    """Every shipped model, the superseded ones too (they decode the archives written with them)."""
    path = REFERENCE_DIR / INDEX
    if not path.is_file():
        return []
    try:
        return [ShippedModel.from_dict(d) for d in json.loads(path.read_text())["models"]]
    except (ValueError, KeyError, TypeError) as e:
        raise AcnError(f"{path}: damaged index of shipped models ({e.__class__.__name__}); "
                       "reinstall acncodec") from None


def by_name(name: str) -> ShippedModel | None:
    return next((m for m in all_shipped() if m.name == name), None)


def by_hash(digest: str) -> ShippedModel | None:
    return next((m for m in all_shipped() if m.hash == digest), None)


def for_archive(header: dict, where: str) -> ShippedModel:
    """The shipped model an archive names by content hash, or a clear error."""
    entry = by_hash(header.model_hash)
    if entry is None:
        raise AcnError(f"{where}: made with model {header.model_hash[:12]}, which is not a shipped model; "
                       "pass the model file with --model")
    return entry


def fits(images: ImageSet, spec: DataSpec) -> bool:
    """Whether a model for `spec` can code these data (same shape; values on its level grid, or for arrays,
    which declare no bit depth, level indices below its level count)."""
    s = images.spec
    if (s.height, s.width, s.channels) != (spec.height, spec.width, spec.channels):
        return False
    if images.levels == spec.levels:
        return True
    try:
        set_levels(images, spec.levels)   # arrays: values 0..16 are digits' 17 levels, not dark 8-bit pixels
    except AcnError:
        return False
    return True


SAMPLE_IMAGES = 64   # images scored to choose between shipped models of the same spec


def candidates_for(images: ImageSet) -> list[ShippedModel]:
    """The shipped models that can code these data with the fewest levels (binary data go to the binary
    model, not to an 8-bit one of the same size), in index order; a clear error when none fits."""
    fitting = [m for m in shipped() if fits(images, m.spec)]
    if not fitting:
        have = "; ".join(f"{m.name} ({m.spec})" for m in shipped()) or "none"
        raise AcnError(f"{images.source}: no shipped model fits {images.spec} data (shipped: {have}); "
                       f"train one with `acncodec train {images.source} -o model.acn` and pass --model model.acn")
    fewest = min(m.spec.levels for m in fitting)
    return [m for m in fitting if m.spec.levels == fewest]


def sample_of(n: int, size: int = SAMPLE_IMAGES) -> np.ndarray:
    """Indices of an even spread of at most `size` of n images: a folder sorted by class is still sampled
    across its classes."""
    return np.unique(np.linspace(0, n - 1, min(n, size)).round().astype(np.int64))


def choose_for(images: ImageSet, sample: int = SAMPLE_IMAGES) -> tuple[ShippedModel, dict[str, float]]:
    """The shipped model for these data, and what each candidate cost on the sample (nats per image; empty
    when only one model fits). Grey MNIST and Fashion-MNIST are both 28x28 8-bit: of several candidates, the
    one with the lowest unordered cost on an even spread of `sample` images wins (the first on a tie)."""
    candidates = candidates_for(images)
    if len(candidates) == 1:
        return candidates[0], {}
    import torch
    from .codec import channels_first, match_model
    from .evaluate import unordered_cost
    picked = ImageSet(images.images[sample_of(len(images), sample)], images.levels, None, images.source)
    costs = {}
    with torch.no_grad():
        for entry in candidates:
            model = entry.load()
            x = torch.from_numpy(channels_first(match_model(picked, model).images))
            costs[entry.name] = float(unordered_cost(model.net, model.unconditional, x).mean())
    return min(candidates, key=lambda m: costs[m.name]), costs


def pick_for(images: ImageSet) -> ShippedModel:
    """The shipped model for these data (see choose_for)."""
    return choose_for(images)[0]


def load_model(arg: str) -> modelfile.Model:
    """A model given on the command line: a model file, or the name of a shipped model."""
    if not Path(arg).exists():
        entry = by_name(arg)
        if entry is not None:
            return entry.load()
        names = ", ".join(m.name for m in shipped())
        raise AcnError(f"{arg}: model file not found" + (f" and not a shipped model ({names})" if names else ""))
    return modelfile.load(arg)
