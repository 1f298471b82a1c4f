"""The machine a benchmark ran on, for its records."""

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def git_commit() -> str:
    """The checkout's commit, with "-dirty" when tracked files differ from it. bench/results is left out of
    the comparison: a benchmark writes its own records there before it writes the record that cites the
    commit, and those are its outputs, not a change to the code that made them."""
    import subprocess
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", ".", ":(exclude)bench/results"], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def blas() -> str:
    """The BLAS kernels matrix products run on here (threadpoolctl: numpy's library and the one the compiled
    kernels call), with the environment settings that choose them: where OPENBLAS_CORETYPE is set, OpenBLAS
    runs that processor's kernels instead of its own choice."""
    import os
    kinds = []
    try:
        import numpy  # noqa: F401
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import threadpool_info
        kinds = sorted({f"{i.get('internal_api')} {i.get('architecture', '?')}" for i in threadpool_info()
                        if i.get("user_api") == "blas"})
    except ImportError:
        pass
    settings = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    return ", ".join(kinds or ["unknown"]) + (f" ({', '.join(settings)})" if settings else " (its own choice)")


def provenance(argv: list[str] | None = None) -> dict:
    """What every bench record stores: the exact command, the git commit and the machine."""
    import os
    import sys
    args = sys.argv if argv is None else argv
    script = os.path.relpath(os.path.abspath(args[0]), Path(__file__).resolve().parents[1])
    return {"command": " ".join(["python", script, *args[1:]]), "git_commit": git_commit(),
            "machine_provenance": f"{cpu_model()}, {os.cpu_count()} cores, {platform.platform()}", "blas": blas()}


def hwm(pid: int) -> float:
    """Peak resident memory (VmHWM) of a process, MiB; 0 once it is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
