"""Wall time and peak memory of compress and decompress with 1 and with W worker processes, in one script.

    python bench/scale_workers.py [--data binarized-mnist:all] [--workers 1,2] [--order tour]
                                  [--shard-images M] [--json OUT] [--md OUT]

Each step runs as `acncodec` in a fresh process (its default shards: one per 10,000 images), under one
measurement: wall time, the peak resident memory of the main process, and the largest peak among its worker
processes (each process' VmHWM, sampled every 0.25 s). Every archive is decoded and compared with the input as a set of
images (tour order returns them reordered). The speed-up is the ratio of the 1-worker time to the W-worker
time measured here. Records the command, commit and machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import provenance  # noqa: E402

# Runs the command line in-process and reports its own peak memory and its worker processes' (VmHWM, the peak
# of each process' own memory; getrusage would count what a forked child shared with its parent before exec).
# (Its first part is an f-string, naming this folder for `machine.hwm`; the rest has f-strings of its own.)
CHILD = f"""
import json, os, sys, threading, time
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from machine import hwm
from acncodec.cli import main
""" + """
workers, done = {}, threading.Event()
def watch():
    me = os.getpid()
    while not done.wait(0.25):
        try:
            kids = open(f"/proc/{me}/task/{me}/children").read().split()
        except OSError:
            kids = []
        for pid in kids:
            workers[pid] = max(workers.get(pid, 0.0), hwm(pid))
threading.Thread(target=watch, daemon=True).start()
started = time.perf_counter()
try:
    main(sys.argv[2:], standalone_mode=False)
finally:
    done.set()
    out = {"seconds": time.perf_counter() - started, "peak_rss_mib": hwm(os.getpid()),
           "peak_worker_rss_mib": max(workers.values(), default=0.0), "worker_processes": len(workers)}
    open(sys.argv[1], "w").write(json.dumps(out))
"""


def measure(args: list[str], work: Path) -> dict:
    stats = work / "stats.json"
    subprocess.run([sys.executable, "-c", CHILD, str(stats), *args], check=True)
    return json.loads(stats.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="binarized-mnist:all")
    p.add_argument("--workers", default="1,2")
    p.add_argument("--order", default="tour")
    p.add_argument("--shard-images", default=None, help="images per shard (default: compress's)")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None)
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for w in [int(x) for x in args.workers.split(",")]:
            archive, restored = work / f"w{w}.acnz", work / f"w{w}.npy"
            c = measure(["compress", args.data, str(archive), "--workers", str(w), "--order", args.order,
                         "--no-estimate", "-q", "--json", str(work / f"w{w}.json")]
                        + ([] if args.shard_images is None else ["--shard-images", args.shard_images]), work)
            d = measure(["decompress", str(archive), str(restored), "--workers", str(w), "-q"], work)
            import numpy as np
            import acncodec
            from acncodec.coding.multiset import image_keys
            want = acncodec.load(args.data).images[..., 0]
            got = np.load(restored)
            verified = sorted(image_keys(got[..., None])) == sorted(image_keys(want[..., None]))
            report = json.loads((work / f"w{w}.json").read_text())
            rows.append({"workers": w, "shards": report.get("shards", 1), "bytes": archive.stat().st_size,
                         "compress": c, "decompress": d, "verified": verified})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for r in rows:
        r["compress_speedup"] = base["compress"]["seconds"] / r["compress"]["seconds"]
        r["decompress_speedup"] = base["decompress"]["seconds"] / r["decompress"]["seconds"]
    record = {"data": args.data, "order": args.order, "rows": rows, **provenance(sys.argv)}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    if args.md:
        lines = [f"# Workers: {args.data}, {args.order} order", "",
                 f"`{record['command']}` at {record['git_commit'][:12]} on {record['machine_provenance']}", "",
                 "| workers | shards | archive bytes | compress s | speed-up | peak MiB main / worker | "
                 "decompress s | speed-up | peak MiB main / worker | exact |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            c, d = r["compress"], r["decompress"]
            lines.append(f"| {r['workers']} | {r['shards']} | {r['bytes']:,} | {c['seconds']:.1f} | "
                         f"{r['compress_speedup']:.2f}x | {c['peak_rss_mib']:.0f} / {c['peak_worker_rss_mib']:.0f} | "
                         f"{d['seconds']:.1f} | {r['decompress_speedup']:.2f}x | {d['peak_rss_mib']:.0f} / "
                         f"{d['peak_worker_rss_mib']:.0f} | {r['verified']} |")
        Path(args.md).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
