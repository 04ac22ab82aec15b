"""The fused local update in NumPy float64: the definition every face is checked against."""

from __future__ import annotations

import numpy as np

try:  # the cuda face needs numba-cuda; the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.scalar import sigma, sigma_grad
from leaky.kernels.update_local.boundary import _masks, critic_layout

# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------


def update_local_reference(Vs, ys, alphas, Vn, yn, r, cont, delta, tau, mask, col_lo, col_hi,
                           K, bias, theta, theta_bar, adam_m, adam_v, diag, n_inputs, activation,
                           cfg, step):
    """Definition of the fused local update, in float64; updates the arrays in place.

    See the module docstring for the math and shapes. ``delta`` is read only under
    ``baseline="dopamine"`` (may be None otherwise), ``adam_m``/``adam_v`` only under Adam
    (may be None under SGD); ``col_lo``/``col_hi`` are not read (the mask alone defines the
    presynaptic sets: the faces that skip outside the ranges must agree with this). ``step`` is
    the Adam step ≥ 1 of this update. Returns ``diag``.
    """
    family, view, baseline, optimizer = cfg.codes
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    Vs, ys, alphas, Vn, yn, r, cont = map(f64, (Vs, ys, alphas, Vn, yn, r, cont))
    T, B, N = Vs.shape
    lay = critic_layout(N)
    act, dact = (lambda y: sigma(y, activation)), (lambda y: sigma_grad(y, activation))
    M = np.asarray(mask) != 0
    th, thb, Kf, bf = f64(theta), f64(theta_bar), f64(K), f64(bias)
    am = f64(adam_m) if optimizer == 1 else None
    av = f64(adam_v) if optimizer == 1 else None
    step_size, eps_hat = cfg.adam_scalars(step)
    out = np.zeros((N, 3))

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
            th[n, trained] += cfg.lr_critic * ascent[trained]
        else:
            g = -ascent[trained]                               # gradient of the loss ½e²
            am[n, trained] = cfg.beta1 * am[n, trained] + (1.0 - cfg.beta1) * g
            av[n, trained] = cfg.beta2 * av[n, trained] + (1.0 - cfg.beta2) * g * g
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
        Kf[n, M[n]] += cfg.lr_actor * (s[:, None] * Vpre).mean(axis=0)[M[n]]
        bf[n] += cfg.lr_actor * s.mean()

        thb[n, owned] = (1.0 - cfg.tau_soft) * thb[n, owned] + cfg.tau_soft * th[n, owned]
        out[n] = e.mean(), np.abs(e).mean(), slope.mean()

    theta[...] = th
    theta_bar[...] = thb
    K[...] = Kf
    bias[...] = bf
    if optimizer == 1:
        adam_m[...] = am
        adam_v[...] = av
    diag[...] = out
    return diag
