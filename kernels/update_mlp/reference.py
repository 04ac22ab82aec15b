"""The MLP-critic update in NumPy float64: the definition every face is checked against, and the
critics' values and slopes the learner and leaky align read."""

from __future__ import annotations

import numpy as np

from leaky.kernels.scalar import sigma, sigma_grad
from leaky.kernels.update_local.reference import _composed_setup, _store
from leaky.kernels.update_mlp.boundary import (VIEWS, ActorRows, CriticState, MLPScalars, Topology, Transitions,
                                               UpdateOut, mlp_hidden, mlp_layout, unpack_mlp)

# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------


def _row_views(row, N, H):
    lay = mlp_layout(N, H)
    return (row[:lay.b1].reshape(H, N + 1), row[lay.b1:lay.W2], row[lay.W2:lay.b2].reshape(H, H),
            row[lay.b2:lay.w3], row[lay.w3:lay.b3], row[lay.b3])


def mlp_forward_reference(row, inp, H):
    """One critic on inputs ``inp (S, N+1)`` = ``[x, α]``: returns ``Q (S,), h1, h2 (S, H)``."""
    N = inp.shape[1] - 1
    W1, b1, W2, b2, w3, b3 = _row_views(row, N, H)
    h1 = np.tanh(inp @ W1.T + b1)
    h2 = np.tanh(h1 @ W2.T + b2)
    return h2 @ w3 + b3, h1, h2


def _backward_np(row, h1, h2, N, H):
    """``∂Q/∂a2 = w3 (1 − h2²)`` and ``∂Q/∂a1 = (1 − h1²) ⊙ W2ᵀ ∂Q/∂a2``, per transition (S, H)."""
    _, _, W2, _, w3, _ = _row_views(row, N, H)
    g2 = w3 * (1.0 - h2 * h2)
    g1 = (g2 @ W2) * (1.0 - h1 * h1)
    return g1, g2


def critic_values(tr: Transitions, top: Topology, critic: CriticState, sc: MLPScalars, xp):
    """Every neuron's critic value ``Q_n(x, α)`` and TD error ``δ = r + cont·Q̄_n(x', μ_n(x'))
    − Q_n(x, α)`` on its transition of each batch row, with the critics before the update
    (the record of ``leaky.learners.local``; the slice of neuron n is ``update_local.record_slices``).
    Arguments as the faces take them (only ``tau`` and ``mask`` of ``top``, ``theta`` and
    ``theta_bar`` of ``critic`` are read); ``xp`` is the arrays' module (NumPy or CuPy).

    Returns
    -------
    q, td : (B, N) arrays of the transitions' dtype; NaN in the sensor columns.
    """
    tau, mask, theta, theta_bar = top.tau, top.mask, critic.theta, critic.theta_bar
    n_inputs, activation, view = sc.n_inputs, sc.activation, sc.view
    from leaky.kernels.update_local import record_slices

    T, B, N = tr.V.shape
    H = mlp_hidden(N, theta.shape[1])
    dt = tr.V.dtype
    q = xp.full((B, N), np.nan, dtype=dt)
    td = xp.full((B, N), np.nan, dtype=dt)
    act = lambda v: sigma(v, int(activation), xp)  # noqa: E731
    slices = record_slices(tau, T)
    agents = np.arange(int(n_inputs), N)

    def forward(rows, X, a, feat):
        """Q of critics ``rows`` (k, P) at features X (B, N) masked per critic, actions a (B, k)."""
        p = unpack_mlp(rows, H)
        W1 = p["W1"]
        h1 = xp.tanh(xp.einsum("bj,khj->bkh", X, W1[:, :, :N] * feat[:, None, :])
                     + W1[:, :, N][None] * a[:, :, None] + p["b1"][None])
        h2 = xp.tanh(xp.einsum("bkj,khj->bkh", h1, p["W2"]) + p["b2"][None])
        return xp.einsum("bkh,kh->bk", h2, p["w3"]) + p["b3"][None]

    for t in np.unique(slices[agents]):
        idx_np = agents[slices[agents] == t]
        idx = xp.asarray(idx_np)
        feat = ((mask[idx] != 0) if view == 1 else xp.ones((idx_np.size, N), bool)).astype(dt)
        Q = forward(theta[idx].astype(dt), tr.V[t], tr.alpha[t][:, idx], feat)
        Qbar = forward(theta_bar[idx].astype(dt), tr.V_next[t], act(tr.y_next[t][:, idx]), feat)
        q[:, idx] = Q
        td[:, idx] = tr.reward[t][:, None] + tr.cont[t][:, None] * Qbar - Q
    return q, td


