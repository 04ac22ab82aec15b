"""The credit update's reference face (NumPy, float64: the definition) and its composed alternative
(kernels/credit/__init__.py has the math)."""

from __future__ import annotations

import numpy as np

from leaky.kernels.credit.boundary import RULES, CreditBatch, CreditGrads, CreditParams, CreditScalars
from leaky.kernels.data import Topology
from leaky.kernels.scalar import adam_arrays, sigma_grad


def _adam_descent(theta, m, v, grad, cols, sc):
    """One Adam step of ``theta[cols]`` down ``grad`` (views, changed in place)."""
    t, mc, vc = theta[cols], m[cols], v[cols]
    adam_arrays(t, mc, vc, grad[cols], sc.step_size, sc.eps_hat, sc.beta1, sc.beta2)
    theta[cols], m[cols], v[cols] = t, mc, vc


def credit_update_reference(batch: CreditBatch, params: CreditParams, top: Topology,
                            sc: CreditScalars, out: CreditGrads) -> CreditGrads:
    """Definition of the credit update, in float64; changes ``params`` and writes ``out`` in place
    (``col_lo``/``col_hi`` are not read: the mask alone defines the rows)."""
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    Vc, y, scale, T, adot, g, dadv = map(f64, batch)
    K, bias, F, mK, vK, mb, vb = map(f64, params)
    tau = np.asarray(top.tau)
    M = np.asarray(top.mask) != 0
    k, B, N = T.shape
    n_out = g.shape[1]
    n_in = sc.n_inputs
    if k == 0 and sc.rule != RULES["dfa"]:
        raise ValueError("credit update: the perturb and feedback rules need k >= 1 tangents")
    G = np.zeros((N, N))
    Gb = np.zeros(N)
    d = np.einsum("bo,jbo->jb", g, adot)                        # g·ȧ per tangent, (k, B)
    for n in range(n_in, N):
        if n >= N - n_out:
            o = n - (N - n_out)
            e = g[:, o] * dadv[:, o]
        elif sc.rule == RULES["perturb"]:
            e = (d * T[:, :, n]).mean(axis=0)
        else:
            if sc.rule == RULES["feedback"]:
                F[n] = (1.0 - sc.feedback_rate) * F[n] + sc.feedback_rate * np.einsum(
                    "jbo,jb->o", adot, T[:, :, n]) / (k * B)
            e = g @ F[n]
        t = tau[n]
        gz = e * sigma_grad(y[t, :, n], sc.activation) * scale[t]
        G[n] = (gz @ Vc[t]) / B * M[n]
        Gb[n] = gz.mean()
        if sc.apply:
            _adam_descent(K[n], mK[n], vK[n], -G[n], M[n], sc)
            _adam_descent(bias[n:n + 1], mb[n:n + 1], vb[n:n + 1], -Gb[n:n + 1], np.ones(1, bool), sc)
    for dst, src in zip(params, (K, bias, F, mK, vK, mb, vb)):
        dst[...] = src
    out.G[...] = G
    out.Gb[...] = Gb
    return out


def credit_update_composed(xp, batch: CreditBatch, params: CreditParams, top: Topology,
                           sc: CreditScalars, out: CreditGrads) -> CreditGrads:
    """The same update composed from library calls on ``xp`` (NumPy or CuPy), in the arrays'
    dtype: every neuron at once, one GEMM per distinct decision step, Adam over whole arrays.

    Not a face: the alternative the faces are benchmarked against. Off the mask and on sensor
    rows G is 0, so Adam's moments stay 0 there and K does not move (as in the reference,
    provided the moments start at 0 there).
    """
    Vc, y, scale, T, adot, g, dadv = batch
    K, bias, F, mK, vK, mb, vb = params
    k, B, N = T.shape
    n_out = g.shape[1]
    n_in = sc.n_inputs
    hidden = slice(n_in, N - n_out)
    E = xp.zeros((B, N), dtype=K.dtype)
    if sc.rule == RULES["perturb"]:
        d = xp.einsum("bo,jbo->jb", g, adot)
        E[:, hidden] = (d[:, :, None] * T[:, :, hidden]).mean(axis=0)
    else:
        if sc.rule == RULES["feedback"]:
            F[hidden] *= 1.0 - sc.feedback_rate
            F[hidden] += (sc.feedback_rate / (k * B)) * xp.einsum("jbo,jbn->no", adot, T[:, :, hidden])
        E[:, hidden] = g @ F[hidden].T
    E[:, N - n_out:] = g * dadv
    tau = xp.asarray(top.tau)
    cols = xp.arange(N)
    y_tau = y[tau, :, cols]                                     # (N, B): y[tau[n], :, n]
    gz = E.T * sigma_grad(y_tau, sc.activation, xp) * scale[tau]
    gz[:n_in] = 0.0
    G, Gb = out
    G[...] = 0.0
    tau_host = np.asarray(top.tau.get() if hasattr(top.tau, "get") else top.tau)
    for t in np.unique(tau_host[n_in:]):
        rows = xp.asarray(np.flatnonzero(tau_host == t))
        G[rows] = gz[rows] @ Vc[int(t)]
    G *= top.mask * (1.0 / B)
    Gb[...] = gz.mean(axis=1)
    if sc.apply:   # Adam on the loss −mean Q: down −G
        for theta, m, v, grad in ((K, mK, vK, G), (bias, mb, vb, Gb)):
            adam_arrays(theta, m, v, -grad, sc.step_size, sc.eps_hat, sc.beta1, sc.beta2)
    return out
