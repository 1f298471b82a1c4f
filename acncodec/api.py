"""The Python API in a few calls: what the command line does, for a notebook or a script.

Every `data` argument takes an ImageSet, a numpy array ((N, H, W) or (N, H, W, C), integer), or what
`acncodec.load` accepts (a folder, an array file, a built-in name). `levels` says how many levels the data
have when an array's values alone do not (see data.set_levels). Every `model` argument takes a loaded Model,
a model file's path, a shipped model's name, or None: the shipped model that fits the data (compress,
estimate) or that the archive names (decompress).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import codec, registry
from .baseline import xz_baseline
from .data import ImageSet, declare_levels, from_array
from .data import load as load_data
from .evaluate import estimate as table
from .modelfile import Model
from .train import to_tensor

Data = ImageSet | np.ndarray | str | Path


def as_images(data: Data, levels: int | None = None) -> ImageSet:
    """The data to code, with `levels` declared (data.declare_levels: values are kept as they are)."""
    if isinstance(data, np.ndarray):
        images = from_array(data, "array")
    elif isinstance(data, ImageSet):
        images = data
    else:
        images = load_data(str(data))
    return declare_levels(images, levels) if levels is not None else images


def model_for(images: ImageSet, model: Model | str | Path | None = None) -> Model:
    """The model to code `images` with: as given, or the shipped one that fits them."""
    if isinstance(model, Model):
        return model
    if model is None:
        return registry.pick_for(images).load()
    return registry.load_model(str(model))


def for_model(images: ImageSet, model: Model) -> ImageSet:
    """An array's values read as the model's level indices when they all lie below its level count; anything
    else is left to codec.match_model (8-bit values on the model's level grid, or a clear error)."""
    levels = model.spec.levels
    if images.levels != levels and images.levels_from_values and int(images.images.max()) < levels:
        return declare_levels(images, levels)
    return images


def compress(data: Data, model: Model | str | Path | None = None, order: str = "auto",
             chains: int | None = None, estimate: bool = True, progress: bool = False,
             levels: int | None = None, baseline: bool = True, shards: int | None = None,
             shard_images: int | None = None, workers: int = 1, cluster: str | None = None,
             checkpoint: str | Path | None = None) -> tuple[bytes, dict]:
    """Compress a dataset: the archive's bytes and the report (sizes, actual and estimated cost, speed, and
    with `baseline` what xz -9 makes of the same pixels, measured in the same call). `shards` (or
    `shard_images`, default one shard per 10,000 images) independent streams, coded by `workers` local
    processes or on the Ray cluster at `cluster`; the bytes do not depend on where they were coded.
    `checkpoint`: a folder keeping each finished shard, so that the same call with it resumes a run that
    stopped; emptied once the archive is made."""
    from . import sharding
    images = as_images(data, levels)
    model = model_for(images, model)
    images = for_model(images, model)
    blob, report = sharding.compress(images, model, order=order, shards=shards, shard_images=shard_images,
                                     chains=chains, workers=workers, cluster=cluster, progress=progress,
                                     estimate=estimate, checkpoint=checkpoint)
    if baseline:
        reference = xz_baseline(codec.match_model(images, model))
        report["baseline"] = reference
        report["worse_than_baseline"] = report["bits_per_dim"] > reference["bits_per_dim"]
    # Folders keep their names in every order; arrays keep their order only in original order.
    report["order_kept"] = report["order"] == "original" or images.names is not None
    return blob, report


def decompress(archive: bytes | str | Path, model: Model | str | Path | None = None,
               progress: bool = False, shards: list[int] | None = None, images: list[int] | None = None,
               names: list[str] | None = None, workers: int = 1,
               cluster: str | None = None) -> tuple[ImageSet, dict]:
    """Restore an archive (its bytes or its path): the images, exact, and the archive header. Only some of
    them if asked: whole `shards`, `images` by archive position, or images by `names`; a sharded archive then
    decodes only the shards that hold them."""
    from . import sharding
    where = "archive"
    if not isinstance(archive, bytes):
        where, archive = str(archive), Path(archive).read_bytes()
    parsed = codec.parse(archive, where)
    if model is None:
        model = registry.for_archive(parsed.header, where).load()
    elif not isinstance(model, Model):
        model = registry.load_model(str(model))
    return sharding.restore(parsed, model, where, shards=shards, names=names, workers=workers, cluster=cluster,
                            numbers=None if images is None else np.asarray(images, dtype=np.int64),
                            progress=progress)


def estimate(data: Data, model: Model | str | Path | None = None, progress: bool = False,
             levels: int | None = None) -> dict:
    """The paper's Table 2 for a dataset, in nats per image (see evaluate.estimate)."""
    images = as_images(data, levels)
    model = model_for(images, model)
    images = codec.match_model(for_model(images, model), model)
    with codec.coding_threads(codec.CODING_THREADS):
        return table(model, to_tensor(images.images), progress=progress)
