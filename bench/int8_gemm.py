"""Is an 8-bit integer matrix product (torch._int_mm, int8 x int8 -> int32) exact on every CPU, and how fast is
it against the float64 product the exact numerics use today?

    python bench/int8_gemm.py

Each instruction set is emulated in a fresh process (DNNL_MAX_CPU_ISA, ATEN_CPU_CAPABILITY). Operands are
random and extreme (every entry -128, or 127 against -128), of full 8-bit range and of 7-bit range
([-64, 63]); the product is compared with an int64 one. Without VNNI, x86 kernels multiply pairs of bytes
into a saturating 16-bit sum, so full-range operands can come out wrong; 7-bit ones cannot overflow it.
Speed: one thread, (512 x 480) @ (480 x 64), the shape of a decoder layer at batch 512, against float64 and
float32 products of the same shape in the same process. Writes bench/results/int8-gemm.{json,md}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import provenance  # noqa: E402

SETTINGS = {"native": {}, "AVX2": {"DNNL_MAX_CPU_ISA": "AVX2"}, "SSE41": {"DNNL_MAX_CPU_ISA": "SSE41"},
            "ATen default": {"ATEN_CPU_CAPABILITY": "default"}}

PROBE = r"""
import json, time, torch
torch.set_num_threads(1)
def exact(lo, hi, trials=12):
    ok = True
    for t in range(trials):
        g = torch.Generator().manual_seed(t)
        m, k, n = 64 + t, 480 + 7 * t, 64
        a = torch.randint(lo, hi + 1, (m, k), dtype=torch.int8, generator=g)
        b = torch.randint(lo, hi + 1, (k, n), dtype=torch.int8, generator=g)
        if t == 0: a[:] = lo; b[:] = lo
        if t == 1: a[:] = hi; b[:] = lo
        ok &= torch.equal(torch._int_mm(a, b).long(), a.long() @ b.long())
    return bool(ok)
m, k, n = 512, 480, 64
a = torch.randint(-64, 64, (m, k), dtype=torch.int8); b = torch.randint(-64, 64, (k, n), dtype=torch.int8)
a64, b64, a32, b32 = a.double(), b.double(), a.float(), b.float()
rate = {}
for name, f in [("int8", lambda: torch._int_mm(a, b)), ("float64", lambda: a64 @ b64), ("float32", lambda: a32 @ b32)]:
    f(); best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(40): f()
        best = min(best, (time.perf_counter() - t) / 40)
    rate[name] = 2 * m * k * n / best / 1e9
print(json.dumps({"exact_8bit": exact(-128, 127), "exact_7bit": exact(-64, 63), "gops": rate}))
"""


def main() -> int:
    rows = {}
    for name, env in SETTINGS.items():
        out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True,
                             text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(name, rows[name], flush=True)
    record = {**provenance(), "settings": SETTINGS, "rows": rows}
    (HERE / "results" / "int8-gemm.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| CPU as | exact, 8-bit operands | exact, 7-bit operands | int8 GOP/s | float64 GFLOP/s | "
             "float32 GFLOP/s | int8 / float64 |", "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        g = r["gops"]
        lines.append(f"| {name} | {'yes' if r['exact_8bit'] else 'NO'} | {'yes' if r['exact_7bit'] else 'NO'} | "
                     f"{g['int8']:.0f} | {g['float64']:.0f} | {g['float32']:.0f} | {g['int8'] / g['float64']:.1f}x |")
    (HERE / "results" / "int8-gemm.md").write_text(
        "# 8-bit integer matrix products: exact where, and how fast\n\n"
        f"`{record['command']}` at {record['git_commit']} on {record['machine_provenance']}. One thread; each "
        "row a fresh process with the CPU emulated by the libraries' switches (script docstring).\n\n"
        + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
