"""The tangent step's reference face: NumPy, float64, the definition (kernels/tangent/__init__.py
has the math)."""

from __future__ import annotations

import numpy as np

from leaky.kernels.scalar import sigma, sigma_grad
from leaky.kernels.tangent.boundary import TangentFlags, TangentNet, TangentOut, check_last


def tangent_step_reference(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut | None = None
                           ) -> TangentOut:
    """Definition of the tangent step, in float64 (``col_lo``/``col_hi`` are not read: the masked
    K alone defines the products, so the faces that skip outside the ranges must agree)."""
    n_in, act_code, inhibition, kappa, pulse, ell = flags
    check_last(net.tau, net.last, ell, inhibition)
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    V, u, T = f64(V0), f64(u), f64(T)
    K, bias, leak = f64(net.K), f64(net.bias), f64(net.leak)
    tau, last = np.asarray(net.tau), np.asarray(net.last)
    k, B, N = T.shape
    T[:, :, :n_in] = 0.0                          # sensors are not agents
    if pulse:
        V[:, :n_in] += u
    else:
        V[:, :n_in] = u
    Vd = np.zeros((k, B, N))
    Vc = np.empty((ell + 1, B, N))
    z = np.zeros((ell, B, N))
    y = np.zeros((ell, B, N))
    scale = np.ones((ell, B))
    Vc[0] = V
    for t in range(ell):
        live = t <= last                                          # (N,)
        zt = V @ K.T + bias
        zd = Vd @ K.T
        if inhibition == 1:
            n_agents = N - n_in
            s = 1.0 / (1.0 + kappa * np.abs(zt[:, n_in:]).mean(axis=1, keepdims=True))   # (B, 1)
            yt = zt * s
            coupling = (np.sign(zt[:, n_in:]) * zd[:, :, n_in:]).sum(axis=-1, keepdims=True) / n_agents
            yd = s * zd - kappa * s * s * zt * coupling
            scale[t] = s[:, 0]
        else:
            yt, yd = zt, zd
        inject = (tau == t) & (np.arange(N) >= n_in)
        V_new = (1.0 - leak) * V + leak * sigma(yt, act_code)
        Vd_new = (1.0 - leak) * Vd + leak * (sigma_grad(yt, act_code) * yd + T * inject)
        if not pulse:
            V_new[:, :n_in] = u
            Vd_new[:, :, :n_in] = 0.0
        V = np.where(live, V_new, V)
        Vd = np.where(live, Vd_new, Vd)
        z[t] = np.where(live, zt, 0.0)
        y[t] = np.where(live, yt, 0.0)
        Vc[t + 1] = V
    result = TangentOut(Vc, z, y, scale, Vd)
    if out is None:
        return result
    for dst, src in zip(out, result):
        dst[...] = src
    return out
