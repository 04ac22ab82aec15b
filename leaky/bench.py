"""``leaky bench``: kernel microbenchmarks with measured ceilings, side by side in one run.

Every row is a median over repeats after warm-up, with achieved GFLOP/s and GB/s from the
stated counts, and a ratio against a ceiling measured in the same run on the same shape:

* ``step``: each face of the fused step (``cpu``; ``cuda`` when a GPU is present; the float64
  ``reference`` at small sizes) against the composed alternative (GEMM + elementwise on NumPy,
  or CuPy/cuBLAS) and against bare SGEMM of the same shape (``ℓ`` GEMMs ``(B, N) × (N, N)``),
  the ceiling no fused step can beat on the CPU. Results are checked against the float64
  reference before they are timed.
* ``ceiling``: large SGEMM GFLOP/s and memory-copy GB/s of the machine (NumPy; CuPy on a GPU).

FLOPs of a step: ``2·ℓ·B·nnz(K)`` (multiply-add = 2). Bytes: K read once, V0/u/ξ read,
the cache ``(3ℓ+1)·B·N`` written, all float32.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from leaky.backend import gpu_available

DEFAULT_GRID = [(B, N, ell) for N in (64, 256, 1024) for B in (1, 16, 256, 1024) for ell in (1, 3)]
QUICK_GRID = [(1, 32, 1), (8, 64, 2), (64, 128, 3)]


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
    ceiling_fraction: float | None = None   # SGEMM-of-the-same-shape time / this time
    vs_composed: float | None = None        # composed time / this time (speed-up)
    note: str = ""


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


def _step_inputs(B, N, ell, seed=0):
    from leaky.config import NetworkConfig

    rng = np.random.default_rng(seed)
    n_in, n_out = min(3, N - 1), 1
    cfg = NetworkConfig(n_neurons=N, n_inputs=n_in, n_outputs=n_out, delay=ell, leak=0.5, seed=seed)
    V0 = rng.standard_normal((B, N)).astype(np.float32)
    obs = rng.standard_normal((B, n_in)).astype(np.float32)
    xi = (0.1 * rng.standard_normal((ell, B, N))).astype(np.float32)
    return cfg, V0, obs, xi


def _check(got, want, N, what):
    tol = 2e-5 * max(1.0, N / 64)
    for g, w, name in zip(got, want, ("V", "z", "y", "alpha")):
        g = np.asarray(g.get() if hasattr(g, "get") else g, dtype=np.float64)
        err = np.abs(g - w).max() / max(1.0, np.abs(w).max())
        if not err <= tol:
            raise AssertionError(f"bench {what}: {name} differs from the reference by {err:.2e} > {tol:.1e}")


def bench_step(grid=None, repeats: int = 7, reference_max_work: int = 1 << 22) -> list[Row]:
    """Rows for every face of the fused step over ``grid`` of (B, N, ℓ)."""
    from leaky.kernels import step as sk
    from leaky.network import Network

    rows = []
    on_gpu = gpu_available()
    for B, N, ell in grid or DEFAULT_GRID:
        cfg, V0, obs, xi = _step_inputs(B, N, ell)
        net = Network(cfg, backend="cpu")
        flags = (cfg.n_inputs, 0, 0, cfg.kappa, False)
        nnz = int(np.sum(net.col_hi - net.col_lo))
        flops = 2.0 * ell * B * nnz
        nbytes = 4.0 * (N * N + B * N + B * cfg.n_inputs + ell * B * N + (3 * ell + 1) * B * N)
        K, b, leak = net.K, net.b, net.leak
        u = obs  # identity encoder
        want = sk.step_reference(V0, u, K, b, leak, xi, net.col_lo, net.col_hi, *flags)

        out = tuple(np.empty(s, np.float32) for s in [(ell + 1, B, N)] + [(ell, B, N)] * 3)
        cpu = lambda: sk.step_cpu(V0, u, K, b, leak, xi, net.col_lo, net.col_hi, *flags, out=out)
        _check(cpu(), want, N, "step cpu")
        comp = lambda: sk.step_composed(np, V0, u, K, b, leak, xi, *flags)
        _check(comp(), want, N, "step composed")
        Kt = np.ascontiguousarray(K.T)
        gemm = lambda: [V0 @ Kt for _ in range(ell)]

        t_gemm = time_host(gemm, repeats)
        t_comp = time_host(comp, repeats)
        t_cpu = time_host(cpu, repeats)

        def row(kernel, backend, t, note="", ceiling=None, composed=None):
            rows.append(Row("step", kernel, backend, B, N, ell, t, flops / t / 1e9, nbytes / t / 1e9,
                            None if ceiling is None else ceiling / t,
                            None if composed is None else composed / t, note))

        row("sgemm (ceiling)", "numpy", t_gemm, f"{ell} x ({B},{N})x({N},{N})", t_gemm)
        row("composed", "numpy", t_comp, "GEMM + elementwise", t_gemm, t_comp)
        row("fused", "cpu", t_cpu, "numba.njit", t_gemm, t_comp)
        if ell * B * N * N <= reference_max_work:
            ref = lambda: sk.step_reference(V0, u, K, b, leak, xi, net.col_lo, net.col_hi, *flags)
            row("reference", "numpy", time_host(ref, repeats), "float64", t_gemm, t_comp)
        if on_gpu:
            rows.extend(_bench_step_gpu(cfg, net, V0, u, xi, want, flags, flops, nbytes))
    return rows


def _bench_step_gpu(cfg, net, V0, u, xi, want, flags, flops, nbytes) -> list[Row]:
    import cupy as cp

    from leaky.kernels import step as sk

    ell, B, N = xi.shape
    d = {k: cp.asarray(v) for k, v in dict(V0=V0, u=u, K=net.K, b=net.b, leak=net.leak, xi=xi).items()}
    tlo, thi = (cp.asarray(a) for a in sk.tile_ranges(net.col_lo, net.col_hi))
    out = tuple(cp.empty(s, cp.float32) for s in [(ell + 1, B, N)] + [(ell, B, N)] * 3)
    args = (d["V0"], d["u"], d["K"], d["b"], d["leak"], d["xi"])
    fused = lambda: sk.step_cuda(*args, tlo, thi, *flags, out=out)
    _check(fused(), want, N, "step cuda")
    comp = lambda: sk.step_composed(cp, *args, *flags)
    _check(comp(), want, N, "step cupy composed")
    Kt = cp.ascontiguousarray(d["K"].T)
    gemm = lambda: [d["V0"] @ Kt for _ in range(ell)]
    t_gemm, t_comp, t_fused = time_gpu(gemm), time_gpu(comp), time_gpu(fused)
    mk = lambda k, t, note, comp_t=None: Row("step", k, "cuda", B, N, ell, t, flops / t / 1e9, nbytes / t / 1e9,
                                              t_gemm / t, None if comp_t is None else comp_t / t, note)
    return [mk("sgemm (ceiling)", t_gemm, "cuBLAS"), mk("composed", t_comp, "cuBLAS + elementwise", t_comp),
            mk("fused", t_fused, "numba.cuda, one launch", t_comp)]


def bench_ceiling(repeats: int = 5) -> list[Row]:
    """The machine's SGEMM GFLOP/s (n = 2048) and copy GB/s (256 MiB, read + write)."""
    rows = []
    n = 2048
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = time_host(lambda: a @ a, repeats)
    rows.append(Row("ceiling", "sgemm", "numpy", n, n, 1, t, 2.0 * n**3 / t / 1e9, 12.0 * n * n / t / 1e9))
    src = np.ones(64 << 20, np.float32)
    dst = np.empty_like(src)
    t = time_host(lambda: np.copyto(dst, src), repeats)
    rows.append(Row("ceiling", "copy", "numpy", 1, src.size, 1, t, 0.0, 2.0 * src.nbytes / t / 1e9))
    if gpu_available():
        import cupy as cp

        a = cp.asarray(a)
        t = time_gpu(lambda: a @ a)
        rows.append(Row("ceiling", "sgemm", "cuda", n, n, 1, t, 2.0 * n**3 / t / 1e9, 12.0 * n * n / t / 1e9))
        src = cp.ones(256 << 20, cp.float32)
        dst = cp.empty_like(src)
        t = time_gpu(lambda: cp.copyto(dst, src))
        rows.append(Row("ceiling", "copy", "cuda", 1, src.size, 1, t, 0.0, 2.0 * src.nbytes / t / 1e9))
    return rows


