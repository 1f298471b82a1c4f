"""The sender's compiled helpers (the tour, its refinement, the step KL): numba where it is installed, otherwise the
same functions run as Python, with the same numbers, slower. The coder's kernels (`coding/kernels.py`) import
numba themselves."""

from __future__ import annotations

try:
    from numba import njit
except ImportError:
    njit = None


def jit(f):
    """f compiled (cached on disk, releasing the GIL), or f itself without numba."""
    return f if njit is None else njit(cache=True, nogil=True)(f)
