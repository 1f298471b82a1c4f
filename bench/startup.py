"""Start-up of `acncodec decompress` on a one-image archive: this tree against another checkout, side by side.

    python bench/startup.py OTHER_TREE [--runs 7]

Each run is a fresh process (`python -m acncodec.cli decompress`), alternating between the two trees so both
see the same machine load; the median wall time of each is printed with the ratio, and a JSON record
(command, commit, machine) is written to bench/results/startup.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
from machine import cpu_model  # noqa: E402


def run(tree: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "acncodec.cli", *args], cwd=tree, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    other = Path(argv[0]).resolve()
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else 7
    times = {"this": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, tree in (("this", HERE), ("other", other)):
            run(tree, ["compress", "digits:all:1", str(tmp / f"{name}.acnz"), "--order", "original", "-q"])
        for k in range(runs):
            for name, tree in (("this", HERE), ("other", other)):
                out = tmp / f"{name}-{k}.npy"
                times[name].append(run(tree, ["decompress", str(tmp / f"{name}.acnz"), str(out), "-q"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    other_commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=other, capture_output=True,
                                  text=True).stdout.strip()
    record = {"command": "python bench/startup.py " + " ".join(argv), "git_commit": commit,
              "other_commit": other_commit, "machine": f"{cpu_model()}, {os.cpu_count()} cores",
              "runs": runs, "seconds": times, "median_seconds": med, "speedup": med["other"] / med["this"]}
    (HERE / "bench" / "results" / "startup.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"decompress of a one-image archive, median of {runs}: this tree {med['this']:.2f} s, "
          f"{other_commit[:7]} {med['other']:.2f} s: {record['speedup']:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
