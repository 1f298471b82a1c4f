"""One million synthetic 28x28 binary images compressed in shards, a run that may span several stops.

    python bench/million.py [--images 1000000] [--workers 2] [--work ~/.cache/acncodec-runs/million]
                            [--json bench/results/million.json]

The images are binarized MNIST (all 60,000 of the project's split), copy k shifted by the k-th of 17 fixed
offsets of up to two pixels (zeros shifted in), so each is a digit and nearly all are distinct. They are written
once into WORK/images.npy, which compress memory-maps.

Each call runs `acncodec compress WORK/images.npy` with the shipped binarized-MNIST model, its default shards
(10,000 images), `--workers`, `--checkpoint WORK/checkpoint` and no estimate, in a child process group whose
processes' peak resident memory (VmHWM) this script samples. A call that is stopped (SIGTERM or SIGINT to this
script: the session ends, the machine is needed) leaves the finished shards in the checkpoint, and the next call
resumes from them, without planning again. Every
call appends its wall time, its peaks and the shards it found done to WORK/runs.jsonl. The call that finishes
decodes three shards (first, middle, last) with `decompress --shard` (which checks each against its own
checksum) and checks that each decoded image is one of the input's, then
writes the record: the coding time summed over the calls, the largest peak of any process in any call, and the
archive's size.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import hwm, provenance  # noqa: E402

OFFSETS = [(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1),
           (0, 2), (2, 0), (0, -2), (-2, 0), (2, 2), (-2, -2), (2, -2), (-2, 2)]


def shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Images (N, H, W, C) moved by (dy, dx), zeros shifted in."""
    out = np.zeros_like(images)
    h, w = images.shape[1:3]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        images[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def synthetic(path: Path, count: int) -> None:
    """The synthetic dataset as a .npy, written copy by copy (bounded memory)."""
    if path.exists():
        if np.load(path, mmap_mode="r").shape[0] == count:
            return
        raise SystemExit(f"{path}: holds another count of images; remove it or choose another --work")
    import acncodec
    base = acncodec.load("binarized-mnist:all").images
    if count > len(OFFSETS) * len(base):
        raise SystemExit(f"at most {len(OFFSETS) * len(base):,} images")
    tmp = path.with_suffix(".partial.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count,) + base.shape[1:])
    for k, (dy, dx) in enumerate(OFFSETS):
        start = k * len(base)
        if start >= count:
            break
        part = shifted(base, dy, dx)[:count - start]
        out[start:start + len(part)] = part
    out.flush()
    del out
    os.replace(tmp, path)


def descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        try:
            kids = [int(k) for q in [stack.pop()] for k in open(f"/proc/{q}/task/{q}/children").read().split()]
        except OSError:
            kids = []
        out += kids
        stack += kids
    return out


def measure(args: list[str]) -> dict:
    """Run the command line in its own process group, sampling the peak memory of it and of every process it
    starts from here, so that the record survives a stop: SIGTERM or SIGINT to this script kills the group (the
    checkpoint keeps what was finished) and the call is still recorded."""
    proc = subprocess.Popen([sys.executable, "-m", "acncodec.cli", *args], start_new_session=True)
    peaks, stopped = {}, []

    def stop(sig, frame):
        stopped.append(sig)
        os.killpg(proc.pid, signal.SIGKILL)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    started = time.perf_counter()
    while proc.poll() is None:
        for pid in [proc.pid] + descendants(proc.pid):
            peaks[pid] = max(peaks.get(pid, 0.0), hwm(pid))
        time.sleep(0.5)
    main_peak = peaks.pop(proc.pid, 0.0)
    return {"returncode": proc.returncode, "seconds": time.perf_counter() - started, "peak_rss_mib": main_peak,
            "peak_worker_rss_mib": max(peaks.values(), default=0.0), "worker_processes": len(peaks),
            "stopped_by_signal": int(stopped[0]) if stopped else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path.home() / ".cache" / "acncodec-runs" / "million")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    data, archive, checkpoint = work / "images.npy", work / "million.acnz", work / "checkpoint"
    synthetic(data, args.images)
    runs_log = work / "runs.jsonl"
    if not archive.exists():
        done_before = len(list(checkpoint.glob("shard-*.npz"))) if checkpoint.exists() else 0
        started = time.time()
        stats = measure(["compress", str(data), str(archive), "--model", "binarized-mnist", "--order", "tour",
                         "--workers", str(args.workers), "--checkpoint", str(checkpoint), "--no-estimate", "-q",
                         "--json", str(work / "report.json")])
        code = stats["returncode"]
        run = {"started": started, "shards_done_before": done_before, "workers": args.workers, **stats,
               **provenance(sys.argv)}
        with runs_log.open("a") as f:
            f.write(json.dumps(run) + "\n")
        print(json.dumps({k: run[k] for k in ("returncode", "shards_done_before", "seconds", "peak_rss_mib",
                                              "peak_worker_rss_mib") if k in run}), flush=True)
        if code != 0:
            raise SystemExit(f"compress stopped (exit {code}); run this again to resume from {checkpoint}")
    report = json.loads((work / "report.json").read_text())
    runs = [json.loads(line) for line in runs_log.read_text().splitlines() if line.strip()]
    import hashlib
    images = np.load(data, mmap_mode="r")
    digest = lambda im: hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest()
    inputs = {digest(im) for i in range(0, len(images), 100_000) for im in np.asarray(images[i:i + 100_000])}
    checked = []
    for k in sorted({0, report["shards"] // 2, report["shards"] - 1}):
        # decompress checks the shard's pixels against its own checksum; this checks them against the input
        out = work / f"shard{k}.npy"
        out.unlink(missing_ok=True)
        r = subprocess.run([sys.executable, "-m", "acncodec.cli", "decompress", str(archive), str(out),
                            "--model", "binarized-mnist", "--shard", str(k), "-q"])
        got = np.load(out) if r.returncode == 0 else np.zeros((0,) + images.shape[1:], np.uint8)
        checked.append({"shard": k, "decoded": r.returncode == 0, "images": int(len(got)),
                        "expected_images": int(report["shard_images"][k]),
                        "all_in_input": all(digest(im) in inputs for im in got)})
        out.unlink(missing_ok=True)
    record = {
        "images": args.images, "workers": args.workers, "archive_bytes": archive.stat().st_size,
        "bits_per_image": 8 * archive.stat().st_size / args.images, "shards": report["shards"],
        "coding_seconds_summed": sum(r.get("seconds", 0.0) for r in runs), "calls": len(runs),
        "peak_rss_mib_any_process": max(max(r.get("peak_rss_mib", 0.0), r.get("peak_worker_rss_mib", 0.0))
                                        for r in runs),
        "runs": runs, "shards_checked": checked, **provenance(sys.argv)}
    print(json.dumps({k: v for k, v in record.items() if k not in ("runs",)}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
