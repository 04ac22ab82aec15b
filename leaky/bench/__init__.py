"""``leaky bench``: kernel and learner benchmarks with measured ceilings, side by side in one run.

Sub-suites (``leaky bench SUITE …``; default ``ceiling step``):

* ``step``: each face of the fused step (``cpu`` with the schedule it picks, and serially when
  that is parallel; ``cuda`` when a GPU is present; the float64 ``reference`` at small sizes)
  against the composed alternative (GEMM + elementwise, ``step_composed`` on NumPy or CuPy) and
  against bare SGEMM of the same shape (``ℓ`` GEMMs ``(B, N) × (N, N)``), the ceiling no fused
  step can beat on the CPU; layered networks also against the per-layer GEMMs of their blocks.
* ``update``: each face of the fused local update (``kernels/update_local.py``, advantage
  critics; ``kernels/update_mlp.py``, MLP critics; Adam, causal clock) against the same update
  composed from GEMMs (:func:`update_local_composed`, :func:`update_mlp_composed`; NumPy, and
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
``4H(N+1) + 6H²`` per agent and transition plus the row of K (kernels/update_mlp.py's count),
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
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from leaky.core.backend import gpu_available
from leaky.kernels.scalar import sigma, sigma_grad

DEFAULT_GRID = [(B, N, ell) for N in (64, 256, 1024) for B in (1, 16, 256, 1024) for ell in (1, 3)]
QUICK_GRID = [(1, 32, 1), (8, 64, 2), (64, 128, 3)]
LAYERED_GRID = [(256, (3, 64, 64, 1)), (256, (3, 256, 256, 1)), (1024, (3, 256, 256, 1))]
QUICK_LAYERED_GRID = [(16, (3, 24, 24, 1))]
UPDATE_GRID = [(64, 64, 2), (256, 256, 2), (1024, 256, 2)]   # (N, B, ℓ)
QUICK_UPDATE_GRID = [(32, 16, 2)]
MLP_UPDATE_GRID = [(64, 64, 2), (256, 256, 2)]
QUICK_MLP_UPDATE_GRID = [(16, 8, 2)]
TRAIN_GRID = [(64, 256, 2), (256, 256, 2)]                   # (N, B, ℓ); the target: N = 256
QUICK_TRAIN_GRID = [(32, 32, 2)]
TRAIN_TARGET = 3.0   # local samples/s over DDPG's at dense N = 256, B = 256, ℓ = 2
SB3_TARGET = 5.0     # local samples/s over stable-baselines3 DDPG's, same size


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


# ---------------------------------------------------------------------------------------------
# update: the fused local update against the same update composed from GEMMs
# ---------------------------------------------------------------------------------------------

def _composed_setup(theta, tau, n_inputs, N):
    """Array module of the parameters (NumPy or CuPy), the host copy of ``tau`` and the agents."""
    xp = np
    if not isinstance(theta, np.ndarray):
        import cupy as xp
    tau = np.asarray(tau.get() if hasattr(tau, "get") else tau)
    return xp, tau, np.arange(n_inputs, N)


def update_local_composed(Vs, ys, alphas, Vn, yn, r, cont, tau, mask, K, bias, theta, theta_bar,
                          adam_m, adam_v, n_inputs, activation, cfg, step):
    """The local update (own critic, view ``all``) composed from NumPy (or CuPy) calls; in place.

    Not a face of the kernel: the alternative its faces are benchmarked against. Neurons that
    learn from the same slice τ form one group, and every per-neuron dot product of the group
    becomes one GEMM over the S transitions: ``X Wᵀ``, ``X Pᵀ``, ``X' W̄ᵀ``, ``Eᵀ X``,
    ``(E⊙D)ᵀ X``, ``X P'ᵀ`` and ``Sᵀ X`` (about ``6N + N`` multiply-adds per neuron and
    transition, as the fused kernel), then Adam, the soft update and ``K += ΔK ⊙ M`` on the
    group's rows. Arguments as :func:`leaky.kernels.update_local.update_local_reference`.
    """
    from leaky.kernels.update_local import critic_layout

    if cfg.view != "all" or cfg.baseline != "own":
        raise ValueError("update_local_composed: only view='all', baseline='own'")
    T, B, N = Vs.shape
    xp, tau, agents = _composed_setup(theta, tau, n_inputs, N)
    lay = critic_layout(N)
    act = lambda a: sigma(a, activation, xp)  # noqa: E731
    dact = lambda a: sigma_grad(a, activation, xp)  # noqa: E731
    advantage = cfg.family == "advantage"
    step_size, eps_hat = cfg.adam_scalars(step)
    cols = xp.asarray(np.r_[0:2 * N + 3] if advantage else np.r_[0:N, 2 * N, 2 * N + 1])  # trained = owned
    for t in np.unique(tau[agents]):
        idx = xp.asarray(agents[tau[agents] == t])
        sl = slice(None) if t < 0 else slice(int(t), int(t) + 1)
        X, Xn = Vs[sl].reshape(-1, N), Vn[sl].reshape(-1, N)
        y, a = ys[sl].reshape(-1, N)[:, idx], alphas[sl].reshape(-1, N)[:, idx]
        rr, cc = r[sl].reshape(-1, 1), cont[sl].reshape(-1, 1)
        S = X.shape[0]
        th, thb = theta[idx], theta_bar[idx]
        c, u, h = th[:, lay.c], th[:, lay.u], th[:, lay.h]
        if advantage:
            d = a - act(y)
            Q = X @ th[:, lay.w].T + c + d * (u + X @ th[:, lay.p].T) + 0.5 * h * d * d
            e = rr + cc * (Xn @ thb[:, lay.w].T + thb[:, lay.c]) - Q
            da = d
        else:
            Q = X @ th[:, lay.w].T + u * a + c
            e = rr + cc * (Xn @ thb[:, lay.w].T + thb[:, lay.u] * act(yn[sl].reshape(-1, N)[:, idx])
                           + thb[:, lay.c]) - Q
            da = a
        ascent = xp.empty_like(th)
        ascent[:, lay.w] = e.T @ X / S
        ascent[:, lay.c] = e.mean(axis=0)
        ascent[:, lay.u] = (e * da).mean(axis=0)
        if advantage:
            ascent[:, lay.p] = (e * d).T @ X / S
            ascent[:, lay.h] = (e * 0.5 * d * d).mean(axis=0)
        if cfg.optimizer == "sgd":
            th[:, cols] += cfg.lr_critic * ascent[:, cols]
        else:
            rc = xp.ix_(idx, cols)
            g = -ascent[:, cols]
            adam_m[rc] = m = cfg.beta1 * adam_m[rc] + (1 - cfg.beta1) * g
            adam_v[rc] = v = cfg.beta2 * adam_v[rc] + (1 - cfg.beta2) * g * g
            th[:, cols] -= step_size * m / (xp.sqrt(v) + eps_hat)
        if advantage:
            th[:, lay.h] = xp.minimum(th[:, lay.h], 0)
            slope = th[:, lay.u] + X @ th[:, lay.p].T
        else:
            slope = xp.broadcast_to(th[:, lay.u], e.shape)
        s = slope * dact(y)
        K[idx] += cfg.lr_actor * (s.T @ X / S) * mask[idx]
        bias[idx] += cfg.lr_actor * s.mean(axis=0)
        thb[:, cols] = (1 - cfg.tau_soft) * thb[:, cols] + cfg.tau_soft * th[:, cols]
        theta[idx], theta_bar[idx] = th, thb


def update_mlp_composed(Vs, ys, alphas, Vn, yn, r, cont, tau, mask, K, bias, theta, theta_bar,
                        adam_m, adam_v, n_inputs, activation, cfg, step):
    """The MLP-critic update (view ``all``) composed from NumPy (or CuPy) calls; in place.

    Not a face of the kernel: the alternative its faces are benchmarked against. For the G
    neurons that learn from one slice τ the first layers of all G critics are one GEMM
    ``X · W1ₓᵀ`` of ``(S, N) × (N, G·H)`` (their gradient one ``(G·H, S) × (S, N)``); the second
    layers, backward passes and slopes are batched ``(G, S, H) × (G, H, H)`` matmuls. Arguments
    as :func:`leaky.kernels.update_mlp.update_mlp_reference`.
    """
    from leaky.kernels import update_mlp as um

    if cfg.view != "all":
        raise ValueError("update_mlp_composed: only view='all'")
    T, B, N = Vs.shape
    xp, tau, agents = _composed_setup(theta, tau, n_inputs, N)
    H = um.mlp_hidden(N, theta.shape[1])
    act = lambda a: sigma(a, activation, xp)  # noqa: E731
    dact = lambda a: sigma_grad(a, activation, xp)  # noqa: E731
    step_size, eps_hat = cfg.adam_scalars(step)
    for t in np.unique(tau[agents]):
        idx = xp.asarray(agents[tau[agents] == t])
        sl = slice(None) if t < 0 else slice(int(t), int(t) + 1)
        X, Xn = Vs[sl].reshape(-1, N), Vn[sl].reshape(-1, N)
        y, a = ys[sl].reshape(-1, N)[:, idx].T, alphas[sl].reshape(-1, N)[:, idx].T   # (G, S)
        mu_next = act(yn[sl].reshape(-1, N)[:, idx].T)
        rr, cc = r[sl].reshape(1, -1), cont[sl].reshape(1, -1)
        G, S = y.shape
        th, thb = theta[idx], theta_bar[idx]

        def forward(rows, X, a):
            p = um.unpack_mlp(rows, H)
            W1 = p["W1"]                                                        # (G, H, N+1)
            a1 = (X @ W1[:, :, :N].reshape(G * H, N).T).reshape(S, G, H).transpose(1, 0, 2)
            h1 = xp.tanh(a1 + a[:, :, None] * W1[:, None, :, N] + p["b1"][:, None, :])
            h2 = xp.tanh(h1 @ p["W2"].transpose(0, 2, 1) + p["b2"][:, None, :])  # (G, S, H)
            return (h2 @ p["w3"][:, :, None])[..., 0] + p["b3"][:, None], h1, h2, p

        def backward(p, h1, h2):
            g2 = p["w3"][:, None, :] * (1 - h2 * h2)
            return (g2 @ p["W2"]) * (1 - h1 * h1), g2

        Q, h1, h2, p = forward(th, X, a)
        delta = rr + cc * forward(thb, Xn, mu_next)[0] - Q                        # (G, S)
        g1, g2 = backward(p, h1, h2)
        e1, e2 = delta[..., None] * g1, delta[..., None] * g2
        ascent = xp.empty_like(th)
        asc = um.unpack_mlp(ascent, H)
        asc["W1"][:, :, :N] = (e1.transpose(0, 2, 1).reshape(G * H, S) @ X).reshape(G, H, N) / S
        asc["W1"][:, :, N] = (e1 * a[:, :, None]).mean(axis=1)
        asc["b1"][...] = e1.mean(axis=1)
        asc["W2"][...] = e2.transpose(0, 2, 1) @ h1 / S
        asc["b2"][...] = e2.mean(axis=1)
        asc["w3"][...] = (delta[..., None] * h2).mean(axis=1)
        asc["b3"][...] = delta.mean(axis=1)
        if cfg.optimizer == "sgd":
            th += cfg.lr_critic * ascent
        else:
            adam_m[idx] = m = cfg.beta1 * adam_m[idx] - (1 - cfg.beta1) * ascent
            adam_v[idx] = v = cfg.beta2 * adam_v[idx] + (1 - cfg.beta2) * ascent * ascent
            th -= step_size * m / (xp.sqrt(v) + eps_hat)
        if cfg.actor:                       # the slope through the updated critic, at α = μ
            _, h1, h2, p = forward(th, X, act(y))
            slope = (backward(p, h1, h2)[0] @ p["W1"][:, :, N:])[..., 0]          # (G, S)
            s = slope * dact(y)
            K[idx] += cfg.lr_actor * (s @ X / S) * mask[idx]
            bias[idx] += cfg.lr_actor * s.mean(axis=1)
        theta[idx] = th
        theta_bar[idx] = (1 - cfg.tau_soft) * thb + cfg.tau_soft * th


def update_counts(N, S, T, B, nnz, n_inputs, family="advantage"):
    """(FLOPs, bytes) of one local update: S transitions per neuron, own critic, view all."""
    per = (6 if family == "advantage" else 3) * N
    macs = S * ((N - n_inputs) * per + nnz)
    width = 2 * N + 3
    nbytes = 4.0 * (5 * T * B * N + 2 * T * B + 2 * 4 * N * width + 2 * N * N + 2 * N + 3 * N)
    return 2.0 * macs, nbytes


def mlp_update_counts(N, S, T, B, H, nnz, n_inputs):
    """(FLOPs, bytes) of one MLP-critic update (kernels/update_mlp.py's count, agents only)."""
    macs = S * (N - n_inputs) * (4 * H * (N + 1) + 6 * H * H) + S * nnz
    width = H * (N + 1) + H * H + 3 * H + 1
    nbytes = 4.0 * (5 * T * B * N + 2 * T * B + 2 * 4 * N * width + 2 * N * N + 2 * N + 3 * N)
    return 2.0 * macs, nbytes


def _update_inputs(N, B, ell, family="advantage", H=16, seed=0):
    """A network's real caches of two consecutive steps, as the local learner builds them, and
    mid-run critic parameters of ``family`` (``advantage`` or ``mlp`` with H hidden units)."""
    from leaky.model.config import NetworkConfig
    from leaky.kernels import update_local as ul
    from leaky.learners.critics import MLPUpdateConfig, UpdateConfig, build_transitions, init_mlp_critics, neuron_slices
    from leaky.kernels import update_mlp as um
    from leaky.model.network import Network

    rng = np.random.default_rng(seed)
    cfg = NetworkConfig(n_neurons=N, n_inputs=3, n_outputs=1, delay=ell, leak=0.5, seed=seed)
    net = Network(cfg, backend="cpu")
    obs = rng.standard_normal((B, 3))
    V1, _, c1 = net.step(net.reset(B), obs, 0.1 * rng.standard_normal((ell, B, N)))
    _, _, c2 = net.step(V1, rng.standard_normal((B, 3)), 0.1 * rng.standard_normal((ell, B, N)))
    tr = build_transitions(c1, c2, rng.standard_normal(B).astype(np.float32),
                           np.zeros(B, np.float32), 0.99, "causal", np)
    tau = neuron_slices(net.decision_step, "causal")
    if family == "mlp":
        theta = init_mlp_critics(N, H, seed).theta
        ucfg = MLPUpdateConfig(lr_critic=1e-3, lr_actor=1e-2)
    else:
        lay = ul.critic_layout(N)
        theta = 0.1 * rng.standard_normal((N, lay.width))
        theta[:, lay.h] = -np.abs(theta[:, lay.h])
        ucfg = UpdateConfig(lr_critic=1e-3, lr_actor=1e-2)
    # a mid-run Adam state: the step is smooth in the gradient, so float32 rounding cannot flip
    # a sign the way m̂/√v̂ = ±1 at zero moments would
    params = dict(K=net.K.astype(np.float64), bias=0.1 * rng.standard_normal(N), theta=theta,
                  theta_bar=theta + 0.01 * rng.standard_normal(theta.shape),
                  adam_m=0.01 * rng.standard_normal(theta.shape),
                  adam_v=rng.uniform(0.01, 0.05, theta.shape))
    params = {k: v.astype(np.float32) for k, v in params.items()}
    return net, tr, tau, params, ucfg


def _update_faces(family):
    """``{face: fn}`` of one critic family, each called ``fn(data, tau, mask, lo, hi, p, diag,
    n_inputs, cfg, step)`` (p: the dict of arrays it updates), and its composed alternative."""
    from leaky.kernels import update_local as ul
    from leaky.kernels import update_mlp as um

    def params(p):
        return p["K"], p["bias"], p["theta"], p["theta_bar"], p["adam_m"], p["adam_v"]

    mlp = family == "mlp"

    def face(f):  # the local update takes the dopamine δ (None) after cont; the MLP one does not
        scratch = {}   # the cpu local face's workspace, reused between calls as LocalLearner does

        def call(d, tau, mask, lo, hi, p, diag, n_in, cfg, step):
            delta = () if mlp else (None,)
            extra = {}
            if f is ul.update_local_cpu:
                key = (d[0].shape, d[0].dtype)
                if key not in scratch:
                    scratch[key] = ul.cpu_workspace(*d[0].shape, dtype=d[0].dtype)
                extra["work"] = scratch[key]
            return f(*d, *delta, tau, mask, lo, hi, *params(p), diag, n_in, 0, cfg, step, **extra)
        return call

    def composed(d, tau, mask, lo, hi, p, diag, n_in, cfg, step):
        fn = update_mlp_composed if mlp else update_local_composed
        return fn(*d, tau, mask, *params(p), n_in, 0, cfg, step)

    return {name: face(f) for name, f in (um.FACES if mlp else ul.FACES).items()}, composed


def bench_update(grid=None, repeats: int = 7, reference_max_n: int = 256, mlp_grid=None,
                 mlp_hidden: int = 16) -> list[Row]:
    """Rows for every face of the fused local update (advantage critics) over ``grid`` of
    (N, B, ℓ), and of the MLP-critic update (H = ``mlp_hidden``) over ``mlp_grid``."""
    cases = [("advantage", *g) for g in (UPDATE_GRID if grid is None else grid)]
    cases += [("mlp", *g) for g in (MLP_UPDATE_GRID if mlp_grid is None else mlp_grid)]
    rows = []
    for family, N, B, ell in cases:
        rows.extend(_bench_update_case(family, N, B, ell, repeats, reference_max_n, mlp_hidden))
    return rows


def _bench_update_case(family, N, B, ell, repeats, reference_max_n, H) -> list[Row]:
    net, tr, tau, params, ucfg = _update_inputs(N, B, ell, family, H)
    lo, hi, mask = net.col_lo, net.col_hi, net.mask
    n_in, step = net.config.n_inputs, 3
    data = (tr.V, tr.y, tr.alpha, tr.V_next, tr.y_next, tr.reward, tr.cont)
    faces, composed = _update_faces(family)
    names = ("K", "bias", "theta", "theta_bar", "adam_m", "adam_v")

    def fresh(dtype):
        return {k: np.array(v, dtype=dtype) for k, v in params.items()}

    def call(fn, d, p, diag):
        return lambda: fn(d, tau, mask, lo, hi, p, diag, n_in, ucfg, step)

    d64 = [np.asarray(a, np.float64) for a in data]
    p64, diag64 = fresh(np.float64), np.zeros((N, 3))
    call(faces["numpy"], d64, p64, diag64)()
    want = [p64[k] for k in names]
    # tests/kernels/test_update_{local,mlp}.py's tolerances, with a margin of 4
    tol = 2.0 ** -24 * max(32, N + B + (H + 32 if family == "mlp" else 0)) * 4

    pc, pn = fresh(np.float32), fresh(np.float32)
    fused = call(faces["cpu"], data, pc, np.zeros((N, 3), np.float32))
    comp = call(composed, data, pn, None)
    fused()
    _check([pc[k] for k in names], want, N, f"update {family} cpu", names, tol)
    comp()
    _check([pn[k] for k in names], want, N, f"update {family} composed", names, tol)

    nnz = int(np.sum(hi - lo))
    if family == "mlp":
        flops, nbytes = mlp_update_counts(N, B, ell, B, H, nnz, n_in)
        what, shape = f"mlp critics H = {H}", (B, (N - n_in) * H, N)
    else:
        flops, nbytes = update_counts(N, B, ell, B, nnz, n_in)
        what, shape = "advantage critics", (B, N, N)
    rate = sgemm_rate(shape[0], shape[2], N2=shape[1])
    t_ceil = max(flops / rate, nbytes / copy_rate())
    t_comp = time_host(comp, repeats)
    t_fused = time_host(fused, repeats)
    rows = []

    def row(kernel, backend, t, note, comp_t=None):
        rows.append(_row("update", kernel, backend, B, N, ell, t, flops, nbytes, t_ceil, comp_t,
                         f"{what}; {note}"))

    row("roofline (ceiling)", "numpy", t_ceil,
        f"max(flops / SGEMM ({shape[0]},{shape[2]})x({shape[2]},{shape[1]}) {rate / 1e9:.0f} GFLOP/s, "
        f"bytes / copy)")
    row("composed", "numpy", t_comp, "GEMMs per τ group + elementwise", t_comp)
    row("fused", "cpu", t_fused, "numba.njit", t_comp)
    if N <= reference_max_n:
        ref = call(faces["numpy"], d64, fresh(np.float64), diag64)
        row("reference", "numpy", time_host(ref, repeats), "float64", t_comp)
    if gpu_available():
        import cupy as cp

        pd = {k: cp.asarray(v) for k, v in params.items()}
        dd = [cp.asarray(a) for a in data]
        dt, dm, dl, dh = (cp.asarray(a) for a in (tau, mask, lo, hi))
        gpu = lambda: faces["cuda"](dd, dt, dm, dl, dh, pd, cp.zeros((N, 3), cp.float32), n_in,  # noqa: E731
                                    ucfg, step)
        gpu()
        _check([pd[k] for k in names], want, N, f"update {family} cuda", names, tol)
        pg = {k: cp.asarray(v) for k, v in params.items()}
        comp_gpu = lambda: composed(dd, tau, dm, dl, dh, pg, None, n_in, ucfg, step)  # noqa: E731
        comp_gpu()
        _check([pg[k] for k in names], want, N, f"update {family} cupy composed", names, tol)
        a = cp.asarray(np.ones((shape[0], shape[2]), np.float32))
        b = cp.asarray(np.ones((shape[2], shape[1]), np.float32))
        t_gemm = time_gpu(lambda: a @ b)
        t_comp_gpu = time_gpu(comp_gpu)
        t_gpu = time_gpu(gpu)
        ceil_gpu = flops / (2.0 * shape[0] * shape[1] * shape[2] / t_gemm)
        rows.append(_row("update", "composed", "cuda", B, N, ell, t_comp_gpu, flops, nbytes, ceil_gpu,
                         t_comp_gpu, f"{what}; cuBLAS GEMMs per τ group + elementwise"))
        rows.append(_row("update", "fused", "cuda", B, N, ell, t_gpu, flops, nbytes, ceil_gpu, t_comp_gpu,
                         f"{what}; numba.cuda, one launch (ceiling: flops at cuBLAS's rate)"))
    return rows


# ---------------------------------------------------------------------------------------------
# update (learners): a whole local update against a whole DDPG update, equal parameter counts
# ---------------------------------------------------------------------------------------------

def ddpg_hidden_for(params: int, d_in: int) -> int:
    """Width H of a DDPG critic ``d_in → H → H → 1`` with about ``params`` parameters."""
    # (d_in + 1)·H + (H + 1)·H + H + 1 = H² + (d_in + 3)·H + 1
    return max(1, round((-(d_in + 3) + math.sqrt((d_in + 3) ** 2 + 4 * (params - 1))) / 2))


def _train_learners(N, B, ell, backend, K=None):
    """A local and a DDPG learner on identical dense networks, with one batch of data each."""
    from leaky.model.config import NetworkConfig
    from leaky.learners.ddpg import DDPGConfig, DDPGLearner
    from leaky.learners.local import LocalConfig, LocalLearner
    from leaky.model.network import Network
    from leaky.learners.base import Transition

    cfg = NetworkConfig(n_neurons=N, n_inputs=3, n_outputs=1, delay=ell, leak=0.5, seed=0)
    nets = [Network(cfg, backend=backend) for _ in range(2)]
    if K is not None:
        for net in nets:
            net.set_parameters(K=K)
    local = LocalLearner(nets[0], LocalConfig(rule="critic", batch_size=B, seed=0))
    nnz = int(np.sum(nets[0].col_hi - nets[0].col_lo))
    n_local = nnz + N + (N - cfg.n_inputs) * (2 * N + 3)
    H = ddpg_hidden_for(n_local - nnz - N, cfg.n_inputs + cfg.n_outputs)
    ddpg = DDPGLearner(nets[1], DDPGConfig(batch_size=B, learning_starts=0, buffer_size=4 * B,
                                           hidden=(H, H), seed=0))
    n_ddpg = nnz + N + sum(int(p.size) for p in ddpg.critic.params)

    rng = np.random.default_rng(0)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731 - same values on both backends
    obs, obs2 = f32(rng.standard_normal((B, 3))), f32(rng.standard_normal((B, 3)))
    xi1, xi2 = f32(0.1 * rng.standard_normal((ell, B, N))), f32(0.1 * rng.standard_normal((ell, B, N)))
    reward = f32(rng.standard_normal(B))
    net = nets[0]
    V1, _, c1 = net.step(net.reset(B), obs, xi1)
    V2, _, c2 = net.step(V1, obs2, xi2)
    transition = Transition(c1, net.backend.asarray(xi1), net.backend.asarray(reward),
                            net.backend.zeros(B), c2)
    action = f32(rng.uniform(-1, 1, (B, 1)))
    no = np.zeros(B, bool)
    for _ in range(2):
        ddpg.observe(obs, action, reward, obs2, no, no, V1, V2)
    return local, ddpg, transition, n_local, n_ddpg, H, nnz


def _check_learners(local, ref_local, ddpg, ref_ddpg, tr, N, B):
    """One update of each learner on the ``cpu`` backend and on the float64 ``numpy`` one.

    Metrics (TD errors, slopes, losses, Q values) must agree to float32 accuracy. Weights only to
    one optimiser step: both learners start Adam from zero moments, where the first step is
    ``lr·sign(g)`` and a gradient within rounding of 0 may take either sign.
    """
    from dataclasses import replace

    from leaky.model.network import StepCache

    f64 = lambda c: StepCache(*(np.asarray(a, np.float64) for a in (c.V, c.z, c.y, c.alpha)))  # noqa: E731
    ref_tr = replace(tr, cache=f64(tr.cache), next_cache=f64(tr.next_cache),
                     noise=np.asarray(tr.noise, np.float64), reward=np.asarray(tr.reward, np.float64),
                     terminated=np.asarray(tr.terminated, np.float64))
    for name, (got, want) in {"local": (local.learn(tr), ref_local.learn(ref_tr)),
                              "ddpg": (ddpg.update(), ref_ddpg.update())}.items():
        for key, w in want.items():
            if not abs(got[key] - w) <= 1e-3 * max(1.0, abs(w)):
                raise AssertionError(f"bench train {name}: {key} {got[key]:.6g} differs from the "
                                     f"float64 learner's {w:.6g}")
    lr = max(local.cfg.lr_actor * local.cfg.lr_critic * 10, 2 * ddpg.cfg.actor_lr) * 1.01
    for name, a, b in (("local", local.net.K, ref_local.net.K), ("ddpg", ddpg.net.K, ref_ddpg.net.K)):
        err = float(np.abs(np.asarray(a, np.float64) - b).max())
        if not err <= lr:
            raise AssertionError(f"bench train {name}: K differs from the float64 learner's by {err:.2e}"
                                 f" > one step {lr:.1e}")


def ddpg_update_macs(N, B, ell, nnz, d_in, hidden):
    """Multiply-adds of one DDPG update: actor 2 forward + 1 backward, critic 5 passes."""
    sizes = (d_in,) + tuple(hidden) + (1,)
    critic = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 4 * ell * B * nnz + 5 * B * critic


def bench_learners(grid=None, repeats: int = 7) -> list[Row]:
    """Whole learner updates, local vs DDPG (and SB3's DDPG when installed), over ``grid`` of
    (N, B, ℓ), in samples/s."""
    from leaky.core.backend import to_numpy

    rows = []
    for N, B, ell in TRAIN_GRID if grid is None else grid:
        local, ddpg, tr, n_local, n_ddpg, H, nnz = _train_learners(N, B, ell, "cpu")
        ref_local, ref_ddpg, *_ = _train_learners(N, B, ell, "numpy", K=to_numpy(local.net.K))
        _check_learners(local, ref_local, ddpg, ref_ddpg, tr, N, B)

        S = B
        u_flops, u_bytes = update_counts(N, S, ell, B, nnz, 3)
        d_macs = ddpg_update_macs(N, B, ell, nnz, 4, (H, H))
        d_flops = 2.0 * d_macs
        d_bytes = 4.0 * (3 * n_ddpg * 2 + 2 * B * (2 * 3 + 1 + 2 + 2 * N))   # params + Adam, the batch
        rate, bw = sgemm_rate(B, N), copy_rate()
        t_local = time_host(lambda: local.learn(tr), repeats)
        t_ddpg = time_host(ddpg.update, repeats)
        ratio = t_ddpg / t_local
        target = ""
        if (N, B, ell) == (256, 256, 2):
            target = f"; target ≥ {TRAIN_TARGET:g}×: {'met' if ratio >= TRAIN_TARGET else 'not met'}"
        rows.append(_row("update", "local learner", "cpu", B, N, ell, t_local, u_flops, u_bytes,
                         max(u_flops / rate, u_bytes / bw), None,
                         f"{n_local} params, advantage critics{target}", samples_per_s=B / t_local,
                         vs_baseline=ratio))
        rows.append(_row("update", "ddpg learner", "cpu", B, N, ell, t_ddpg, d_flops, d_bytes,
                         max(d_flops / rate, d_bytes / bw), None,
                         f"{n_ddpg} params, critic {H}-{H}", samples_per_s=B / t_ddpg, vs_baseline=1.0))
        sb3 = _sb3_ddpg(n_local, B)
        if sb3 is not None:
            step, n_sb3, H3 = sb3
            t_sb3 = time_host(step, repeats)
            s_flops = 2.0 * sb3_update_macs(B, 3, 1, H3)
            s_bytes = 4.0 * (3 * n_sb3 * 2 + B * (2 * 3 + 1 + 2))
            target = f"; local {t_sb3 / t_local:.2f}× this"
            if (N, B, ell) == (256, 256, 2):
                target += f" (target ≥ {SB3_TARGET:g}×: {'met' if t_sb3 / t_local >= SB3_TARGET else 'not met'})"
            rows.append(_row("update", "sb3 ddpg", "torch", B, N, ell, t_sb3, s_flops, s_bytes,
                             max(s_flops / rate, s_bytes / bw), None,
                             f"{n_sb3} params, actor and critic {H3}-{H3}, "
                             f"{_torch_threads()} torch thread(s){target}",
                             samples_per_s=B / t_sb3, vs_baseline=t_ddpg / t_sb3))
    return rows


# ---------------------------------------------------------------------------------------------
# update (shared critic): the credit kernels and the learners they make, against DDPG's BPTT
# ---------------------------------------------------------------------------------------------

CREDIT_GRID = [(256, 256, 2)]           # (N, B, ℓ): TRAIN_GRID's dense network at the target size
QUICK_CREDIT_GRID = [(32, 16, 2)]
CREDIT_RULES = ("feedback", "perturb")
CREDIT_TARGET = 3.0    # shared-critic actor step and learner update over DDPG's at N = B = 256


def critic_macs(B: int, d_in: int, hidden) -> int:
    """Multiply-adds of one pass of an MLP critic ``d_in → hidden… → 1`` over B rows."""
    sizes = (d_in,) + tuple(hidden) + (1,)
    return B * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def _credit_learners(N, B, ell):
    """``{rule: SharedCriticLearner}`` and a DDPGLearner on identical dense networks (3 sensors,
    1 output, λ = 0.5, the shared critic's widths and settings), each holding the same 4·B
    replayed transitions, and one sampled batch."""
    from leaky.model.config import NetworkConfig
    from leaky.learners.ddpg import DDPGLearner
    from leaky.learners.local import LocalConfig
    from leaky.model.network import Network
    from leaky.learners.shared_critic import SharedCriticLearner

    cfg = NetworkConfig(n_neurons=N, n_inputs=3, n_outputs=1, delay=ell, leak=0.5, seed=0)
    lcfg = {rule: LocalConfig(rule=rule, batch_size=B, learning_starts=0, replay_size=4 * B, seed=0)
            for rule in CREDIT_RULES}
    learners = {rule: SharedCriticLearner(Network(cfg, backend="cpu"), c) for rule, c in lcfg.items()}
    ddpg = DDPGLearner(Network(cfg, backend="cpu"), lcfg["feedback"].ddpg_config())
    rng = np.random.default_rng(0)
    no = np.zeros(B, bool)
    data = [(rng.standard_normal((B, 3)), rng.uniform(-1, 1, (B, 1)), rng.standard_normal(B),
             0.3 * rng.standard_normal((B, N)), 0.3 * rng.standard_normal((B, N))) for _ in range(4)]
    for learner in [*learners.values(), ddpg]:
        for obs, action, reward, V, V2 in data:
            learner.observe(obs, action, reward, obs + 0.01, no, no, V, V2)
    batch = ddpg.buffer.sample(B, np.random.default_rng(1))
    return learners, ddpg, batch


def _composed_faces(learner):
    """``learner`` with its kernels swapped for the composed alternatives: the tangent step's
    NumPy reference (float64 math on the float32 arrays) and credit_update_composed on NumPy."""
    from leaky.kernels import credit as ck
    from leaky.kernels import tangent as tk

    learner._tangent_face = tk.tangent_step_reference
    learner._credit_face = lambda *a: ck.credit_update_composed(np, *a)
    return learner


def bench_credit(grid=None, repeats: int = 7) -> list[Row]:
    """The shared-critic actor step's kernels (kernels/tangent, kernels/credit) against
    their composed alternatives, then whole actor steps and learner updates (rules feedback and
    perturb, k = 1 tangent) against DDPG's BPTT ones on the same network, over ``grid`` of
    (N, B, ℓ)."""
    rows = []
    for N, B, ell in CREDIT_GRID if grid is None else grid:
        rows.extend(_bench_credit_kernels(N, B, ell, repeats))
        rows.extend(_bench_credit_learners(N, B, ell, repeats))
    return rows


def _bench_credit_kernels(N, B, ell, repeats) -> list[Row]:
    from leaky.learners.ddpg import ActorParams, actor_forward
    from leaky.kernels import credit as ck
    from leaky.kernels import tangent as tk
    from leaky.kernels.scalar import adam_scalars

    learners, ddpg, batch = _credit_learners(N, B, ell)
    lr = learners["feedback"]
    net = lr.net
    n_in = net.config.n_inputs
    u = np.ascontiguousarray(net.encode(batch.obs), dtype=np.float32)
    tnet = lr._tangent_net(net.K, net.b)
    t0 = tk.first_injection(lr._tau, n_in, ell)
    nnz = int(np.sum(net.col_hi - net.col_lo))
    rate, bw = sgemm_rate(B, N), copy_rate()
    rows = []
    what = f"dense, {n_in} sensors, 1 output, λ = 0.5"

    def out_for(k):
        e = lambda *s: np.empty(s, np.float32)  # noqa: E731
        return tk.TangentOut(e(ell + 1, B, N), e(ell, B, N), e(ell, B, N), e(ell, B), e(k, B, N), e(k, B, N))

    T1 = np.random.default_rng(2).standard_normal((1, B, N)).astype(np.float32)
    forward = {}
    for k in (0, 1):
        T = T1[:k]
        out = out_for(k)
        fused = lambda: tk.tangent_step_cpu(batch.V, u, T, tnet, lr.flags, out)  # noqa: E731
        ref = lambda: tk.tangent_step_reference(batch.V, u, T, tnet, lr.flags)  # noqa: E731
        want = ref()
        m = 5 if k else 4       # Vc, z, y, scale (and Vdot)
        _check(fused()[:m], want[:m], N, f"tangent step k = {k} cpu", tk.TangentOut._fields[:m],
               tol=4e-6 * max(1.0, N / 64))
        macs = tk.tangent_work(B, k, ell, t0, net.col_lo, net.col_hi, lr._last)
        flops = 2.0 * macs
        nbytes = 4.0 * (N * N + B * N + B * n_in + (ell + 1 + 2 * ell) * B * N + 4 * k * B * N)
        t_ref = time_host(ref, repeats)
        t_fused = time_host(fused, repeats)
        ceil = max(flops / rate, nbytes / bw)
        note = f"{what}; pruned to the decision steps: {macs / (B * nnz):.2f}·B·nnz multiply-adds"
        rows.append(_row("update", f"tangent step k={k}", "numpy", B, N, ell, t_ref, flops, nbytes,
                         ceil, t_ref, "reference (float64) as the composed step; " + note))
        rows.append(_row("update", f"tangent step k={k}", "cpu", B, N, ell, t_fused, flops, nbytes,
                         ceil, t_ref, "numba.njit, one call; " + note))
        forward[k] = (t_fused, flops, nbytes, ceil)
    # DDPG's composed forward pass (float32 NumPy): what the k = 0 step replaces for target actions
    params = ActorParams.from_network(net)
    fwd = lambda: actor_forward(params, batch.V, u, n_in, net._activation, net._inhibition,  # noqa: E731
                                net.config.kappa, net._pulse, ell, np)
    _check([fwd().V], [tk.tangent_step_reference(batch.V, u, T1[:0], tnet._replace(
        last=np.full(N, ell - 1, np.int32)), lr.flags).Vc], N, "actor_forward", ("V",))
    t_fwd = time_host(fwd, repeats)
    f_fwd = 2.0 * ell * B * nnz
    rows.append(_row("update", "actor_forward", "numpy", B, N, ell, t_fwd, f_fwd, forward[0][2],
                     max(f_fwd / rate, forward[0][2] / bw), t_fwd,
                     f"{what}; DDPG's composed forward (GEMM + elementwise per step, every neuron "
                     f"every step); tangent k=0 cpu {t_fwd / forward[0][0]:.2f}× faster"))

    for rule in CREDIT_RULES:
        learner = learners[rule]
        T, tout = learner._forward(net.K, net.b, batch.V, batch.obs, learner.k)
        rng = np.random.default_rng(3)
        n_act = learner.n_act
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        cb = ck.CreditBatch(tout.Vc, tout.y, tout.scale, T, f32(tout.Vdot[:, :, N - n_act:]),
                            f32(rng.standard_normal((B, n_act))), f32(rng.uniform(0, 1, (B, n_act))))
        sc = ck.CreditScalars(n_in, net._activation, learner.rule, 0.01, *adam_scalars(1e-3, 5),
                              0.9, 0.999, True)

        agents = (np.arange(N) >= n_in).astype(np.float32)

        def fresh():   # a mid-run Adam state (see tests/kernels/test_credit.py), copies each time;
            g = np.random.default_rng(4)   # 0 where G is: the composed update steps whole arrays
            on = net.mask * agents[:, None]
            return ck.CreditParams(net.K.copy(), net.b.copy(), f32(0.1 * g.standard_normal((N, n_act))),
                                   f32(1e-3 * g.standard_normal((N, N)) * on),
                                   f32(g.uniform(1e-5, 2e-5, (N, N)) * on),
                                   f32(1e-3 * g.standard_normal(N) * agents),
                                   f32(g.uniform(1e-5, 2e-5, N) * agents))

        def grads():
            return ck.CreditGrads(np.empty((N, N), np.float32), np.empty(N, np.float32))

        p64 = ck.CreditParams(*(np.asarray(a, np.float64) for a in fresh()))
        o64 = ck.CreditGrads(np.empty((N, N)), np.empty(N))
        ck.credit_update_reference(cb, p64, learner.top, sc, o64)
        pc, oc, pn, on = fresh(), grads(), fresh(), grads()
        fused = lambda: ck.credit_update_cpu(cb, pc, learner.top, sc, oc)  # noqa: E731
        comp = lambda: ck.credit_update_composed(np, cb, pn, learner.top, sc, on)  # noqa: E731
        names = ("K", "bias", "F", "G", "Gb")
        tol = 2.0 ** -24 * max(16, B + N + learner.k) * 4
        for fn, name, p, o in ((fused, "cpu", pc, oc), (comp, "composed", pn, on)):
            fn()
            _check([p.K, p.bias, p.F, o.G, o.Gb], [p64.K, p64.bias, p64.F, o64.G, o64.Gb], N,
                   f"credit update {rule} {name}", names, tol)
        macs = ck.credit_work(B, learner.k, N, n_act, nnz)
        flops = 2.0 * macs
        nbytes = 4.0 * ((ell + 1 + ell + learner.k) * B * N + 8 * N * N)
        ceil = max(flops / rate, nbytes / bw)
        t_comp = time_host(comp, repeats)
        t_fused = time_host(fused, repeats)
        note = f"{what}; rule {rule}, k = {learner.k}, Adam applied"
        rows.append(_row("update", "credit update", "numpy", B, N, ell, t_comp, flops, nbytes, ceil,
                         t_comp, f"credit_update_composed (one GEMM per decision step); {note}"))
        rows.append(_row("update", "credit update", "cpu", B, N, ell, t_fused, flops, nbytes, ceil,
                         t_comp, f"numba.njit, one call; {note}"))
    return rows


def _bench_credit_learners(N, B, ell, repeats) -> list[Row]:
    from leaky.kernels import tangent as tk

    learners, ddpg, batch = _credit_learners(N, B, ell)
    composed = {rule: _composed_faces(l) for rule, l in _credit_learners(N, B, ell)[0].items()}
    net = ddpg.net
    n_in = net.config.n_inputs
    nnz = int(np.sum(net.col_hi - net.col_lo))
    hidden = ddpg.cfg.hidden
    crit = critic_macs(B, n_in + 1, hidden)
    t0 = tk.first_injection(learners["feedback"]._tau, n_in, ell)
    last = learners["feedback"]._last
    # counts: DDPG's actor step ℓ forward + 2ℓ backward GEMMs; the credit step its two kernels;
    # both a critic forward and backward (inputs only); updates add a target action and the
    # critic's TD step (forward, backward with parameter gradients: about 3 passes)
    d_actor = 3 * ell * B * nnz + 2 * crit
    d_update = d_actor + ell * B * nnz + 4 * crit
    rows = []

    # the same first step on the kernels and on the composed faces: G within float32 accuracy,
    # K within one Adam step (from zero moments a gradient within rounding of 0 takes either sign)
    for rule, learner in learners.items():
        ref = composed[rule]
        learner.actor_step(batch)
        ref.actor_step(batch)
        _check([learner.G], [np.asarray(ref.G, np.float64)], N, f"{rule} actor step G", ("G",),
               tol=2e-5 * max(1.0, N / 64))
        step = 2.0 * learner.local.lr_actor * 1.01
        err = float(np.abs(learner.net.K.astype(np.float64) - ref.net.K).max())
        if not err <= step:
            raise AssertionError(f"bench {rule} actor step: K differs from the composed faces' by "
                                 f"{err:.2e} > one step {step:.1e}")

    t_ddpg_actor = time_host(lambda: ddpg.actor_step(batch), repeats)
    t_ddpg_update = time_host(ddpg.update, repeats)
    params = nnz + N
    ddpg_note = f"{params} actor params, critic {'-'.join(map(str, hidden))}, BPTT through ℓ = {ell}"
    rows.append(_row("update", "ddpg actor step", "cpu", B, N, ell, t_ddpg_actor, 2.0 * d_actor, 0.0,
                     None, None, ddpg_note, samples_per_s=B / t_ddpg_actor, vs_baseline=1.0))
    rows.append(_row("update", "ddpg learner update", "cpu", B, N, ell, t_ddpg_update,
                     2.0 * d_update, 0.0, None, None, ddpg_note, samples_per_s=B / t_ddpg_update,
                     vs_baseline=1.0))
    for rule, learner in learners.items():
        k = learner.k
        c_actor = (tk.tangent_work(B, k, ell, t0, net.col_lo, net.col_hi, last)
                   + B * nnz + k * B * N + 2 * crit)
        c_update = c_actor + tk.tangent_work(B, 0, ell, t0, net.col_lo, net.col_hi, last) + 4 * crit
        for kind, t_base, macs, fn, comp_fn in (
                ("actor step", t_ddpg_actor, c_actor, lambda: learner.actor_step(batch),
                 lambda: composed[rule].actor_step(batch)),
                ("learner update", t_ddpg_update, c_update, learner.update, composed[rule].update)):
            t_comp = time_host(comp_fn, repeats)
            t = time_host(fn, repeats)
            target = ""
            if (N, B, ell) == (256, 256, 2):
                target = (f"; target ≥ {CREDIT_TARGET:g}× ddpg: "
                          f"{'met' if t_base / t >= CREDIT_TARGET else 'not met'}")
            note = f"rule {rule}, k = {k}, same network and critic as ddpg"
            rows.append(_row("update", f"{rule} {kind}", "numpy", B, N, ell, t_comp, 2.0 * macs, 0.0,
                             None, t_comp, f"{note}; composed faces (tangent reference, "
                             f"credit_update_composed)", samples_per_s=B / t_comp,
                             vs_baseline=t_base / t_comp))
            rows.append(_row("update", f"{rule} {kind}", "cpu", B, N, ell, t, 2.0 * macs, 0.0, None,
                             t_comp, f"{note}; numba.njit faces{target}", samples_per_s=B / t,
                             vs_baseline=t_base / t))
    return rows


def sb3_params(H: int, d_obs: int, d_act: int) -> int:
    """Trainable parameters of SB3's DDPG with ``net_arch=[H, H]`` (actor and critic)."""
    mlp = lambda d_in, d_out: (d_in + 1) * H + (H + 1) * H + (H + 1) * d_out  # noqa: E731
    return mlp(d_obs, d_act) + mlp(d_obs + d_act, 1)


def sb3_update_macs(B, d_obs, d_act, H):
    """Multiply-adds of one SB3 DDPG gradient step: the critic's target (target actor and target
    critic forward), critic forward and backward (×3), actor forward, critic forward and both
    backward through the critic into the actor (×3 each)."""
    actor = d_obs * H + H * H + H * d_act
    critic = (d_obs + d_act) * H + H * H + H
    return B * (actor + critic + 3 * critic + 3 * actor + 3 * critic)


def _torch_threads():
    import torch

    return torch.get_num_threads()


def _sb3_ddpg(params: int, B: int):
    """``(one gradient step, parameter count, H)`` of stable-baselines3's DDPG on Pendulum-v1
    with hidden width H chosen for ``params`` trainable parameters; None without SB3.

    Torch runs on as many threads as Numba (``numba.get_num_threads()``), so both sides of the
    ratio use the same cores. The replay buffer holds 4·B random transitions.
    """
    try:
        import gymnasium as gym
        import numba
        import torch
        from stable_baselines3 import DDPG
        from stable_baselines3.common.logger import configure
    except ImportError:
        return None
    torch.set_num_threads(numba.get_num_threads())
    H = min(range(1, 4096), key=lambda h: abs(sb3_params(h, 3, 1) - params))
    env = gym.make("Pendulum-v1")
    model = DDPG("MlpPolicy", env, policy_kwargs={"net_arch": [H, H]}, buffer_size=4 * B, batch_size=B,
                 learning_starts=0, device="cpu", seed=0)
    model.set_logger(configure(folder=None, format_strings=[]))
    rng = np.random.default_rng(0)
    for _ in range(4 * B):
        obs = rng.standard_normal((1, 3)).astype(np.float32)
        model.replay_buffer.add(obs, obs + 0.01, rng.uniform(-2, 2, (1, 1)).astype(np.float32),
                                rng.standard_normal(1).astype(np.float32), np.zeros(1), [{}])
    n = sum(p.numel() for p in model.actor.parameters()) + sum(p.numel() for p in model.critic.parameters())
    env.close()
    return (lambda: model.train(gradient_steps=1, batch_size=B)), int(n), H


# ---------------------------------------------------------------------------------------------
# train: the whole training loop, its time split into phases
# ---------------------------------------------------------------------------------------------

LOOP_CASES = [   # (learner, backend, options, trace)
    ("local", "cpu", {"rule": "critic"}, False),
    ("local", "cpu", {"rule": "critic"}, True),
    ("ddpg", "cpu", {"learning_starts": 256}, False),   # updates from the 33rd iteration on
    ("local", "cuda", {"rule": "critic"}, False),
    ("local", "cuda", {"rule": "critic", "graph": True}, False),
]


def bench_loop(steps: int = 8000, n_envs: int = 8, hidden=(64, 64), cases=None) -> list[Row]:
    """Env steps/s of ``leaky.training.loop`` on Pendulum-v1 (layered [3, *hidden, 1], ℓ = layers), with
    the wall time split into env, act, learn, logging and the rest (``TrainResult.timing``).

    Each case first runs ``4·n_envs`` steps untimed (compilation, caches), then ``steps`` steps;
    evaluation (one greedy episode at the end) is excluded from the rate. The local learner
    updates at every step (online); DDPG (critic 400-300, batch 256) from its 256th transition
    on. GPU cases run only with a GPU. The loop is made of the kernels the ``step`` and
    ``update`` suites check.
    """
    import tempfile

    from leaky.training.loop import TrainConfig, train

    rows = []
    for learner, backend, options, trace in LOOP_CASES if cases is None else cases:
        if backend == "cuda" and not gpu_available():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            def run(n):
                return train(TrainConfig(env="Pendulum-v1", learner=learner, backend=backend, steps=n,
                                         n_envs=n_envs, hidden=tuple(hidden), eval_every=n, eval_episodes=1,
                                         learner_options=dict(options), progress=False,
                                         trace=f"{tmp}/trace-{n}.h5" if trace else None))
            run(4 * n_envs)
            r = run(steps)
        busy = r.wall_seconds - r.timing["evaluation"] - r.timing["checkpoint"]
        if not (np.isfinite(r.final_eval) and busy > 0):
            raise AssertionError(f"bench train {learner}/{backend}: the run did not finish cleanly")
        iterations = r.env_steps // n_envs
        split = {k: v / busy for k, v in r.timing.items() if k not in ("evaluation", "checkpoint")}
        what = learner + (" graph" if options.get("graph") else "") + (" + trace" if trace else "")
        note = " · ".join(f"{k} {v:.0%}" for k, v in split.items())
        N = 3 + sum(hidden) + 1
        rows.append(_row("train", f"loop {what}", backend, n_envs, N, len(hidden) + 1, busy / iterations,
                         0.0, 0.0, note=note, samples_per_s=r.env_steps / busy, split=split))
    base = {r.backend: r.seconds for r in rows if r.kernel == "loop local"}
    for r in rows:
        r.vs_baseline = base.get(r.backend, r.seconds) / r.seconds
    return rows


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


# ---------------------------------------------------------------------------------------------
# solve: wall time to the first good greedy return
# ---------------------------------------------------------------------------------------------

SOLVE_TARGET = -200.0      # Pendulum-v1 greedy return counted as solved


def bench_solve(seeds=(0, 1, 2), max_steps: int = 30_000, eval_every: int = 1000,
                target: float = SOLVE_TARGET) -> list[Row]:
    """Wall time from the start of ``leaky.training.loop`` to the first greedy evaluation (5 episodes) at
    or above ``target`` on Pendulum-v1, for DDPG and the default local learner, on the main job's
    network (layered [3, 64, 64, 1], 8 envs, cpu backend). The time includes the evaluations
    (about 5 % here) and JIT compilation on a cold cache; rows give the env steps too. A run
    that never reaches the target reports its whole wall time and says so. The row's ``N`` column
    holds the env steps run, ``B`` the environments."""
    from leaky.learners.ddpg import RESULTS_OPTIONS
    from leaky.training.loop import TrainConfig, train

    rows = []
    for learner, options in (("ddpg", dict(RESULTS_OPTIONS)), ("local", {})):
        for seed in seeds:
            r = train(TrainConfig(env="Pendulum-v1", learner=learner, steps=max_steps, n_envs=8, seed=seed,
                                  hidden=(64, 64), learner_options=options, eval_every=eval_every,
                                  eval_episodes=5, progress=False, target_return=target))
            hit = next((i for i, e in enumerate(r.evaluations) if e["mean"] >= target), None)
            t = r.eval_wall[hit] if hit is not None else r.wall_seconds
            note = (f"seed {seed}: {r.evaluations[hit]['mean']:.0f} ≥ {target:.0f} after "
                    f"{r.evaluations[hit]['step']} env steps" if hit is not None else
                    f"seed {seed}: not reached in {r.env_steps} env steps (best "
                    f"{max(e['mean'] for e in r.evaluations):.0f})")
            rows.append(_row("solve", learner, "cpu", 8, r.env_steps, 3, t, 0.0, 0.0, note=note))
    return rows


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