SUITES: dict[str, Callable[..., list[Row]]] = {
    "ceiling": lambda args: bench_ceiling(),
    "step": lambda args: bench_step(QUICK_GRID if args.quick else None, repeats=3 if args.quick else 7),
}


def machine() -> dict:
    import numba

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
            "platform": platform.platform(), "cpu": _cpu_model(), "date": time.strftime("%Y-%m-%d")}
    if gpu_available():
        import cupy as cp

        info["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        info["cupy"] = cp.__version__
    return info


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(rows: list[Row]) -> str:
    head = f"{'suite':8} {'kernel':16} {'backend':7} {'B':>5} {'N':>5} {'ℓ':>2} {'time':>10} {'GFLOP/s':>8} {'GB/s':>7} {'ceil':>6} {'×comp':>6}  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        t = f"{r.seconds * 1e6:.1f} µs" if r.seconds < 1e-3 else f"{r.seconds * 1e3:.2f} ms"
        cf = "" if r.ceiling_fraction is None else f"{r.ceiling_fraction:.2f}"
        vc = "" if r.vs_composed is None else f"{r.vs_composed:.2f}"
        lines.append(f"{r.suite:8} {r.kernel:16} {r.backend:7} {r.B:5d} {r.N:5d} {r.delay:2d} {t:>10} "
                     f"{r.gflops:8.2f} {r.gbps:7.2f} {cf:>6} {vc:>6}  {r.note}")
    return "\n".join(lines)


def run(args) -> int:
    suites = args.suites or ["ceiling", "step"]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        from leaky.errors import ConfigError

        raise ConfigError(f"bench: unknown suite(s) {unknown}; expected some of {sorted(SUITES)}")
    rows: list[Row] = []
    for s in suites:
        rows.extend(SUITES[s](args))
    if args.json:
        print(json.dumps({"machine": machine(), "rows": [asdict(r) for r in rows]}, indent=1))
    else:
        info = machine()
        print("# " + ", ".join(f"{k} {v}" for k, v in info.items()))
        print(format_table(rows))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="kernel microbenchmarks with measured ceilings",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help=f"sub-suites to run (default: ceiling step); any of {', '.join(SUITES)}")
    p.add_argument("--quick", action="store_true", help="a tiny grid (seconds), for smoke tests")
    p.add_argument("--json", action="store_true", help="print the rows and the machine as JSON")
    p.set_defaults(func=run)
