"""``leaky bench update``, kernels: the fused local update against the same update composed from
GEMMs (``update_local_composed`` and ``update_mlp_composed``, beside their references in
kernels/update_local/ and kernels/update_mlp/)."""

from __future__ import annotations


import numpy as np

from leaky.core.backend import gpu_available
from leaky.bench.timing import Row, _check, _row, copy_rate, sgemm_rate, time_gpu, time_host


UPDATE_GRID = [(64, 64, 2), (256, 256, 2), (1024, 256, 2)]   # (N, B, ℓ)
QUICK_UPDATE_GRID = [(32, 16, 2)]
MLP_UPDATE_GRID = [(64, 64, 2), (256, 256, 2)]
QUICK_MLP_UPDATE_GRID = [(16, 8, 2)]


# ---------------------------------------------------------------------------------------------
# update: the fused local update against the same update composed from GEMMs
# ---------------------------------------------------------------------------------------------

def update_counts(N, S, T, B, nnz, n_inputs, family="advantage"):
    """(FLOPs, bytes) of one local update: S transitions per neuron, own critic, view all."""
    per = (6 if family == "advantage" else 3) * N
    macs = S * ((N - n_inputs) * per + nnz)
    width = 2 * N + 3
    nbytes = 4.0 * (5 * T * B * N + 2 * T * B + 2 * 4 * N * width + 2 * N * N + 2 * N + 3 * N)
    return 2.0 * macs, nbytes


def mlp_update_counts(N, S, T, B, H, nnz, n_inputs):
    """(FLOPs, bytes) of one MLP-critic update (kernels/update_mlp/'s count, agents only)."""
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
    """``{face: fn}`` of one critic family, each called ``fn(tr, top, p, diag, sc)`` (``p``: the
    dict of arrays it steps in place), and its composed alternative, called the same way
    (``diag`` unused)."""
    from leaky.kernels import update_local as ul
    from leaky.kernels import update_mlp as um
    from leaky.kernels.data import ActorRows, CriticState, UpdateOut

    def state(p):
        return ActorRows(p["K"], p["bias"]), CriticState(p["theta"], p["theta_bar"], p["adam_m"], p["adam_v"])

    def face(f):
        scratch = {}   # the cpu local face's workspace, reused between calls as LocalLearner does

        def call(tr, top, p, diag, sc):
            work = None
            if f is ul.update_local_cpu:
                key = (tr.V.shape, tr.V.dtype)
                if key not in scratch:
                    scratch[key] = ul.cpu_workspace(*tr.V.shape, dtype=tr.V.dtype)
                work = scratch[key]
            return f(tr, top, *state(p), sc, UpdateOut(diag, work))
        return call

    def composed(tr, top, p, diag, sc):
        fn = um.update_mlp_composed if family == "mlp" else ul.update_local_composed
        return fn(tr, top, *state(p), sc)

    return {name: face(f) for name, f in (um.FACES if family == "mlp" else ul.FACES).items()}, composed


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
    from leaky.kernels.data import Topology

    net, tr, tau, params, ucfg = _update_inputs(N, B, ell, family, H)
    lo, hi, mask = net.col_lo, net.col_hi, net.mask
    n_in = net.config.n_inputs
    sc = ucfg.scalars(n_in, 0, 3)          # activation tanh, Adam step 3
    top = Topology(tau, mask, lo, hi)
    faces, composed = _update_faces(family)
    names = ("K", "bias", "theta", "theta_bar", "adam_m", "adam_v")

    def fresh(dtype):
        return {k: np.array(v, dtype=dtype) for k, v in params.items()}

    def call(fn, d, p, diag, t=top):
        return lambda: fn(d, t, p, diag, sc)

    d64 = tr._replace(**{k: np.asarray(v, np.float64) for k, v in tr._asdict().items() if v is not None})
    p64, diag64 = fresh(np.float64), np.zeros((N, 3))
    call(faces["numpy"], d64, p64, diag64)()
    want = [p64[k] for k in names]
    # tests/kernels/test_update_{local,mlp}.py's tolerances, with a margin of 4
    tol = 2.0 ** -24 * max(32, N + B + (H + 32 if family == "mlp" else 0)) * 4

    pc, pn = fresh(np.float32), fresh(np.float32)
    fused = call(faces["cpu"], tr, pc, np.zeros((N, 3), np.float32))
    comp = call(composed, tr, pn, None)
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
        dd = tr._replace(**{k: cp.asarray(v) for k, v in tr._asdict().items() if v is not None})
        top_d = Topology(*(cp.asarray(a) for a in top))
        gpu = call(faces["cuda"], dd, pd, cp.zeros((N, 3), cp.float32), top_d)
        gpu()
        _check([pd[k] for k in names], want, N, f"update {family} cuda", names, tol)
        pg = {k: cp.asarray(v) for k, v in params.items()}
        comp_gpu = call(composed, dd, pg, None, top_d)
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