def update_mlp_reference(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                         sc: MLPScalars, out: UpdateOut):
    """Definition of the fused MLP-critic update, in float64; steps ``actor`` and ``critic`` in
    place and writes ``out.diag``, which it returns.

    See the package docstring for the math and shapes. The Adam moments are read only under
    Adam (may be None under SGD); ``top.col_lo``/``col_hi`` are not read (the mask alone
    defines the presynaptic sets), nor ``tr.delta`` or ``out.work``.
    """
    Vs, ys, alphas, Vn, yn, r, cont, _ = tr
    tau, mask = top.tau, top.mask
    K, bias = actor
    theta, theta_bar, adam_m, adam_v = critic
    view, optimizer, n_inputs, activation = sc.view, sc.optimizer, sc.n_inputs, sc.activation
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    Vs, ys, alphas, Vn, yn, r, cont = map(f64, (Vs, ys, alphas, Vn, yn, r, cont))
    T, B, N = Vs.shape
    H = mlp_hidden(N, theta.shape[1])
    lay = mlp_layout(N, H)
    act, dact = (lambda y: sigma(y, activation)), (lambda y: sigma_grad(y, activation))
    M = np.asarray(mask) != 0
    th, thb, Kf, bf = f64(theta), f64(theta_bar), f64(K), f64(bias)
    am = f64(adam_m) if optimizer == 1 else None
    av = f64(adam_v) if optimizer == 1 else None
    step_size, eps_hat = sc.step_size, sc.eps_hat
    res = np.zeros((N, 3))

    for n in range(n_inputs, N):
        ts = np.arange(T) if tau[n] < 0 else np.array([tau[n]])
        feat = M[n] if view == 1 else np.ones(N, dtype=bool)
        X = Vs[ts].reshape(-1, N) * feat                       # (S, N) critic features
        Xn = Vn[ts].reshape(-1, N) * feat
        y = ys[ts, :, n].reshape(-1)
        a = alphas[ts, :, n].reshape(-1)
        mu_next = act(yn[ts, :, n].reshape(-1))

        # critic: semi-gradient of ½δ² (the target is a constant)
        Q, h1, h2 = mlp_forward_reference(th[n], np.column_stack([X, a]), H)
        Qbar, _, _ = mlp_forward_reference(thb[n], np.column_stack([Xn, mu_next]), H)
        delta = r[ts].reshape(-1) + cont[ts].reshape(-1) * Qbar - Q
        g1, g2 = _backward_np(th[n], h1, h2, N, H)
        e1, e2 = delta[:, None] * g1, delta[:, None] * g2        # δ ∂Q/∂a1, δ ∂Q/∂a2
        S = X.shape[0]
        ascent = np.empty(lay.width)                              # mean[δ ∂Q/∂θ], packed
        ascent[:lay.b1] = (e1.T @ np.column_stack([X, a])).reshape(-1) / S
        ascent[lay.b1:lay.W2] = e1.mean(axis=0)
        ascent[lay.W2:lay.b2] = (e2.T @ h1).reshape(-1) / S
        ascent[lay.b2:lay.w3] = e2.mean(axis=0)
        ascent[lay.w3:lay.b3] = (delta[:, None] * h2).mean(axis=0)
        ascent[lay.b3] = delta.mean()
        if optimizer == 0:
            th[n] += sc.lr_critic * ascent
        else:
            g = -ascent                                           # gradient of the loss
            am[n] = sc.beta1 * am[n] + (1.0 - sc.beta1) * g
            av[n] = sc.beta2 * av[n] + (1.0 - sc.beta2) * g * g
            th[n] -= step_size * am[n] / (np.sqrt(av[n]) + eps_hat)

        # actor, with the updated critic: slope ∂Q/∂α at α = μ = σ(y)
        slope = slopes_one_reference(th[n], X, act(y), H)
        if sc.actor:
            s = slope * dact(y)
            Vpre = Vs[ts].reshape(-1, N)                          # the inputs of the weights
            Kf[n, M[n]] += sc.lr_actor * (s[:, None] * Vpre).mean(axis=0)[M[n]]
            bf[n] += sc.lr_actor * s.mean()

        thb[n] = (1.0 - sc.tau_soft) * thb[n] + sc.tau_soft * th[n]
        res[n] = delta.mean(), np.abs(delta).mean(), slope.mean()

    return _store(actor, critic, out, Kf, bf, th, thb, am, av, res)


