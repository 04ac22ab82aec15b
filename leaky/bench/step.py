"""``leaky bench step``: the fused step's faces against the composed step and bare SGEMM."""

from __future__ import annotations


import numpy as np

from leaky.core.backend import gpu_available
from leaky.bench.timing import Row, _check, _row, time_gpu, time_host


DEFAULT_GRID = [(B, N, ell) for N in (64, 256, 1024) for B in (1, 16, 256, 1024) for ell in (1, 3)]
QUICK_GRID = [(1, 32, 1), (8, 64, 2), (64, 128, 3)]
LAYERED_GRID = [(256, (3, 64, 64, 1)), (256, (3, 256, 256, 1)), (1024, (3, 256, 256, 1))]
QUICK_LAYERED_GRID = [(16, (3, 24, 24, 1))]


# ---------------------------------------------------------------------------------------------
# step
# ---------------------------------------------------------------------------------------------

def _step_inputs(B, N, ell, seed=0, sizes=None):
    from leaky.model.config import NetworkConfig

    rng = np.random.default_rng(seed)
    if sizes is not None:
        cfg = NetworkConfig.layered(sizes, seed=seed)
        N, ell = cfg.n_neurons, cfg.delay
    else:
        n_in = min(3, N - 1)
        cfg = NetworkConfig(n_neurons=N, n_inputs=n_in, n_outputs=1, delay=ell, leak=0.5, seed=seed)
    V0 = rng.standard_normal((B, N)).astype(np.float32)
    obs = rng.standard_normal((B, cfg.n_inputs)).astype(np.float32)
    xi = (0.1 * rng.standard_normal((ell, B, N))).astype(np.float32)
    return cfg, V0, obs, xi


def step_counts(cfg, B, nnz):
    """(FLOPs, bytes) of one fused step call."""
    N, ell, n_in = cfg.n_neurons, cfg.delay, cfg.n_inputs
    flops = 2.0 * ell * B * nnz
    nbytes = 4.0 * (N * N + B * N + B * n_in + ell * B * N + (3 * ell + 1) * B * N)
    return flops, nbytes


def bench_step(grid=None, repeats: int = 7, reference_max_work: int = 1 << 22,
               layered_grid=None) -> list[Row]:
    """Rows for every face of the fused step over ``grid`` of (B, N, ℓ), and layered networks
    over ``layered_grid`` of (B, sizes)."""
    cases = [(B, N, ell, None) for B, N, ell in (DEFAULT_GRID if grid is None else grid)]
    cases += [(B, 0, 0, sizes) for B, sizes in (LAYERED_GRID if layered_grid is None else layered_grid)]
    rows: list[Row] = []
    for B, N, ell, sizes in cases:
        rows.extend(_bench_step_case(B, N, ell, sizes, repeats, reference_max_work))
    return rows


