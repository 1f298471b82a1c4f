"""Compress and decompress datasets as several shards coded in parallel (the Python API behind --shards,
--workers and --cluster; the container is shards.py, the workers engines.py).

Plan. The data are cut into S shards of about equal size. In the tour and associative orders a shard is a
consecutive piece of one tour through every datum's code (tour.tour_for), so each shard holds related images
and its own tour (or its neighbours) stays short; in the original and set orders a shard is a consecutive
piece of the input. Each shard is then compressed exactly as a one-stream archive of its images is
(codec.compress_archive), in whatever process the engine gives it, and checked when it comes back: its header,
and the checksum of its pixels against the pixels it was given, in the order it reports. The archive is
assembled only when every shard has come back checked. auto chooses the order mode once for all shards, from
the estimates (codec.choose_order) on a sample of one shard's size: what one shard will cost.

What sharding costs (bench/shard_overhead.py measures it): every shard starts its chains under the
unconditional prior and on its own seed words, refunds only log(shard size!) in the set orders, and adds 44
bytes to the index and a version 2 header of its own.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from . import shards as container
from .codec import (CHOICES, SET_MAX_N, SET_ORDERS, channels_first, choose_order, compress as compress_stream,
                    encode_all, library_versions, match_model, analysis_codes, pixel_digest, probability_model,
                    to_input_levels)
from .coding.order import chain_layout, default_chains
from .archive import parse as parse_stream
from .data import ImageSet
from .engines import engine_for
from .errors import AcnError, shown
from .header import MAX_CHAINS
from .modelfile import Model
from .names import check_names
from .progress import bar
from .resume import ShardCheckpoint, plan_key

#: Images per shard unless told: up to this many, a dataset is one stream, the archive it always was.
DEFAULT_SHARD_IMAGES = 10_000
#: Images per encoder call while planning (the codes of the whole dataset are made in pieces of this size).
PLAN_BLOCK = 4096


def shard_count(n: int, shards: int | None = None, shard_images: int | None = None) -> int:
    """S: as given, or enough shards of at most `shard_images` (default DEFAULT_SHARD_IMAGES) images."""
    if shards is not None and shard_images is not None:
        raise AcnError("give the number of shards or the images per shard, not both")
    if shards is not None:
        if not 1 <= shards <= container.MAX_SHARDS:
            raise AcnError(f"shards must be 1..{container.MAX_SHARDS:,}, got {shards}")
        return min(shards, n)
    size = DEFAULT_SHARD_IMAGES if shard_images is None else shard_images
    if size < 1:
        raise AcnError(f"images per shard must be at least 1, got {size}")
    return min(max(1, math.ceil(n / size)), container.MAX_SHARDS)


def image_codes(pm, images: np.ndarray) -> np.ndarray:
    """Codes of images (N, H, W, C) under the coding numerics, made in pieces: no whole-dataset copy."""
    return np.concatenate([encode_all(pm, channels_first(images[i:i + PLAN_BLOCK]))
                           for i in range(0, len(images), PLAN_BLOCK)])


def plan(images: ImageSet, model: Model, order: str, shards: int) -> tuple[str, list[np.ndarray], dict]:
    """The order mode (auto resolved) and each shard's images (positions in `images`, in the order the shard
    is given them). `images` are at the model's levels."""
    from .tour import tour_for
    pm = probability_model(model)
    n, info = len(images), {}
    if order == "auto":
        size = math.ceil(n / shards)
        sample = np.sort(np.random.default_rng(0).choice(n, size, replace=False))
        part = ImageSet(np.ascontiguousarray(images.images[sample]), images.levels, None, images.source)
        x = channels_first(part.images)
        codes = encode_all(pm, x)
        order, costs = choose_order(model, pm, part, analysis_codes(model, pm, x, codes), tour_for(codes),
                                    chain_layout(size, default_chains(size)))
        info["order_estimates_sample"] = size
        info["order_estimates_kl_nats_per_image"] = {m: c["kl"] / size for m, c in costs.items()}
    pieces = container.split_evenly(n, shards)
    if order in ("tour", "associative"):
        started = time.perf_counter()
        tour = tour_for(image_codes(pm, images.images))
        info["tour_seconds"] = round(time.perf_counter() - started, 2)
        pieces = [tour[p] for p in pieces]
    return order, pieces, info


class _Jobs:
    """Jobs made when an engine asks for them, so only the shards in flight are copied out of the data."""

    def __init__(self, count: int, make):
        self.count, self.make = count, make

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict:
        return self.make(i)


