"""The fused local update in NumPy float64: the definition every face is checked against."""

from __future__ import annotations

import numpy as np

from leaky.kernels.data import array_module
from leaky.kernels.scalar import sigma, sigma_grad
from leaky.kernels.update_local.boundary import (ActorRows, CriticState, LocalScalars, Topology, Transitions,
                                                 UpdateOut, _masks, critic_layout)

# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------


def _store(actor, critic, out, Kf, bf, th, thb, am, av, res):
    """Write a reference's float64 results back into the caller's arrays (Adam's moments only
    when stepped: ``am`` is None under SGD); returns ``out.diag``."""
    actor.K[...] = Kf
    actor.bias[...] = bf
    critic.theta[...] = th
    critic.theta_bar[...] = thb
    if am is not None:
        critic.adam_m[...] = am
        critic.adam_v[...] = av
    out.diag[...] = res
    return out.diag


def update_local_reference(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                           sc: LocalScalars, out: UpdateOut):
    """Definition of the fused local update, in float64; steps ``actor`` and ``critic`` in place
    and writes ``out.diag``, which it returns.

    See the package docstring for the math and shapes. ``tr.delta`` is read only under
    ``baseline="dopamine"`` (may be None otherwise), the Adam moments only under Adam (may be
    None under SGD); ``top.col_lo``/``col_hi`` are not read (the mask alone defines the
    presynaptic sets: the faces that skip outside the ranges must agree with this), nor
    ``out.work``.
    """
    Vs, ys, alphas, Vn, yn, r, cont, delta = tr
    tau, mask = top.tau, top.mask
    K, bias = actor
    theta, theta_bar, adam_m, adam_v = critic
    family, view, baseline, optimizer = sc.family, sc.view, sc.baseline, sc.optimizer
    n_inputs, activation = sc.n_inputs, sc.activation
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    Vs, ys, alphas, Vn, yn, r, cont = map(f64, (Vs, ys, alphas, Vn, yn, r, cont))
    T, B, N = Vs.shape
    lay = critic_layout(N)
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
        X = Vs[ts].reshape(-1, N) * feat                  # (S, N) critic features
        Xn = Vn[ts].reshape(-1, N) * feat
        y = ys[ts, :, n].reshape(-1)
        a = alphas[ts, :, n].reshape(-1)
        d = a - act(y)
        w, p = th[n, lay.w], th[n, lay.p]
        c, u, h = th[n, lay.c], th[n, lay.u], th[n, lay.h]

        # critic: the residual e and the gradient features ∂Q/∂θ (or ∂A/∂θ)
        grad_features = np.zeros((X.shape[0], lay.width))
        if baseline == 0:
            if family == 1:
                Q = X @ w + c + d * (u + X @ p) + 0.5 * h * d * d
                bootstrap = Xn @ thb[n, lay.w] + thb[n, lay.c]
            else:
                Q = X @ w + u * a + c
                mu_next = act(yn[ts, :, n].reshape(-1))
                bootstrap = Xn @ thb[n, lay.w] + thb[n, lay.u] * mu_next + thb[n, lay.c]
            target = r[ts].reshape(-1) + cont[ts].reshape(-1) * bootstrap
            e = target - Q
            grad_features[:, lay.w] = X
            grad_features[:, lay.c] = 1.0
            grad_features[:, lay.u] = d if family == 1 else a
        else:
            A = d * (u + X @ p) + 0.5 * h * d * d if family == 1 else u * d
            e = np.asarray(delta, dtype=np.float64)[ts].reshape(-1) - A
            grad_features[:, lay.u] = d
        if family == 1:
            grad_features[:, lay.p] = d[:, None] * X
            grad_features[:, lay.h] = 0.5 * d * d
        ascent = (e[:, None] * grad_features).mean(axis=0)   # mean[e ∂Q/∂θ]

        trained, owned = _masks(family, view, baseline, M[n])
        if optimizer == 0:
            th[n, trained] += sc.lr_critic * ascent[trained]
        else:
            g = -ascent[trained]                               # gradient of the loss ½e²
            am[n, trained] = sc.beta1 * am[n, trained] + (1.0 - sc.beta1) * g
            av[n, trained] = sc.beta2 * av[n, trained] + (1.0 - sc.beta2) * g * g
            th[n, trained] -= step_size * am[n, trained] / (np.sqrt(av[n, trained]) + eps_hat)
        if family == 1:
            th[n, lay.h] = min(th[n, lay.h], 0.0)

        # actor, with the updated critic: slope ∂Q/∂α at α = μ
        if family == 1:
            slope = th[n, lay.u] + X @ th[n, lay.p]
        else:
            slope = np.full(X.shape[0], th[n, lay.u])
        s = slope * dact(y)
        Vpre = Vs[ts].reshape(-1, N)                          # the inputs of the weights
        Kf[n, M[n]] += sc.lr_actor * (s[:, None] * Vpre).mean(axis=0)[M[n]]
        bf[n] += sc.lr_actor * s.mean()

        thb[n, owned] = (1.0 - sc.tau_soft) * thb[n, owned] + sc.tau_soft * th[n, owned]
        res[n] = e.mean(), np.abs(e).mean(), slope.mean()

    return _store(actor, critic, out, Kf, bf, th, thb, am, av, res)


