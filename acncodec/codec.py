"""compress / decompress: the whole dataset as one bits-back ANS stack (the Python API behind the CLI).

Alice orders the data by the greedy tour through their codes (or keeps the input order), splits the order
into B chains of staggered lengths and codes round by round, last round first; Bob decodes round by round,
re-encoding each round to condition the next. See coding/protocol.py for one round and archive.py for the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .archive import Archive, describe, parse
from .coding import numerics
from .coding.order import (active_counts, chain_layout, chain_starts, default_chains, round_positions,
                           seed_word_count as _seed_word_count, seed_words)
from .coding.codecs import StackExhausted
from .coding.protocol import decode_stream, encode_stream
from .compare import compare_images  # noqa: F401  (its home is compare.py; kept importable here)
from .data import DataSpec, ImageSet, export_png, fit_levels, level_grid
from .errors import AcnError
from .fileio import write_bytes
from .header import CODING_THREADS, MAX_CHAINS, MIN_BITS_PER_IMAGE, ORDERS, Header
from .modelfile import Model
from .names import check_names
from .progress import bar

LN2 = math.log(2)
ENCODE_BATCH = 256   # images per encoder call when coding all data for the tour

__all__ = ["active_counts", "chain_layout", "default_chains", "round_positions", "seed_words"]


def library_versions() -> dict:
    from importlib.metadata import version
    return {name: version(name) for name in ("acncodec", "torch", "numpy", "constriction")}


def pixel_digest(images: np.ndarray, names: list[str] | None) -> str:
    h = hashlib.sha256(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(json.dumps(names, ensure_ascii=False).encode())
    return h.hexdigest()


@contextmanager
def coding_threads(threads: int):
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def channels_first(images: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) uint8 level indices, the layout the networks read (widened per batch)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.uint8)


def match_model(images: ImageSet, model: Model) -> ImageSet:
    """Bring the data to the model's levels (documented grid conversion) or fail naming both specs."""
    spec = model.spec
    if (images.spec.height, images.spec.width, images.spec.channels) != (spec.height, spec.width, spec.channels):
        raise AcnError(f"{images.source}: data are {images.spec} but the model is for {spec}")
    if images.levels != spec.levels:
        if images.levels != 256:
            raise AcnError(f"{images.source}: data have {images.levels} levels but the model is for {spec}")
        images = fit_levels(images, spec.levels)
    return images


