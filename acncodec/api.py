"""The Python API in a few calls: what the command line does, for a notebook or a script.

Every `model` argument takes a loaded Model, a model file's path, a shipped model's name, or None: the
shipped model that fits the data (compress, estimate) or that the archive names (decompress).
"""

from __future__ import annotations

from pathlib import Path

from . import codec, registry
from .data import ImageSet
from .data import load as load_data
from .evaluate import estimate as table
from .modelfile import Model
from .train import to_tensor


def as_images(data: ImageSet | str | Path) -> ImageSet:
    return data if isinstance(data, ImageSet) else load_data(str(data))


def model_for(images: ImageSet, model: Model | str | Path | None = None) -> Model:
    """The model to code `images` with: as given, or the shipped one that fits them."""
    if isinstance(model, Model):
        return model
    if model is None:
        return registry.pick_for(images).load()
    return registry.load_model(str(model))


def compress(data: ImageSet | str | Path, model: Model | str | Path | None = None, order: str = "auto",
             chains: int | None = None, estimate: bool = True, progress: bool = False) -> tuple[bytes, dict]:
    """Compress a dataset: the archive's bytes and the report (sizes, actual and estimated cost, speed)."""
    images = as_images(data)
    return codec.compress(images, model_for(images, model), order=order, chains=chains, progress=progress,
                          estimate=estimate)


def decompress(archive: bytes | str | Path, model: Model | str | Path | None = None,
               progress: bool = False) -> tuple[ImageSet, dict]:
    """Restore an archive (its bytes or its path): the images, exact, and the archive header."""
    where = "archive"
    if not isinstance(archive, bytes):
        where, archive = str(archive), Path(archive).read_bytes()
    parsed = codec.parse(archive, where)
    if model is None:
        model = registry.for_archive(parsed.header, where).load()
    elif not isinstance(model, Model):
        model = registry.load_model(str(model))
    return codec.decompress(parsed, model, where=where, progress=progress)


def estimate(data: ImageSet | str | Path, model: Model | str | Path | None = None,
             progress: bool = False) -> dict:
    """The paper's Table 2 for a dataset, in nats per image (see evaluate.estimate)."""
    images = as_images(data)
    model = model_for(images, model)
    images = codec.match_model(images, model)
    with codec.coding_threads(codec.CODING_THREADS):
        return table(model, to_tensor(images.images), progress=progress)
