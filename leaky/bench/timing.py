"""Timing and checking: :class:`Row`, host and GPU timers, the measured SGEMM and copy rates, and
the check of every row against its reference before it is timed."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np




@dataclass
class Row:
    suite: str
    kernel: str
    backend: str
    B: int
    N: int
    delay: int
    seconds: float
    gflops: float
    gbps: float
    ceiling_fraction: float | None = None   # ceiling time / this time
    vs_composed: float | None = None        # composed time / this time (speed-up)
    note: str = ""
    flops: float = 0.0                      # the counts the rates come from
    bytes: float = 0.0
    samples_per_s: float | None = None      # train: transitions learned per second
    vs_baseline: float | None = None        # train: DDPG time / this time
    split: dict | None = None               # train: fraction of the loop's time per phase


def _row(suite, kernel, backend, B, N, ell, t, flops, nbytes, ceiling=None, composed=None,
         note="", **extra) -> Row:
    return Row(suite, kernel, backend, B, N, ell, t, flops / t / 1e9, nbytes / t / 1e9,
               None if ceiling is None else ceiling / t, None if composed is None else composed / t,
               note, flops, nbytes, **extra)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------

def time_host(fn: Callable[[], object], repeats: int = 7, warmup: int = 2, min_time: float = 0.02) -> float:
    """Median seconds per call of ``fn`` on the host clock (CPU work only).

    Calls are batched so that one timed sample lasts at least ``min_time``.
    """
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / once))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def time_gpu(fn: Callable[[], object], repeats: int = 50, warmup: int = 5) -> float:
    """Median GPU seconds per call, from CUDA events (``cupyx.profiler.benchmark``)."""
    from cupyx.profiler import benchmark

    result = benchmark(fn, n_repeat=repeats, n_warmup=warmup)
    return float(np.median(result.gpu_times[0]))


_COPY_RATE: dict[str, float] = {}


def copy_rate(repeats: int = 5) -> float:
    """Host memory-copy bytes/s (64 Mi float32 read + written), measured once per process."""
    if "host" not in _COPY_RATE:
        src = np.ones(64 << 20, np.float32)
        dst = np.empty_like(src)
        _COPY_RATE["host"] = 2.0 * src.nbytes / time_host(lambda: np.copyto(dst, src), repeats)
    return _COPY_RATE["host"]


def sgemm_rate(M: int, N: int, repeats: int = 7, N2: int | None = None) -> float:
    """FLOP/s of NumPy's SGEMM ``(M, N) × (N, N2)`` (N2 = N: the transposed-K shape)."""
    N2 = N if N2 is None else N2
    rng = np.random.default_rng(1)
    a = rng.standard_normal((M, N)).astype(np.float32)
    b = rng.standard_normal((N, N2)).astype(np.float32)
    return 2.0 * M * N * N2 / time_host(lambda: a @ b, repeats)


# ---------------------------------------------------------------------------------------------
# checks against the reference
# ---------------------------------------------------------------------------------------------

def _check(got, want, N, what, names=("V", "z", "y", "alpha"), tol=None):
    """Raise unless every ``got`` array is within ``tol`` (relative to the largest |want|)."""
    tol = 2e-5 * max(1.0, N / 64) if tol is None else tol
    for g, w, name in zip(got, want, names):
        g = np.asarray(g.get() if hasattr(g, "get") else g, dtype=np.float64)
        err = np.abs(g - w).max() / max(1.0, np.abs(w).max())
        if not err <= tol:
            raise AssertionError(f"bench {what}: {name} differs from the reference by {err:.2e} > {tol:.1e}")