def compress(images: ImageSet, model: Model, order: str = "auto", shards: int | None = None,
             shard_images: int | None = None, chains: int | None = None, workers: int = 1,
             cluster: str | None = None, progress: bool = True, estimate: bool = True,
             checkpoint: str | Path | None = None) -> tuple[bytes, dict]:
    """Compress a dataset into S shards (a version 3 archive; one shard: the version 2 archive of
    codec.compress). Returns the archive's bytes and the report; the bytes do not depend on the workers.
    `checkpoint`: a folder that keeps each finished shard, so that the same call with the same folder resumes
    a run that stopped (resume.py); its files are removed once the archive is made."""
    if order not in CHOICES:
        raise AcnError(f"unknown order {order!r}; choose one of {', '.join(CHOICES)}")
    if len(images) == 0:
        raise AcnError(f"{images.source}: no images to compress")
    count = shard_count(len(images), shards, shard_images)
    if count == 1:
        return compress_stream(images, model, order=order, chains=chains, progress=progress, estimate=estimate)
    if images.names is not None:
        check_names(images.names, images.source)
    if chains is not None and not 1 <= chains <= MAX_CHAINS:
        raise AcnError(f"chains must be 1..{MAX_CHAINS}, got {chains}")
    input_levels = images.levels
    images = match_model(images, model)
    n = len(images)
    if order in SET_ORDERS and math.ceil(n / count) > SET_MAX_N:
        raise AcnError(f"{images.source}: {order} order codes at most {SET_MAX_N:,} images per shard")
    started = time.perf_counter()
    engine = engine_for(model, workers, cluster, count)   # a cluster that cannot be reached fails here, first
    order_requested = order
    store = None
    try:
        if checkpoint is not None:
            store = ShardCheckpoint(checkpoint, plan_key(model.hash, pixel_digest(images.images, None), order,
                                                         count, chains, estimate), n)
        if store is not None and store.plan is not None:
            order, pieces, info = store.plan
        else:
            order, pieces, info = plan(images, model, order, count)
            if store is not None:
                store.save_plan(order, pieces, info)
    except BaseException:
        engine.close()
        raise
    results: list[dict | None] = [None] * count
    if store is not None:
        for i in range(count):
            results[i] = _checked_or_none(store.load(i), i, pieces[i], images.images, model, order)
    todo = [i for i in range(count) if results[i] is None]
    jobs = _Jobs(len(todo), lambda k: {"images": np.ascontiguousarray(images.images[pieces[todo[k]]]),
                                       "levels": images.levels, "order": order, "chains": chains,
                                       "estimate": estimate, "source": f"{images.source} (shard {todo[k]})"})
    with bar(None, progress, total=n, desc="compress", unit="image") as counter:
        counter.update(sum(len(pieces[i]) for i in range(count) if results[i] is not None))

        def done(k: int, result: dict) -> None:
            i = todo[k]
            check_shard(i, result, pieces[i], images.images, model, order)
            results[i] = result
            if store is not None:
                store.save(i, result)
            counter.update(len(pieces[i]))
        try:
            engine.run("compress", jobs, done)
        finally:
            engine.close()
    sequence = np.concatenate([pieces[i][r["sequence"]] for i, r in enumerate(results)])
    names = None if images.names is None else [images.names[i] for i in sequence]
    header = container.ShardedHeader(model.hash, model.spec, n, order, input_levels, model.bucket_bits,
                                     pixel_digest(images.images, names, sequence), count, library_versions())
    sections = container.assemble(header, names, [r["bytes"] for r in results], [len(p) for p in pieces])
    seconds = time.perf_counter() - started
    report = sharded_report(sections, [r["report"] for r in results], n, model, images)
    report.update(info)
    report.update({"order": order, "order_requested": order_requested, "shards": count,
                   "shard_images": [len(p) for p in pieces], "engine": engine.name,
                   "worker_restarts": getattr(engine, "restarts", 0),
                   "compress_seconds": round(seconds, 2), "compress_images_per_second": round(n / seconds, 1)})
    if store is not None:
        report["shards_resumed"] = count - len(todo)
        store.remove()
    return b"".join(sections.values()), report


def _checked_or_none(result: dict | None, i: int, piece: np.ndarray, images: np.ndarray, model: Model,
                     order: str) -> dict | None:
    """A checkpointed shard if it still holds exactly its images (else it is coded again)."""
    if result is None:
        return None
    try:
        check_shard(i, result, piece, images, model, order)
    except AcnError:
        return None
    return result


