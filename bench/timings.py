"""How long the README's everyday commands take here: the test suite and examples/python_api.py.

Usage: python bench/timings.py [--out bench/results/timings.json]
Each command runs once, from the repository root, with this Python; the record keeps the commands, their wall
times, the load average before and after (the development machine's two cores are shared), the commit and the
machine. The README quotes these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"test suite": [sys.executable, "-m", "pytest", "-q"],
            "examples/python_api.py": [sys.executable, "examples/python_api.py"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench/results/timings.json"))
    args = parser.parse_args()
    rows = {}
    for name, command in COMMANDS.items():
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        rows[name] = {"command": " ".join(["python"] + command[1:]), "exit_code": done.returncode,
                      "seconds": round(time.perf_counter() - started, 1), "load_before": load_before,
                      "load_after": os.getloadavg()[0], "last_line": (done.stdout.strip().splitlines() or [""])[-1]}
        print(f"{name}: {rows[name]['seconds']} s, exit {done.returncode}: {rows[name]['last_line']}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    record = {"what": __doc__.split("\n\n")[0], "runs": rows, "commit": commit,
              "machine": f"{cpu_model()}, {os.cpu_count()} cores, {platform.platform()}",
              "command": "python bench/timings.py " + " ".join(sys.argv[1:])}
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