def _bench_step_case(B, N, ell, sizes, repeats, reference_max_work) -> list[Row]:
    from leaky.kernels import step as sk
    from leaky.model.network import Network

    cfg, V0, obs, xi = _step_inputs(B, N, ell, sizes=sizes)
    N, ell = cfg.n_neurons, cfg.delay
    net = Network(cfg, backend="cpu")
    flags = sk.StepFlags(cfg.n_inputs, 0, 0, cfg.kappa, False)
    nnz = sk.presynaptic_count(net.col_lo, net.col_hi)
    flops, nbytes = step_counts(cfg, B, nnz)
    K = net.K
    snet = sk.StepNet(net.K, net.b, net.leak, net.col_lo, net.col_hi, nnz=nnz)
    u = obs  # identity encoder
    want = sk.step_reference(V0, u, xi, snet, flags)

    out = sk.StepOut(*(np.empty(s, np.float32) for s in [(ell + 1, B, N)] + [(ell, B, N)] * 3))
    schedule = sk.cpu_schedule(B, ell, nnz)[0]
    faces = {schedule: lambda: sk.step_cpu(V0, u, xi, snet, flags, out)}
    if schedule != "serial":
        faces["serial"] = lambda: sk.step_cpu(V0, u, xi, snet, flags, out, schedule="serial")
    for name, fn in faces.items():
        _check(fn(), want, N, f"step cpu ({name})")
    comp = lambda: sk.step_composed(np, V0, u, xi, snet, flags)  # noqa: E731
    _check(comp(), want, N, "step composed")
    Kt = np.ascontiguousarray(K.T)
    gemm = lambda: [V0 @ Kt for _ in range(ell)]  # noqa: E731
    blocks = _layer_blocks(net) if sizes is not None else None

    t_gemm = time_host(gemm, repeats)
    t_comp = time_host(comp, repeats)
    t_faces = {name: time_host(fn, repeats) for name, fn in faces.items()}
    rows = []
    kind = "dense" if sizes is None else f"layered {list(sizes)}"

    def row(kernel, backend, t, note="", ceiling=None, composed=None):
        rows.append(_row("step", kernel, backend, B, N, ell, t, flops, nbytes, ceiling, composed, note))

    t_ceil = t_gemm
    if blocks is not None:
        Vb = [np.ascontiguousarray(V0[:, c0:c1]) for _, _, c0, c1 in blocks]
        Kb = [np.ascontiguousarray(K[r0:r1, c0:c1].T) for r0, r1, c0, c1 in blocks]
        t_ceil = time_host(lambda: [v @ k for _ in range(ell) for v, k in zip(Vb, Kb)], repeats)
        row("sgemm blocks", "numpy", t_ceil, f"{ell} x per-layer GEMMs of the mask blocks", t_ceil)
        row("sgemm dense", "numpy", t_gemm, f"{ell} x ({B},{N})x({N},{N}), zeros included", t_ceil)
    else:
        row("sgemm (ceiling)", "numpy", t_gemm, f"{ell} x ({B},{N})x({N},{N})", t_gemm)
    row("composed", "numpy", t_comp, f"GEMM + elementwise, {kind}", t_ceil, t_comp)
    for name, t in t_faces.items():
        row("fused", "cpu", t, f"numba.njit, schedule {name}, {kind}", t_ceil, t_comp)
    if ell * B * N * N <= reference_max_work:
        ref = lambda: sk.step_reference(V0, u, xi, snet, flags)  # noqa: E731
        row("reference", "numpy", time_host(ref, repeats), "float64", t_ceil, t_comp)
    if gpu_available():
        rows.extend(_bench_step_gpu(cfg, net, V0, u, xi, want, flags, flops, nbytes))
    return rows


def _layer_blocks(net):
    """``(row_lo, row_hi, col_lo, col_hi)`` of each run of rows with one presynaptic range."""
    lo, hi = net.col_lo, net.col_hi
    blocks, start = [], 0
    for n in range(1, len(lo) + 1):
        if n == len(lo) or lo[n] != lo[start] or hi[n] != hi[start]:
            if hi[start] > lo[start]:
                blocks.append((start, n, int(lo[start]), int(hi[start])))
            start = n
    return blocks


def _bench_step_gpu(cfg, net, V0, u, xi, want, flags, flops, nbytes) -> list[Row]:
    import cupy as cp

    from leaky.kernels import step as sk

    ell, B, N = xi.shape
    d = {k: cp.asarray(v) for k, v in dict(V0=V0, u=u, K=net.K, b=net.b, leak=net.leak, xi=xi).items()}
    tlo, thi = (cp.asarray(a) for a in sk.tile_ranges(net.col_lo, net.col_hi))
    out = sk.StepOut(*(cp.empty(s, cp.float32) for s in [(ell + 1, B, N)] + [(ell, B, N)] * 3))
    snet = sk.StepNet(d["K"], d["b"], d["leak"], net.col_lo, net.col_hi, tlo, thi)
    fused = lambda: sk.step_cuda(d["V0"], d["u"], d["xi"], snet, flags, out)  # noqa: E731
    _check(fused(), want, N, "step cuda")
    comp = lambda: sk.step_composed(cp, d["V0"], d["u"], d["xi"], snet, flags)  # noqa: E731
    _check(comp(), want, N, "step cupy composed")
    Kt = cp.ascontiguousarray(d["K"].T)
    gemm = lambda: [d["V0"] @ Kt for _ in range(ell)]  # noqa: E731
    t_gemm, t_comp, t_fused = time_gpu(gemm), time_gpu(comp), time_gpu(fused)
    mk = lambda k, t, note, comp_t=None: _row("step", k, "cuda", B, N, ell, t, flops, nbytes,  # noqa: E731
                                              t_gemm, comp_t, note)
    return [mk("sgemm (ceiling)", t_gemm, "cuBLAS"), mk("composed", t_comp, "cuBLAS + elementwise", t_comp),
            mk("fused", t_fused, "numba.cuda, one launch", t_comp)]