def compress(images: ImageSet, model: Model, order: str = "tour", chains: int | None = None,
             progress: bool = True, estimate: bool = True) -> tuple[bytes, dict]:
    """Compress a dataset; returns the archive bytes and a report (sizes, costs, timings)."""
    if order not in ORDERS:
        raise AcnError(f"unknown order {order!r}; choose one of {', '.join(ORDERS)}")
    if len(images) == 0:
        raise AcnError(f"{images.source}: no images to compress")
    if images.names is not None:
        check_names(images.names, images.source)    # by decompress's rules, before any coding work
    if chains is not None and not 1 <= chains <= MAX_CHAINS:
        raise AcnError(f"chains must be 1..{MAX_CHAINS}, got {chains}")
    input_levels = images.levels
    images = match_model(images, model)
    n = len(images)
    chains = default_chains(n) if chains is None else max(1, int(chains))
    pm = numerics.for_model(model)
    started = time.perf_counter()
    with coding_threads(CODING_THREADS):
        x_all = channels_first(images.images)
        tour_started = time.perf_counter()
        all_codes = None   # the tour's codes serve the estimate too, so the encoder runs once
        if order == "tour":
            from .tour import greedy_tour
            all_codes = np.concatenate([pm.encode(x_all[i:i + ENCODE_BATCH])
                                        for i in range(0, n, ENCODE_BATCH)])
            sequence = greedy_tour(all_codes)
        else:
            sequence = np.arange(n)
        tour_seconds = time.perf_counter() - tour_started
        lengths = chain_layout(n, chains)
        n_seed = seed_word_count(model)
        try:
            payload = encode_stream(pm, x_all[sequence], lengths, conditional=order == "tour", seed_count=n_seed,
                                    rounds=lambda r: bar(r, progress, desc="compress", unit="round", leave=False))
        except StackExhausted as e:
            raise AcnError(f"{images.source}: the seed words did not cover a bits-back pop (round {e.round}); "
                           f"try another --chains") from None
    if n > 32 * len(payload) // MIN_BITS_PER_IMAGE:
        raise AcnError(f"{images.source}: the data code to under {MIN_BITS_PER_IMAGE} bit per image, "
                       f"which the archive format does not allow")
    seconds = time.perf_counter() - started
    # Archive order is chain by chain, i.e. the sequence itself: that is how Bob writes the data out.
    names = None if images.names is None else [images.names[i] for i in sequence]
    pixels = images.images[sequence]
    header = Header(model_hash=model.hash, spec=model.spec, n=n, chains=len(lengths), order=order,
                    input_levels=input_levels, seed_words=n_seed, bucket_bits=model.buckets.bits,
                    pixels_sha256=pixel_digest(pixels, names), versions=library_versions())
    archive = Archive(header, names, payload)
    sections = archive.sections()
    report = size_report(sections, n, model.spec)
    report.update({"order": order, "chains": len(lengths), "rounds": int(lengths[0]),
                   "initial_bits": 32 * n_seed, "compress_seconds": round(seconds, 2),
                   "tour_seconds": round(tour_seconds, 2), "compress_images_per_second": round(n / seconds, 1),
                   "model_hash": model.hash, "source": images.source})
    if names is not None:
        report["names_bits_per_image"] = 8 * len(sections["names"]) / n
        report["log2_n_factorial_per_image"] = float(np.log2(np.arange(1, n + 1)).sum() / n)
    if estimate:
        import torch
        from .evaluate import encode_all
        x_t = torch.from_numpy(x_all)
        # The estimate is the float model's: exact numerics' codes are integers in another unit.
        reuse = all_codes is not None and pm.numerics == "float32"
        codes_t = torch.from_numpy(all_codes) if reuse else encode_all(model.net, x_t)
        report.update(kl_bound_estimate(model, x_t, codes_t, sequence, lengths, order, progress))
        # The estimate prices the images; names are reported on their own.
        report["actual_over_estimate"] = report["nats_per_image_without_names"] / report["estimate_nats_per_image"]
    return b"".join(sections.values()), report


def kl_bound_estimate(model: Model, x_all, codes, sequence: np.ndarray, lengths: list[int], order: str,
                      progress: bool) -> dict:
    """The model's estimate of the same cost: reconstruction + KL along the chains (heads unconditional).
    `x_all` (N, C, H, W) and `codes` E(x) are torch tensors, in input order."""
    import torch
    from .evaluate import kl_along, reconstruction
    from .kl import kl_to_unconditional
    recon = reconstruction(model.net, x_all, codes, progress=progress)
    starts = chain_starts(lengths)
    is_head = np.zeros(len(sequence), dtype=bool)
    is_head[starts] = True
    if order == "original":
        is_head[:] = True
    seq = torch.from_numpy(sequence)
    kl = torch.zeros(len(sequence), dtype=torch.float64)
    heads = torch.from_numpy(np.flatnonzero(is_head))
    kl[heads] = kl_to_unconditional(codes[seq[heads]], model.unconditional)
    rest = torch.from_numpy(np.flatnonzero(~is_head))
    if len(rest):
        kl[rest] = kl_along(model.net, codes[seq[rest]], codes[seq[rest - 1]])
    n = len(sequence)
    dims = x_all[0].numel()
    total = recon.mean().item() + kl.mean().item()
    formula = "reconstruction + KL(unconditional)" if order == "original" else \
        "reconstruction + KL(tour), chain heads under the unconditional prior"
    return {"estimate_nats_per_image": total, "estimate_bits_per_dim": total / LN2 / dims,
            "estimate_reconstruction": recon.mean().item(), "estimate_kl": kl.mean().item(),
            "estimate_formula": formula, "estimate_n": n}


