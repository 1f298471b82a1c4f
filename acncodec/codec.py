"""compress / decompress: the whole dataset as one bits-back ANS stack (the Python API behind the CLI).

Alice orders the data by the greedy tour through their codes (or keeps the input order), splits the order
into B chains of staggered lengths and codes round by round, last round first; Bob decodes round by round,
re-encoding each round to condition the next. See coding/protocol.py for one round and archive.py for the file.

Order modes (what the archive records):
- tour: the ACN protocol; data come back in tour order, each latent under the prior of its predecessor's code.
- original: the input order; every latent under the unconditional prior p(z).
- set: the data as a multiset (coding/set_order.py). Every latent under p(z), and bits back on the order:
  Alice draws each round's data from the stack, Bob pushes their ranks back, so the archive is smaller by
  log N! - sum_i log m_i! (m_i the multiplicities of identical images). Data come back in canonical order:
  sorted by their pixel bytes (the (H, W, C) array at the model's levels, row-major), identical images in
  input order. A folder's names then come in that order: the names section holds the sorted names plus the
  permutation that pairs them with the images, about log2(N!) bits, which is what the refund gave back; for
  folders of distinct images set therefore costs about what original does.
- associative: the set order, with each latent under a mixture of p(z) and the conditional priors of the data
  already decoded, bits back on the component (coding/set_order.py). Same output order as set.
`auto` (the default) picks the mode with the smallest estimated archive, names included (`order_costs`).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from .archive import Archive, describe, parse
from .coding import exact_numerics, numerics
from .coding.order import (active_counts, chain_layout, chain_starts, default_chains, round_positions,
                           seed_word_count as _seed_word_count, seed_words)
from .coding.codecs import StackExhausted
from .coding.multiset import canonical_order, image_keys, order_information_nats
from .coding.protocol import decode_stream, encode_stream
from .compare import compare_images  # noqa: F401  (its home is compare.py; kept importable here)
from .coding.set_order import NEIGHBOURS, decode_set_stream, encode_set_stream
from .data import DataSpec, ImageSet, export_png, fit_levels, level_grid
from .errors import AcnError
from .fileio import write_bytes
from .header import CODING_THREADS, MAX_CHAINS, MAX_SEED_WORDS, MIN_BITS_PER_IMAGE, ORDERS, Header
from .modelfile import Model
from .names import check_names, encode_names
from .progress import bar

CHOICES = ("auto",) + ORDERS     # what compress accepts: auto picks one of header.ORDERS
#: auto's candidates in order of preference when estimates tie (n = 1, say): the input order first.
AUTO_PREFERENCE = ("original", "set", "tour", "associative")
SET_ORDERS = ("set", "associative")
#: More seed words under the first rank drawn (set orders) and the first component drawn (associative).
EXTRA_SEED_WORDS = {"set": 1, "associative": 2}
#: Monte-Carlo draws per datum for the associative order's estimate.
ASSOCIATIVE_SAMPLES = 32
#: constriction's uniform model codes alphabets below 2^24: the set orders' ranks run up to N.
SET_MAX_N = (1 << 24) - 1
LN2 = math.log(2)
ENCODE_BATCH = 256   # images per encoder call when coding all data for the tour

__all__ = ["active_counts", "chain_layout", "default_chains", "round_positions", "seed_words"]



def probability_model(model) -> numerics.ProbabilityModel:
    """The model's numerics (`numerics.for_model`); tables out of their ranges or shapes, which only a damaged
    or crafted model file can hold (its hash covers them), are a one-line error."""
    try:
        return numerics.for_model(model)
    except ValueError as e:
        raise AcnError(f"model {model.hash[:12]}: {e}") from None

def library_versions() -> dict:
    from importlib.metadata import version
    return {name: version(name) for name in ("acncodec", "torch", "numpy", "constriction")}


DIGEST_BLOCK = 4096   # images hashed at a time: no whole-dataset copy when they are read in another order


def pixel_digest(images: np.ndarray, names: list[str] | None, sequence: np.ndarray | None = None) -> str:
    """SHA-256 of the pixels (of images[sequence] when given) and the names, as the archive header holds it."""
    sequence = np.arange(len(images)) if sequence is None else sequence
    h = hashlib.sha256()
    for i in range(0, len(sequence), DIGEST_BLOCK):
        h.update(np.ascontiguousarray(images[sequence[i:i + DIGEST_BLOCK]], dtype=np.uint8).tobytes())
    h.update(json.dumps(names, ensure_ascii=False).encode())
    return h.hexdigest()


#: The BLAS pool's width while coding (None: the library's own choice), which is also the exact numerics' own
#: thread count (`exact_numerics.side_by_side`). Their results do not depend on it; their speed does: see
#: `bench/coding_speed.py --blas-threads` and bench/results/speed-threads.md.
CODING_BLAS_THREADS: int | None = None


@contextmanager
def coding_threads(threads: int, pin_torch: bool = True):
    """Torch's thread count for the float numerics' coding (its float results depend on it), and the threads
    of the exact numerics: the BLAS pool's width (`CODING_BLAS_THREADS`) sets how many threads share their
    work out (`exact_numerics.side_by_side`). The exact numerics run without torch: it is pinned only where it
    is loaded, and only with `pin_torch` (an exact compress uses torch only for the sender's own choices, the
    tour and the estimate, which no receiver recomputes: it keeps torch's own thread count)."""
    with ExitStack() as stack:
        if CODING_BLAS_THREADS is not None:
            from threadpoolctl import threadpool_limits
            stack.enter_context(threadpool_limits(limits=CODING_BLAS_THREADS, user_api="blas"))
        stack.enter_context(exact_numerics.side_by_side())
        torch = sys.modules.get("torch")
        if torch is None or not pin_torch:
            yield
            return
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


def compress(images: ImageSet, model: Model, order: str = "auto", chains: int | None = None,
             progress: bool = True, estimate: bool = True) -> tuple[bytes, dict]:
    """Compress a dataset into one stream; returns the archive bytes and a report (sizes, costs, timings)."""
    archive, report, _ = compress_archive(images, model, order, chains, progress, estimate)
    return archive.to_bytes(), report


def compress_archive(images: ImageSet, model: Model, order: str = "auto", chains: int | None = None,
                     progress: bool = True, estimate: bool = True, versions: dict | None = None,
                     ) -> tuple[Archive, dict, np.ndarray]:
    """`compress`, returning the Archive, the report and the archive order (`images.images[sequence]` are the
    images as Bob writes them out). `versions`: the libraries named in the header (default: these); a shard
    of a sharded archive names none, its index does."""
    if order not in CHOICES:
        raise AcnError(f"unknown order {order!r}; choose one of {', '.join(CHOICES)}")
    if len(images) == 0:
        raise AcnError(f"{images.source}: no images to compress")
    if images.names is not None:
        check_names(images.names, images.source)    # by decompress's rules, before any coding work
    if chains is not None and not 1 <= chains <= MAX_CHAINS:
        raise AcnError(f"chains must be 1..{MAX_CHAINS}, got {chains}")
    input_levels = images.levels
    images = match_model(images, model)
    n = len(images)
    if order in SET_ORDERS and n > SET_MAX_N:
        raise AcnError(f"{images.source}: {order} order codes at most {SET_MAX_N:,} images, got {n:,}")
    chains = default_chains(n) if chains is None else max(1, int(chains))
    lengths = chain_layout(n, chains)
    pm = probability_model(model)
    requested = order
    if order == "associative" and not pm.has_pointer_weights:
        raise AcnError(f"numerics {pm.numerics} cannot code the associative order")
    started = time.perf_counter()
    rounds = lambda r: bar(r, progress, desc="compress", unit="round", leave=False)
    with coding_threads(CODING_THREADS, pin_torch=not pm.batch_invariant):
        x_all = channels_first(images.images)
        tour_started = time.perf_counter()
        all_codes = all_codes_float = tour = costs = None   # serve the choice and the estimate: made once
        if order in ("tour", "auto"):
            from .tour import tour_for
            all_codes = encode_all(pm, x_all)
            tour = tour_for(all_codes)
        tour_seconds = time.perf_counter() - tour_started
        if order == "auto":
            all_codes_float = analysis_codes(model, pm, x_all, all_codes)
            order, costs = choose_order(model, pm, images, all_codes_float, tour, lengths)
        if order == "tour":
            # Refined under the step's KL once the tour is chosen (the choice was made on the distance tour, and
            # refining only lowers the tour's cost, so it stands).
            refine_started = time.perf_counter()
            from .kl import step_costs
            from .tour import refined
            if all_codes_float is None:
                all_codes_float = analysis_codes(model, pm, x_all, all_codes)
            tour = refined(all_codes, tour, step_costs(model.net.prior, all_codes_float))
            if costs is not None:
                costs["tour"] = order_costs(model, images, all_codes_float, tour, lengths, only="tour")["tour"]
            tour_seconds += time.perf_counter() - refine_started
        # Where the sender's pass is the full pass, the estimate's reconstruction is read off it.
        meter = [] if estimate and pm.full_pass_exact else None
        if order in SET_ORDERS:
            sequence = canonical_order(image_keys(images.images))   # the order Bob writes the data out in
            code = lambda seeds: encode_set_stream(pm, images.images, lengths, order == "associative", seeds,
                                                   rounds=rounds, meter=meter)
        else:
            sequence = tour if order == "tour" else np.arange(n)
            code = lambda seeds: encode_stream(pm, x_all[sequence], lengths, conditional=order == "tour",
                                               seed_count=seeds, rounds=rounds, meter=meter,
                                               codes=None if all_codes is None else all_codes[sequence])
        payload, n_seed = code_on_enough_seed_words(code, seed_word_count(model, order), images.source)
    if n > 32 * len(payload) // MIN_BITS_PER_IMAGE:
        raise AcnError(f"{images.source}: the data code to under {MIN_BITS_PER_IMAGE} bit per image, "
                       f"which the archive format does not allow")
    seconds = time.perf_counter() - started
    # Archive order is the order Bob writes the data out in: chain by chain (the sequence itself) for tour and
    # original, the canonical order for the set orders.
    names = None if images.names is None else [images.names[i] for i in sequence]
    header = Header(model_hash=model.hash, spec=model.spec, n=n, chains=len(lengths), order=order,
                    input_levels=input_levels, seed_words=n_seed, bucket_bits=model.bucket_bits,
                    pixels_sha256=pixel_digest(images.images, names, sequence),
                    versions=library_versions() if versions is None else versions)
    archive = Archive(header, names, payload)
    sections = archive.sections()
    report = size_report(sections, n, model.spec)
    report.update({"order": order, "order_requested": requested, "chains": len(lengths),
                   "rounds": int(lengths[0]), "initial_bits": 32 * n_seed, "compress_seconds": round(seconds, 2),
                   "tour_seconds": round(tour_seconds, 2), "compress_images_per_second": round(n / seconds, 1),
                   "model_hash": model.hash, "source": images.source})
    if names is not None:
        report["names_bits_per_image"] = 8 * len(sections["names"]) / n
        report["log2_n_factorial_per_image"] = float(np.log2(np.arange(1, n + 1)).sum() / n)
    if order in SET_ORDERS:
        report["order_refund_nats_per_image"] = order_information_nats(image_keys(images.images)) / n
    if estimate or costs is not None:
        import torch
        from .evaluate import reconstruction
        x_t = tensor_view(x_all)
        if all_codes_float is None:
            all_codes_float = analysis_codes(model, pm, x_all, all_codes)
        codes_t = torch.from_numpy(all_codes_float)
        if costs is None:
            costs = order_costs(model, images, codes_t.numpy(), tour, lengths, only=order)
        if not estimate:
            recon = None
        elif meter is not None:   # -ln r(x | z) with z drawn from q(z | x), as `reconstruction` computes it
            recon = float(np.concatenate(meter).sum() / n)
        else:
            recon = reconstruction(model.net, x_t, codes_t, progress=progress).mean().item()
        if requested == "auto":
            # What each mode was estimated at, names included. The choice needs no reconstruction (it is the
            # same in every mode), so it is added only for the report, and only when estimating.
            report["order_estimates_nats_per_image"] = {m: c["nats"] / n + (recon or 0.0) for m, c in costs.items()}
            report["order_estimates_include_reconstruction"] = recon is not None
        if estimate:
            report.update(kl_bound_estimate(costs[order], recon, n, model.spec))
            report["estimate_reconstruction_from"] = "coding pass" if meter is not None else "float network"
            # The estimate prices the images; names are reported on their own.
            report["actual_over_estimate"] = report["nats_per_image_without_names"] / report["estimate_nats_per_image"]
    return archive, report, sequence


def choose_order(model: Model, pm, images: ImageSet, codes: np.ndarray, tour: np.ndarray | None,
                 lengths: list[int]) -> tuple[str, dict]:
    """auto's choice: the order mode with the smallest estimated archive (`order_costs`), among those the
    numerics and the data size allow; ties go by AUTO_PREFERENCE. Returns the mode and every candidate's cost."""
    n = len(images)
    candidates = [m for m in AUTO_PREFERENCE if (m not in SET_ORDERS or n <= SET_MAX_N)
                  and (m != "associative" or pm.has_pointer_weights)]
    costs = {m: c for m, c in order_costs(model, images, codes, tour, lengths).items() if m in candidates}
    return min(candidates, key=lambda m: costs[m]["nats"]), costs


def encode_all(pm, x: np.ndarray) -> np.ndarray:
    """The coding numerics' codes of images x (N, C, H, W), in batches."""
    return np.concatenate([pm.encode(x[i:i + ENCODE_BATCH]) for i in range(0, len(x), ENCODE_BATCH)])


def tensor_view(a: np.ndarray):
    """A torch view of images that are only read. The data may be read-only (an IDX file read from bytes), which
    torch warns about on every view; nothing here writes to them, so the warning says nothing and is dropped."""
    import warnings
    import torch
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


def analysis_codes(model: Model, pm, x_all: np.ndarray, codes: np.ndarray | None) -> np.ndarray:
    """Codes for the estimates, the order choice and the tour's refinement, in the unit the float model's priors
    expect: the coding codes themselves, rescaled where they are integers (exact numerics); the float encoder runs
    only when there are none."""
    if codes is not None:
        return pm.float_codes(codes)
    import torch
    from .evaluate import encode_all
    return encode_all(model.net, tensor_view(x_all)).numpy()


def order_costs(model: Model, images: ImageSet, codes: np.ndarray, tour: np.ndarray | None,
                lengths: list[int], only: str | None = None) -> dict[str, dict]:
    """Estimated cost of each order mode apart from the reconstruction (the same in every mode), in nats for
    the whole dataset: the latents' KL along the mode's chains (net of the order refund in the set orders),
    plus the names section's actual bytes in the mode's archive order. `codes`: E(x) of every image, in
    input order."""
    import torch
    from .evaluate import associative_set_kl, kl_along
    from .kl import kl_to_unconditional
    n = len(codes)
    codes_t = torch.from_numpy(np.asarray(codes))
    # KL to the unconditional prior per datum, each from the same fixed draws: the tour alone needs only its
    # chain heads' (this Monte Carlo is most of the function's time)
    kl_uncond = None if only == "tour" else kl_to_unconditional(codes_t, model.unconditional)
    keys = image_keys(images.images)
    out = {}
    for mode in ORDERS if only is None else (only,):
        if mode == "tour":
            if tour is None:
                from .tour import tour_for
                tour = tour_for(np.asarray(codes))
            starts = chain_starts(lengths)
            rest = np.setdiff1d(np.arange(n), starts)
            seq = torch.from_numpy(tour)
            heads = seq[starts]
            kl = (kl_uncond[heads] if kl_uncond is not None
                  else kl_to_unconditional(codes_t[heads], model.unconditional)).sum().item()
            if len(rest):
                kl += kl_along(model.net, codes_t[seq[rest]], codes_t[seq[rest - 1]]).sum().item()
            formula, sequence = "reconstruction + KL(tour), chain heads under the unconditional prior", tour
        elif mode == "original":
            kl, formula, sequence = kl_uncond.sum().item(), "reconstruction + KL(unconditional)", np.arange(n)
        elif mode == "set":
            sequence = canonical_order(keys)
            kl = kl_uncond.sum().item() - order_information_nats(keys)
            formula = "reconstruction + KL(unconditional) - (log N! - sum log m_i!) (order refund)"
        else:
            sequence = canonical_order(keys)
            # The decode order is Alice's draws, as good as random: a fixed-seed permutation stands in for it.
            parts = associative_set_kl(model.net, model.unconditional, codes_t, lengths,
                                       np.random.default_rng(0).permutation(n), [NEIGHBOURS],
                                       samples=ASSOCIATIVE_SAMPLES)
            kl = n * (parts["kl_held_mixture"][str(NEIGHBOURS)] + parts["pointer"]) - order_information_nats(keys)
            formula = (f"reconstruction + KL(q || p(z) + the {NEIGHBOURS} nearest decoded neighbours' priors) "
                       f"+ log(components) - (log N! - sum log m_i!), Monte Carlo over a random decode order")
        names = 0 if images.names is None else 4 + len(encode_names([images.names[i] for i in sequence]))
        out[mode] = {"kl": kl, "names_bytes": names, "nats": kl + 8 * names * LN2, "formula": formula}
    return out


def kl_bound_estimate(cost: dict, recon: float, n: int, spec: DataSpec) -> dict:
    """The model's estimate of the images' cost in one order mode (names are reported on their own)."""
    dims = spec.height * spec.width * spec.channels
    total = recon + cost["kl"] / n
    return {"estimate_nats_per_image": total, "estimate_bits_per_dim": total / LN2 / dims,
            "estimate_reconstruction": recon, "estimate_kl": cost["kl"] / n,
            "estimate_formula": cost["formula"], "estimate_n": n}


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




def code_on_enough_seed_words(code, seeds: int, source: str) -> tuple[np.ndarray, int]:
    """Run `code(seed_count) -> words`, starting again on twice the seed words while a pop would drain the
    stack (up to MAX_SEED_WORDS). The model's count covers a typical datum's bits-back pop, not every draw: a
    latent drawn from the tail of q(z | x), or a set order's first draws (log2 N bits each), can cost more.
    It happens in the rounds the sender codes first, so a restart costs little. Returns (words, seed count)."""
    while True:
        try:
            return code(seeds), seeds
        except StackExhausted as e:
            if seeds >= MAX_SEED_WORDS:
                raise AcnError(f"{source}: {MAX_SEED_WORDS} seed words did not cover a bits-back pop "
                               f"(round {e.round}); try another --chains") from None
            seeds = min(2 * seeds, MAX_SEED_WORDS)


def seed_word_count(model: Model, order: str = "tour") -> int:
    return _seed_word_count(model.config.latent_dim, model.bucket_bits) + EXTRA_SEED_WORDS.get(order, 0)


def size_report(sections: dict[str, bytes], n: int, spec: DataSpec) -> dict:
    total = sum(len(b) for b in sections.values())
    dims = n * spec.height * spec.width * spec.channels
    images_only = total - len(sections["names"]) + 4   # an archive without names keeps the 4-byte length
    return {"n": n, "bytes": total, "section_bytes": {k: len(v) for k, v in sections.items()},
            "bits_per_dim": 8 * total / dims, "nats_per_image": 8 * total * LN2 / n,
            "bytes_without_names": images_only, "nats_per_image_without_names": 8 * images_only * LN2 / n,
            "payload_nats_per_image": 8 * len(sections["payload"]) * LN2 / n}


def decompress(data: bytes | Archive, model: Model, where: str = "archive",
               progress: bool = True, input_levels: bool = True) -> tuple[ImageSet, dict]:
    """Decode a one-stream archive (its bytes, or as already parsed); returns the images (archive order, names
    if any) and the archive header. `input_levels` False: at the model's levels, not converted back to 8 bits
    when the input had them (a shard's images, converted once all are checked)."""
    archive = data if isinstance(data, Archive) else parse(data, where)
    if not isinstance(archive, Archive):
        raise AcnError(f"{where}: a sharded archive is read with sharding.decompress")
    header = check_header(archive, model, where)
    spec = model.spec
    lengths = chain_layout(header.n, header.chains)
    pm = probability_model(model)
    rounds = lambda r: bar(r, progress, desc="decompress", unit="round", leave=False)
    with coding_threads(header.coding_threads):
        try:
            if header.order in SET_ORDERS:
                out, rest = decode_set_stream(pm, archive.payload, lengths, header.order == "associative",
                                              rounds=rounds)
            else:
                out, rest = decode_stream(pm, archive.payload, lengths, conditional=header.order == "tour",
                                          rounds=rounds)
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
    decoded = ImageSet(images, spec.levels, archive.names, where)
    return (to_input_levels(decoded, header.input_levels) if input_levels else decoded), header


def to_input_levels(images: ImageSet, input_levels: int) -> ImageSet:
    """Decoded images back on the input's grid: 8-bit when the input was 8-bit and the model has fewer levels
    (the documented grid conversion, exact both ways)."""
    if input_levels == 256 and images.levels != 256:
        return ImageSet(level_grid(images.levels)[images.images].astype(np.uint8), 256, images.names,
                        images.source)
    return images


def fmt_versions(versions: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))


def check_header(archive: Archive, model: Model, where: str) -> Header:
    """What the header must agree on with the model (archive.parse checked the rest)."""
    h = archive.header
    if h.model_hash != model.hash:
        raise AcnError(f"{where}: archive was made with model {h.model_hash[:12]} but the model given is "
                       f"{model.hash[:12]}")
    # The sender starts on more seed words when the model's count does not cover her first pops.
    seeds_ok = seed_word_count(model, h.order) <= h.seed_words <= MAX_SEED_WORDS
    if h.spec != model.spec or h.bucket_bits != model.bucket_bits or not seeds_ok:
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
