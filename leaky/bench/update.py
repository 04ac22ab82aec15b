"""``leaky bench update``, kernels: the fused local update against the same update composed from
GEMMs (:func:`update_local_composed`, :func:`update_mlp_composed`)."""

from __future__ import annotations


import numpy as np

from leaky.core.backend import gpu_available
from leaky.kernels.scalar import sigma, sigma_grad
from leaky.bench.timing import Row, _check, _row, copy_rate, sgemm_rate, time_gpu, time_host


UPDATE_GRID = [(64, 64, 2), (256, 256, 2), (1024, 256, 2)]   # (N, B, ℓ)
QUICK_UPDATE_GRID = [(32, 16, 2)]
MLP_UPDATE_GRID = [(64, 64, 2), (256, 256, 2)]
QUICK_MLP_UPDATE_GRID = [(16, 8, 2)]


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