# ---------------------------------------------------------------------------------------------
# composed: the same update from whole-array calls (NumPy or CuPy), the benchmarks' alternative
# ---------------------------------------------------------------------------------------------

def _composed_setup(theta, tau, n_inputs, N):
    """Array module of the parameters (NumPy or CuPy), the host copy of ``tau`` and the agents."""
    xp = array_module(theta)
    tau = np.asarray(tau.get() if hasattr(tau, "get") else tau)
    return xp, tau, np.arange(n_inputs, N)


def update_local_composed(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                          sc: LocalScalars) -> None:
    """The local update (own critic, view ``all``) composed from NumPy (or CuPy) calls; steps
    ``actor`` and ``critic`` in place (no diagnostics).

    Not a face of the kernel: the alternative its faces are benchmarked against. Neurons that
    learn from the same slice τ form one group, and every per-neuron dot product of the group
    becomes one GEMM over the S transitions: ``X Wᵀ``, ``X Pᵀ``, ``X' W̄ᵀ``, ``Eᵀ X``,
    ``(E⊙D)ᵀ X``, ``X P'ᵀ`` and ``Sᵀ X`` (about ``6N + N`` multiply-adds per neuron and
    transition, as the fused kernel), then Adam, the soft update and ``K += ΔK ⊙ M`` on the
    group's rows. Arguments as :func:`update_local_reference` (without ``out``).
    """
    Vs, ys, alphas, Vn, yn, r, cont, _ = tr
    tau, mask = top.tau, top.mask
    K, bias = actor
    theta, theta_bar, adam_m, adam_v = critic
    n_inputs, activation = sc.n_inputs, sc.activation
    if sc.view != 0 or sc.baseline != 0:
        raise ValueError("update_local_composed: only view='all', baseline='own'")
    T, B, N = Vs.shape
    xp, tau, agents = _composed_setup(theta, tau, n_inputs, N)
    lay = critic_layout(N)
    act = lambda a: sigma(a, activation, xp)  # noqa: E731
    dact = lambda a: sigma_grad(a, activation, xp)  # noqa: E731
    advantage = sc.family == 1
    step_size, eps_hat = sc.step_size, sc.eps_hat
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
        if sc.optimizer == 0:
            th[:, cols] += sc.lr_critic * ascent[:, cols]
        else:
            rc = xp.ix_(idx, cols)
            g = -ascent[:, cols]
            adam_m[rc] = m = sc.beta1 * adam_m[rc] + (1 - sc.beta1) * g
            adam_v[rc] = v = sc.beta2 * adam_v[rc] + (1 - sc.beta2) * g * g
            th[:, cols] -= step_size * m / (xp.sqrt(v) + eps_hat)
        if advantage:
            th[:, lay.h] = xp.minimum(th[:, lay.h], 0)
            slope = th[:, lay.u] + X @ th[:, lay.p].T
        else:
            slope = xp.broadcast_to(th[:, lay.u], e.shape)
        s = slope * dact(y)
        K[idx] += sc.lr_actor * (s.T @ X / S) * mask[idx]
        bias[idx] += sc.lr_actor * s.mean(axis=0)
        thb[:, cols] = (1 - sc.tau_soft) * thb[:, cols] + sc.tau_soft * th[:, cols]
        theta[idx], theta_bar[idx] = th, thb