def check_shard(i: int, result: dict, piece: np.ndarray, images: np.ndarray, model: Model, order: str) -> None:
    """A shard as it came back from a worker: a version 2 archive of exactly the images it was given."""
    where = f"shard {i}"
    shard = parse_stream(result["bytes"], where)
    h, seq = shard.header, result["sequence"]
    if (h.n, h.model_hash, h.order) != (len(piece), model.hash, order) or \
            not np.array_equal(np.sort(seq), np.arange(len(piece))) or \
            h.pixels_sha256 != pixel_digest(images, None, piece[seq]):
        raise AcnError(f"{where}: a worker returned a shard that does not hold the images it was given")


def sharded_report(sections: dict[str, bytes], reports: list[dict], n: int, model: Model,
                   images: ImageSet) -> dict:
    """The compress report of a sharded archive: sizes of the whole, the shards' estimates combined."""
    from .codec import LN2
    spec = model.spec
    total = sum(len(b) for b in sections.values())
    dims = n * spec.height * spec.width * spec.channels
    images_only = total - len(sections["names"]) + 4
    report = {"n": n, "bytes": total, "section_bytes": {k: len(v) for k, v in sections.items()},
              "bits_per_dim": 8 * total / dims, "nats_per_image": 8 * total * LN2 / n,
              "bytes_without_names": images_only, "nats_per_image_without_names": 8 * images_only * LN2 / n,
              "payload_nats_per_image": 8 * sum(r["section_bytes"]["payload"] for r in reports) * LN2 / n,
              "chains": sum(r["chains"] for r in reports), "rounds": max(r["rounds"] for r in reports),
              "initial_bits": sum(r["initial_bits"] for r in reports), "model_hash": model.hash,
              "source": images.source, "tour_seconds": sum(r["tour_seconds"] for r in reports)}
    if images.names is not None:
        report["names_bits_per_image"] = 8 * len(sections["names"]) / n
        report["log2_n_factorial_per_image"] = float(np.log2(np.arange(1, n + 1)).sum() / n)
    weights = np.array([r["n"] for r in reports], dtype=np.float64) / n
    if all("order_refund_nats_per_image" in r for r in reports):
        report["order_refund_nats_per_image"] = float(sum(w * r["order_refund_nats_per_image"]
                                                          for w, r in zip(weights, reports)))
    if all("estimate_nats_per_image" in r for r in reports):
        est = float(sum(w * r["estimate_nats_per_image"] for w, r in zip(weights, reports)))
        report.update({"estimate_nats_per_image": est,
                       "estimate_bits_per_dim": est / LN2 / (spec.height * spec.width * spec.channels),
                       "estimate_reconstruction": float(sum(w * r["estimate_reconstruction"]
                                                            for w, r in zip(weights, reports))),
                       "estimate_kl": float(sum(w * r["estimate_kl"] for w, r in zip(weights, reports))),
                       "estimate_formula": reports[0]["estimate_formula"] + ", within each shard",
                       "estimate_n": n,
                       "actual_over_estimate": report["nats_per_image_without_names"] / est})
    return report


def decompress(archive: container.ShardedArchive, model: Model, where: str = "archive",
               shards: list[int] | None = None, workers: int = 1, cluster: str | None = None,
               progress: bool = True) -> tuple[ImageSet, container.ShardedHeader, np.ndarray]:
    """Decode the shards asked for (default: all) of a sharded archive. Returns their images in archive order
    (names if any), the index header, and the archive positions of the images returned."""
    h = archive.header
    if h.model_hash != model.hash:
        raise AcnError(f"{where}: archive was made with model {h.model_hash[:12]} but the model given is "
                       f"{model.hash[:12]}")
    if h.spec != model.spec or h.bucket_bits != model.bucket_bits:
        raise AcnError(f"{where}: archive header does not match its model (data spec or bucket bits)")
    wanted = list(range(h.shards)) if shards is None else sorted(set(shards))
    if any(not 0 <= i < h.shards for i in wanted):
        raise AcnError(f"{where}: the archive has shards 0..{h.shards - 1}; asked for {wanted}")
    for i in wanted:   # every shard asked for is checked against the index before any decoding starts
        archive.shard(i, where)
    jobs = _Jobs(len(wanted), lambda k: {"bytes": archive.shard_bytes(wanted[k]),
                                         "where": f"{where} (shard {wanted[k]})"})
    decoded: list[np.ndarray | None] = [None] * len(wanted)
    engine = engine_for(model, workers, cluster, len(wanted))
    total = sum(archive.entries[i].images for i in wanted)
    with bar(None, progress, total=total, desc="decompress", unit="image") as counter:
        def done(k: int, result: dict) -> None:
            decoded[k] = result["images"]
            counter.update(len(result["images"]))
        try:
            engine.run("decompress", jobs, done)
        finally:
            engine.close()
    images = np.concatenate(decoded)
    positions = np.concatenate([shard_positions(archive, i) for i in wanted])
    names = None if archive.names is None else [archive.names[p] for p in positions]
    if len(wanted) == h.shards and pixel_digest(images, names) != h.pixels_sha256:
        raise AcnError(f"{where}: the shards decoded, but not to the images the archive's checksum names: it "
                       f"was altered and re-sealed; nothing was written")
    return to_input_levels(ImageSet(images, model.spec.levels, names, where), h.input_levels), h, positions


