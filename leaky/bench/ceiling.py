"""``leaky bench ceiling``: the machine's SGEMM GFLOP/s and memory-copy GB/s."""

from __future__ import annotations


import numpy as np

from leaky.core.backend import gpu_available
from leaky.bench.timing import Row, _row, time_gpu, time_host


# ---------------------------------------------------------------------------------------------
# ceiling
# ---------------------------------------------------------------------------------------------

def bench_ceiling(repeats: int = 5) -> list[Row]:
    """The machine's SGEMM GFLOP/s (n = 2048) and copy GB/s (256 MiB, read + write)."""
    rows = []
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = time_host(lambda: a @ a, repeats)
    rows.append(_row("ceiling", "sgemm", "numpy", n, n, 1, t, 2.0 * n**3, 12.0 * n * n, note="OpenBLAS"))
    src = np.ones(64 << 20, np.float32)
    dst = np.empty_like(src)
    t = time_host(lambda: np.copyto(dst, src), repeats)
    rows.append(_row("ceiling", "copy", "numpy", 1, src.size, 1, t, 0.0, 2.0 * src.nbytes))
    if gpu_available():
        import cupy as cp

        a = cp.asarray(a)
        t = time_gpu(lambda: a @ a)
        rows.append(_row("ceiling", "sgemm", "cuda", n, n, 1, t, 2.0 * n**3, 12.0 * n * n, note="cuBLAS"))
        src = cp.ones(256 << 20, cp.float32)
        dst = cp.empty_like(src)
        t = time_gpu(lambda: cp.copyto(dst, src))
        rows.append(_row("ceiling", "copy", "cuda", 1, src.size, 1, t, 0.0, 2.0 * src.nbytes))
    return rows