def slopes_one_reference(row, X, mu, H):
    """``∂Q/∂α`` at ``α = mu`` of one critic (packed ``row``) for features ``X (S, N)``: (S,)."""
    N = X.shape[1]
    _, h1, h2 = mlp_forward_reference(row, np.column_stack([X, mu]), H)
    g1, _ = _backward_np(row, h1, h2, N, H)
    W1 = _row_views(row, N, H)[0]
    return g1 @ W1[:, N]


def slopes_mlp_reference(V, y, mask, theta, n_inputs, activation, view, out=None):
    """``∂Q_n/∂α`` at ``α = μ_n = σ(y_n)`` for every batch row and neuron, in float64.

    Nothing is updated. ``V, y (B, N)`` the states' voltages and y after inhibition;
    ``theta (N, P)`` packed critics; ``view`` "all" or "presynaptic". Returns ``(B, N)``
    (written into ``out`` when given), 0 on sensor columns.
    """
    V = np.asarray(V, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    th = np.asarray(theta, dtype=np.float64)
    B, N = V.shape
    H = mlp_hidden(N, th.shape[1])
    M = np.asarray(mask) != 0
    res = np.zeros((B, N))
    for n in range(n_inputs, N):
        feat = M[n] if VIEWS[view] == 1 else np.ones(N, dtype=bool)
        res[:, n] = slopes_one_reference(th[n], V * feat, sigma(y[:, n], activation), H)
    if out is not None:
        out[...] = res
        return out
    return res


# ---------------------------------------------------------------------------------------------
# composed: the same update from batched calls (NumPy or CuPy), the benchmarks' alternative
# ---------------------------------------------------------------------------------------------

def update_mlp_composed(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                        sc: MLPScalars) -> None:
    """The MLP-critic update (view ``all``) composed from NumPy (or CuPy) calls; steps ``actor``
    and ``critic`` in place (no diagnostics).

    Not a face of the kernel: the alternative its faces are benchmarked against. For the G
    neurons that learn from one slice τ the first layers of all G critics are one GEMM
    ``X · W1ₓᵀ`` of ``(S, N) × (N, G·H)`` (their gradient one ``(G·H, S) × (S, N)``); the second
    layers, backward passes and slopes are batched ``(G, S, H) × (G, H, H)`` matmuls. Arguments
    as :func:`update_mlp_reference` (without ``out``).
    """
    Vs, ys, alphas, Vn, yn, r, cont, _ = tr
    tau, mask = top.tau, top.mask
    K, bias = actor
    theta, theta_bar, adam_m, adam_v = critic
    n_inputs, activation = sc.n_inputs, sc.activation
    if sc.view != 0:
        raise ValueError("update_mlp_composed: only view='all'")
    T, B, N = Vs.shape
    xp, tau, agents = _composed_setup(theta, tau, n_inputs, N)
    H = mlp_hidden(N, theta.shape[1])
    act = lambda a: sigma(a, activation, xp)  # noqa: E731
    dact = lambda a: sigma_grad(a, activation, xp)  # noqa: E731
    step_size, eps_hat = sc.step_size, sc.eps_hat
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
            p = unpack_mlp(rows, H)
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
        asc = unpack_mlp(ascent, H)
        asc["W1"][:, :, :N] = (e1.transpose(0, 2, 1).reshape(G * H, S) @ X).reshape(G, H, N) / S
        asc["W1"][:, :, N] = (e1 * a[:, :, None]).mean(axis=1)
        asc["b1"][...] = e1.mean(axis=1)
        asc["W2"][...] = e2.transpose(0, 2, 1) @ h1 / S
        asc["b2"][...] = e2.mean(axis=1)
        asc["w3"][...] = (delta[..., None] * h2).mean(axis=1)
        asc["b3"][...] = delta.mean(axis=1)
        if sc.optimizer == 0:
            th += sc.lr_critic * ascent
        else:
            adam_m[idx] = m = sc.beta1 * adam_m[idx] - (1 - sc.beta1) * ascent
            adam_v[idx] = v = sc.beta2 * adam_v[idx] + (1 - sc.beta2) * ascent * ascent
            th -= step_size * m / (xp.sqrt(v) + eps_hat)
        if sc.actor:                       # the slope through the updated critic, at α = μ
            _, h1, h2, p = forward(th, X, act(y))
            slope = (backward(p, h1, h2)[0] @ p["W1"][:, :, N:])[..., 0]          # (G, S)
            s = slope * dact(y)
            K[idx] += sc.lr_actor * (s @ X / S) * mask[idx]
            bias[idx] += sc.lr_actor * s.mean(axis=1)
        theta[idx] = th
        theta_bar[idx] = (1 - sc.tau_soft) * thb + sc.tau_soft * th