def parse_numbers(text: str, n: int, where: str) -> np.ndarray:
    """Image numbers as given to --images ("0-99,500": archive positions, from 0) checked against n."""
    out = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise AcnError(f"--images {text!r}: give numbers and ranges such as 0-99,500") from None
        if not 0 <= first <= last < n:
            raise AcnError(f"{where}: holds images 0..{n - 1}; --images asked for {part.strip()}")
        out.append(np.arange(first, last + 1))
    return np.unique(np.concatenate(out))


def selection(archive, where: str, shards: list[int] | None = None, numbers: np.ndarray | None = None,
              names: list[str] | None = None) -> np.ndarray | None:
    """The archive positions asked for, sorted: whole shards, images by position, images by name (None: all)."""
    if shards is None and numbers is None and names is None:
        return None
    count = archive.header.shards if isinstance(archive, container.ShardedArchive) else 1
    n, parts = archive.header.n, [np.empty(0, dtype=np.int64)]
    for i in shards or []:
        if not 0 <= i < count:
            raise AcnError(f"{where}: the archive has shards 0..{count - 1}; asked for shard {i}")
        parts.append(shard_positions(archive, i))
    if numbers is not None:
        numbers = np.asarray(numbers, dtype=np.int64)
        bad = numbers[(numbers < 0) | (numbers >= n)]
        if len(bad):
            raise AcnError(f"{where}: holds images 0..{n - 1}; asked for image {bad[0]}")
        parts.append(numbers)
    if names is not None:
        if archive.names is None:
            raise AcnError(f"{where}: holds an array, not named images; choose images by --images")
        index = {name: i for i, name in enumerate(archive.names)}
        missing = [name for name in names if name not in index]
        if missing:
            raise AcnError(f"{where}: holds no image named {shown(missing[0])}")
        parts.append(np.array([index[name] for name in names], dtype=np.int64))
    return np.unique(np.concatenate(parts))


def restore(archive, model: Model, where: str = "archive", shards: list[int] | None = None,
            numbers: np.ndarray | None = None, names: list[str] | None = None, workers: int = 1,
            cluster: str | None = None, progress: bool = True) -> tuple[ImageSet, object]:
    """Decode an archive (one stream or sharded), all of it or only what is asked for (`selection`). A
    sharded archive decodes only the shards that hold it; a one-stream archive decodes whole and keeps what
    was asked for. Returns the images (archive order) and the header."""
    from .codec import decompress as decompress_stream
    chosen = selection(archive, where, shards, numbers, names)
    if isinstance(archive, container.ShardedArchive):
        held = None
        if chosen is not None:
            starts = np.array([archive.first_image(i) for i in range(archive.header.shards)])
            held = sorted(set((np.searchsorted(starts, chosen, side="right") - 1).tolist()))
        images, header, positions = decompress(archive, model, where, held, workers, cluster, progress)
    else:
        images, header = decompress_stream(archive, model, where=where, progress=progress)
        positions = np.arange(header.n)
    if chosen is not None:
        keep = np.flatnonzero(np.isin(positions, chosen))
        images = ImageSet(images.images[keep], images.levels,
                          None if images.names is None else [images.names[i] for i in keep], images.source)
    return images, header


def shard_positions(archive, i: int) -> np.ndarray:
    """Archive positions of shard i's images (a one-stream archive is shard 0)."""
    if isinstance(archive, container.ShardedArchive):
        return archive.first_image(i) + np.arange(archive.entries[i].images)
    return np.arange(archive.header.n)