def write_output(images: ImageSet, header: Header, output: str, force: bool = False,
                 keep: tuple[Path, ...] = ()) -> str:
    """Folder archives become PNG files with their names (into a new or an existing folder: see
    fileio.write_folder); array archives a .npy file. `keep` (the archive read) is never overwritten."""
    out = Path(output)
    if images.names is not None:
        export_png(images, out, names=images.names, force=force, keep=list(keep))
        return str(out)
    arr = images.images[..., 0] if images.images.shape[-1] == 1 else images.images  # (N, H, W) for grey
    buf = io.BytesIO()
    np.save(buf, arr)
    write_bytes(out, buf.getvalue(), force, keep=list(keep))
    return str(out)




def seed_word_count(model: Model) -> int:
    return _seed_word_count(model.config.latent_dim, model.buckets.bits)


def size_report(sections: dict[str, bytes], n: int, spec: DataSpec) -> dict:
    total = sum(len(b) for b in sections.values())
    dims = n * spec.height * spec.width * spec.channels
    images_only = total - len(sections["names"]) + 4   # an archive without names keeps the 4-byte length
    return {"n": n, "bytes": total, "section_bytes": {k: len(v) for k, v in sections.items()},
            "bits_per_dim": 8 * total / dims, "nats_per_image": 8 * total * LN2 / n,
            "bytes_without_names": images_only, "nats_per_image_without_names": 8 * images_only * LN2 / n,
            "payload_nats_per_image": 8 * len(sections["payload"]) * LN2 / n}


def decompress(data: bytes | Archive, model: Model, where: str = "archive",
               progress: bool = True) -> tuple[ImageSet, dict]:
    """Decode an archive (its bytes, or as already parsed); returns the images (archive order, names if any)
    and the archive header."""
    archive = data if isinstance(data, Archive) else parse(data, where)
    header = check_header(archive, model, where)
    spec = model.spec
    lengths = chain_layout(header.n, header.chains)
    pm = numerics.for_model(model)
    with coding_threads(header.coding_threads):
        try:
            out, rest = decode_stream(pm, archive.payload, lengths, conditional=header.order == "tour",
                                      rounds=lambda r: bar(r, progress, desc="decompress", unit="round",
                                                           leave=False))
        except StackExhausted as e:
            raise AcnError(f"{where}: the payload ran out after {e.decoded} of the {header.n} images "
                           f"the archive claims: it is damaged; nothing was written") from None
    images = out.transpose(0, 2, 3, 1)
    seeds_back = np.array_equal(rest, seed_words(header.seed_words))
    if not seeds_back or pixel_digest(images, archive.names) != header.pixels_sha256:
        seen = ("the payload did not end on the seed words" if not seeds_back else
                "the decoded images do not match the archive's checksum")
        theirs, ours = fmt_versions(header.versions), fmt_versions(library_versions())
        versions = f"written with {theirs}; this is {ours}" if theirs != ours else "same library versions"
        raise AcnError(f"{where}: decoding diverged ({seen}): either the archive was altered and re-sealed, or "
                       f"this machine computes other probabilities than the writer's ({versions}); nothing "
                       f"was written")
    levels = spec.levels
    if header.input_levels == 256 and levels != 256:
        images, levels = level_grid(levels)[images].astype(np.uint8), 256
    return ImageSet(images, levels, archive.names, where), header


def fmt_versions(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))


def check_header(archive: Archive, model: Model, where: str) -> Header:
    """What the header must agree on with the model (archive.parse checked the rest)."""
    h = archive.header
    if h.model_hash != model.hash:
        raise AcnError(f"{where}: archive was made with model {h.model_hash[:12]} but the model given is "
                       f"{model.hash[:12]}")
    if h.spec != model.spec or h.bucket_bits != model.buckets.bits or h.seed_words != seed_word_count(model):
        raise AcnError(f"{where}: archive header does not match its model (data spec, bucket bits or seed "
                       f"words)")
    return h


def version_warning(header: Header) -> str | None:
    """A warning when the archive was written by other library versions (decoding may then diverge,
    which the checksum would catch)."""
    theirs, ours = header.versions, library_versions()
    if theirs != ours:
        return f"archive written with {fmt_versions(theirs)}; this is {fmt_versions(ours)}"
    return None
