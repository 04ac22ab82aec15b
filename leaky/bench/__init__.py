"""``leaky bench``: kernel and learner benchmarks with measured ceilings, side by side in one run.

Sub-suites (``leaky bench SUITE …``; default ``ceiling step``):

* ``step``: each face of the fused step (``cpu`` with the schedule it picks, and serially when
  that is parallel; ``cuda`` when a GPU is present; the float64 ``reference`` at small sizes)
  against the composed alternative (GEMM + elementwise, ``step_composed`` on NumPy or CuPy) and
  against bare SGEMM of the same shape (``ℓ`` GEMMs ``(B, N) × (N, N)``), the ceiling no fused
  step can beat on the CPU; layered networks also against the per-layer GEMMs of their blocks.
* ``update``: each face of the fused local update (``kernels/update_local/``, advantage
  critics; ``kernels/update_mlp/``, MLP critics; Adam, causal clock) against the same update
  composed from GEMMs (``update_local_composed``, ``update_mlp_composed`` beside the references; NumPy, and
  CuPy on a GPU); then one whole learner update, the local learner against DDPG on the same
  dense network with the DDPG critic sized for an equal trainable-parameter count, and against
  stable-baselines3's DDPG gradient step at the same parameter count and batch when SB3 is
  installed, in samples/s.
* ``train``: env steps/s of the whole training loop (``leaky.training.loop`` on Pendulum-v1) with its
  wall time split into env, act, learn, logging and the rest; the local learner with and
  without a trace, DDPG, and on a GPU the eager and the CUDA-graph local learner.
* ``solve``: wall time to the first greedy return ≥ −200 on Pendulum-v1 (main job's network and
  settings), DDPG against the default local learner, seeds 0–2.
* ``ceiling``: the machine's SGEMM GFLOP/s (n = 2048) and memory-copy GB/s (NumPy; CuPy too
  on a GPU).
* ``trace``: what writing a trace costs (``leaky.bench.trace``), when that module is present.

**Counts.** A multiply-add is 2 FLOPs; bytes are float32 values that must cross memory once.
Step: ``2·ℓ·B·nnz(K)`` FLOPs; bytes K once, V0/u/ξ read, the cache ``(3ℓ+1)·B·N`` written.
Local update (advantage, view all, causal clock: S = B transitions per neuron): per agent
neuron and transition ``6N + nnz_n`` multiply-adds (w·x, p·x, w̄·x', the w and p gradients,
the slope with the updated p, the row of K); bytes the five (ℓ, B, N) transition arrays read,
the four (N, 2N+3) critic arrays and K read and written. MLP critics (H hidden units):
``4H(N+1) + 6H²`` per agent and transition plus the row of K (kernels/update_mlp/'s count),
the four (N, P) parameter arrays read and written. DDPG update: ``4·ℓ·B·nnz(K)`` for
the actor (two forward passes, one backward with two GEMMs per step) plus five critic passes.

**Timing.** Every row is checked against the float64 reference (or, for ``train``, the same
learner on the ``numpy`` backend) before it is timed. Host: the median of 7 samples after 2
warm-up calls, each sample at least 20 ms of back-to-back calls. GPU: ``cupyx.profiler.
benchmark`` (CUDA events), the median over 50 calls after 5 warm-up calls.

**Ceilings.** ``ceiling_fraction`` = ceiling time / row time. ``step``: SGEMM of the same shape
(per-layer block GEMMs for a layered network), measured in the same run. ``update`` and
``train``: the roofline ``max(FLOPs / R_gemm, bytes / R_copy)`` with R_gemm the GFLOP/s of an
SGEMM ``(S, N) × (N, N)`` and R_copy the copy GB/s, both measured in the same run.

**Modules**, one a suite: :mod:`~leaky.bench.timing` (rows, timers, rates, the reference check),
:mod:`~leaky.bench.step`, :mod:`~leaky.bench.update` (the fused update kernels),
:mod:`~leaky.bench.learners` (whole updates against DDPG and SB3), :mod:`~leaky.bench.credit`
(the shared critic), :mod:`~leaky.bench.loop` (``train``, ``solve``), :mod:`~leaky.bench.ceiling`,
:mod:`~leaky.bench.trace`; this one holds the command (``SUITES``, ``machine``, the parser).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict
from typing import Callable

import numpy as np

from leaky.core.backend import gpu_available
from leaky.bench.ceiling import bench_ceiling
from leaky.bench.credit import CREDIT_GRID, CREDIT_RULES, CREDIT_TARGET, QUICK_CREDIT_GRID, bench_credit
from leaky.bench.learners import QUICK_TRAIN_GRID, SB3_TARGET, TRAIN_GRID, TRAIN_TARGET, bench_learners, sb3_params
from leaky.bench.loop import SOLVE_TARGET, bench_loop, bench_solve
from leaky.bench.step import DEFAULT_GRID, LAYERED_GRID, QUICK_GRID, QUICK_LAYERED_GRID, bench_step
from leaky.bench.timing import Row, copy_rate, sgemm_rate, time_gpu, time_host
from leaky.bench.update import (MLP_UPDATE_GRID, QUICK_MLP_UPDATE_GRID, QUICK_UPDATE_GRID, UPDATE_GRID,
                                bench_update)

__all__ = [   # the suites, their grids and targets, the timers
    "CREDIT_GRID", "CREDIT_RULES", "CREDIT_TARGET", "DEFAULT_GRID", "LAYERED_GRID", "MLP_UPDATE_GRID",
    "QUICK_CREDIT_GRID", "QUICK_GRID", "QUICK_LAYERED_GRID", "QUICK_MLP_UPDATE_GRID", "QUICK_TRAIN_GRID",
    "QUICK_UPDATE_GRID", "Row", "SB3_TARGET", "SOLVE_TARGET", "SUITES", "TRAIN_GRID", "TRAIN_TARGET",
    "UPDATE_GRID", "bench_ceiling", "bench_credit", "bench_learners", "bench_loop", "bench_solve",
    "bench_step", "bench_update", "copy_rate", "machine", "sb3_params", "sgemm_rate", "time_gpu",
    "time_host",
]


# ---------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------

def _trace_module():
    """``leaky.bench.trace`` when it is installed (another module's suite), else None."""
    try:
        from leaky.bench import trace as bench_trace
    except ImportError:
        return None
    return bench_trace


SUITES: dict[str, Callable[..., list]] = {
    "ceiling": lambda args: bench_ceiling(),
    "step": lambda args: bench_step(QUICK_GRID if args.quick else None, repeats=3 if args.quick else 7,
                                    layered_grid=QUICK_LAYERED_GRID if args.quick else None),
    "update": lambda args: bench_update(QUICK_UPDATE_GRID if args.quick else None,
                                        repeats=3 if args.quick else 7,
                                        mlp_grid=QUICK_MLP_UPDATE_GRID if args.quick else None)
    + bench_learners(QUICK_TRAIN_GRID if args.quick else None, repeats=3 if args.quick else 7)
    + bench_credit(QUICK_CREDIT_GRID if args.quick else None, repeats=3 if args.quick else 7),
    "solve": lambda args: bench_solve(seeds=(0,), max_steps=800, eval_every=400) if args.quick else bench_solve(),
    "train": lambda args: bench_loop(800 if args.quick else 8000, hidden=(16, 16) if args.quick else (64, 64)),
    "trace": lambda args: _trace_module().bench_trace(args),
}


def machine() -> dict:
    import numba

    from leaky.core.threads import blas_threads

    info = {"python": sys.version.split()[0], "numpy": np.__version__, "numba": numba.__version__,
            "threads": numba.get_num_threads(), "blas_threads": blas_threads(),
            "platform": platform.platform(), "cpu": _cpu_model(),
            "date": time.strftime("%Y-%m-%d"), "cpu_idle": _cpu_idle()}
    if gpu_available():
        import cupy as cp

        info["gpu"] = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
        info["cupy"] = cp.__version__
    import importlib.metadata

    for dist in ("torch", "stable-baselines3"):      # the SB3 row's versions, when it runs
        try:
            info[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return info


def _cpu_idle(seconds: float = 0.2) -> float | None:
    """Fraction of all cores idle over ``seconds`` (Linux): below 1, others shared the machine."""
    def sample():
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    try:
        a = sample()
        time.sleep(seconds)
        b = sample()
    except (OSError, ValueError):
        return None
    d = [y - x for x, y in zip(a, b)]
    return round((d[3] + d[4]) / max(1, sum(d)), 2)   # idle + iowait


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _note(r: Row) -> str:
    if r.samples_per_s is not None and r.suite == "train":
        return f"{r.samples_per_s:,.0f} env steps/s, {r.vs_baseline:.2f}× loop local; {r.note}"
    if r.samples_per_s is not None:
        return f"{r.samples_per_s:,.0f} samples/s, {r.vs_baseline:.2f}× ddpg; {r.note}"
    return r.note


def format_table(rows: list[Row]) -> str:
    head = (f"{'suite':8} {'kernel':20} {'backend':7} {'B':>5} {'N':>5} {'ℓ':>2} {'time':>10} "
            f"{'GFLOP/s':>8} {'GB/s':>7} {'ceil':>6} {'×comp':>6}  note")
    lines = [head, "-" * len(head)]
    for r in rows:
        t = f"{r.seconds * 1e6:.1f} µs" if r.seconds < 1e-3 else f"{r.seconds * 1e3:.2f} ms"
        cf = "" if r.ceiling_fraction is None else f"{r.ceiling_fraction:.2f}"
        vc = "" if r.vs_composed is None else f"{r.vs_composed:.2f}"
        note = _note(r)
        lines.append(f"{r.suite:8} {r.kernel:20} {r.backend:7} {r.B:5d} {r.N:5d} {r.delay:2d} {t:>10} "
                     f"{r.gflops:8.2f} {r.gbps:7.2f} {cf:>6} {vc:>6}  {note}")
    return "\n".join(lines)


def format_markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table (what docs/benchmarks.md's tables are made from)."""
    lines = ["| suite | kernel | backend | B | N | ℓ | time | GFLOP/s | GB/s | of ceiling | × composed | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = f"{r.seconds * 1e6:.1f} µs" if r.seconds < 1e-3 else f"{r.seconds * 1e3:.2f} ms"
        cf = "" if r.ceiling_fraction is None else f"{r.ceiling_fraction:.2f}"
        vc = "" if r.vs_composed is None else f"{r.vs_composed:.2f}"
        lines.append(f"| {r.suite} | {r.kernel} | {r.backend} | {r.B} | {r.N} | {r.delay} | {t} | "
                     f"{r.gflops:.2f} | {r.gbps:.2f} | {cf} | {vc} | {_note(r)} |")
    return "\n".join(lines)


def run(args) -> int:
    suites = args.suites or ["ceiling", "step"]
    unknown = [s for s in suites if s not in SUITES or (s == "trace" and _trace_module() is None)]
    if unknown:
        from leaky.core.errors import ConfigError

        known = [s for s in SUITES if s != "trace" or _trace_module() is not None]
        raise ConfigError(f"bench: unknown suite(s) {unknown}; expected some of {known}")
    import numba

    from leaky.core import threads

    if not threads.user_chose():   # SGEMM ceilings on the kernels' threads (leaky/core/threads.py)
        threads.set_blas_threads(numba.get_num_threads())
    info = machine()   # before the suites: cpu_idle says whether others were using the machine
    rows: list[Row] = []
    trace_rows: list[dict] = []
    for s in suites:
        (trace_rows if s == "trace" else rows).extend(SUITES[s](args))
    if args.json:
        print(json.dumps({"machine": info, "rows": [asdict(r) for r in rows] + trace_rows}, indent=1))
    elif args.markdown:
        print(", ".join(f"{k} {v}" for k, v in info.items()) + "\n")
        print(format_markdown(rows))
        if trace_rows:
            _trace_module().print_table(trace_rows)
    else:
        print("# " + ", ".join(f"{k} {v}" for k, v in info.items()))
        if rows:
            print(format_table(rows))
        if trace_rows:
            _trace_module().print_table(trace_rows)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="kernel microbenchmarks with measured ceilings",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("suites", nargs="*", metavar="SUITE",
                   help=f"sub-suites to run (default: ceiling step); any of {', '.join(SUITES)}")
    p.add_argument("--quick", action="store_true", help="tiny grids (seconds), for smoke tests")
    p.add_argument("--json", action="store_true", help="print the rows and the machine as JSON")
    p.add_argument("--markdown", action="store_true", help="print the rows as a Markdown table")
    trace = _trace_module()
    if trace is not None and hasattr(trace, "add_arguments"):
        trace.add_arguments(p)
    p.set_defaults(func=run)
