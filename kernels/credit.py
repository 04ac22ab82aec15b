"""Credit update: every neuron's estimate of its own effect on the critic, its row gradient and
its Adam step, in one call. No backpropagation through the network.

A shared critic ``Q(s, a)`` broadcasts ``g = ∂Q/∂a`` per sample (d_act numbers, a vector
dopamine). Each agent neuron n turns it into ``e[b, n] ≈ ∂Q/∂α_n``, the sensitivity of the critic
to its activity at its decision step ``t = tau[n]``, by one of three rules::

    perturb   e[b, n] = (1/k) Σ_j (g[b]·ȧ[j, b]) T[j, b, n]        activity tangents T, carried to
                                                                   the action by kernels/tangent.py
    feedback  F[n] ← (1−β) F[n] + β (1/(k·B)) Σ_{j,b} ȧ[j, b] T[j, b, n]    F[n] → E[∂a/∂α_n]
              e[b, n] = g[b]·F[n]                                  (with the updated F)
    dfa       e[b, n] = g[b]·F[n]                                  F fixed (random feedback)

An output neuron o (the last n_out) knows its own effect on the action exactly and uses it under
every rule: ``e[b, o] = g[b, o]·dadv[b, o]``, ``dadv = ∂a_o/∂α_o`` (decoder gain × clip × λ_o).
Then, with the divisive factor ``s`` of the row (1 without inhibition; its off-diagonal coupling
is dropped)::

    gz[b, n] = e[b, n] σ'(y[t, b, n]) s[t, b]
    G[n, m]  = (1/B) Σ_b gz[b, n] Vc[t, b, m] M[n, m]          G_b[n] = (1/B) Σ_b gz[b, n]

``G`` ascends ``mean_b Q``: for a layered network it is an estimate of the BPTT gradient
``∂/∂K mean_b Q(s_b, μ(s_b))`` (exact in expectation under perturb). If ``apply``, every row
then takes one Adam step on the loss ``−mean Q`` (bias corrections folded in, as in
:mod:`leaky.optim`)::

    m ← β₁m + (1−β₁)(−G),  v ← β₂v + (1−β₂)G²,  K[n, m] −= step_size·m / (√v + eps_hat)

for every m with ``M[n, m] ≠ 0``, and ``bias[n]`` likewise. Each neuron reads and writes only its
own row of K, its moments and its row of F: no atomics, no communication between neurons. Sensor
rows are never written (their G rows are 0).

Shapes: Vc (ℓ+1, B, N), y (ℓ, B, N), scale (ℓ, B), T (k, B, N), adot (k, B, n_out), g and dadv
(B, n_out); tau, col_lo, col_hi (N,) int32; mask, K, mK, vK, G (N, N); bias, mb, vb, Gb (N,);
F (N, n_out).

Cost per call: ``B·Σ_n (col_hi_n − col_lo_n)`` multiply-adds for G (``B·N²`` dense) plus
``k·B·N·n_out`` for the rules. Bytes: the voltage slice a neuron reads (shared by all neurons
through the cache), K and its moments read and written once.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

RULES = {"perturb": 0, "feedback": 1, "dfa": 2}


class CreditBatch(NamedTuple):
    """The minibatch a credit update reads (see the module docstring for shapes)."""

    Vc: Any
    y: Any
    scale: Any
    T: Any
    adot: Any
    g: Any
    dadv: Any


class CreditParams(NamedTuple):
    """What a credit update changes in place: K, bias, F and Adam's moments of K and bias."""

    K: Any
    bias: Any
    F: Any
    mK: Any
    vK: Any
    mb: Any
    vb: Any


class CreditGrads(NamedTuple):
    """What a credit update writes: the ascent directions G (N, N) and Gb (N,)."""

    G: Any
    Gb: Any


class CreditTopology(NamedTuple):
    """tau (N,) int32 decision steps; mask (N, N) 0/1; col_lo, col_hi (N,) int32 ranges."""

    tau: Any
    mask: Any
    col_lo: Any
    col_hi: Any


class CreditScalars(NamedTuple):
    """Scalars of one update.

    n_inputs, activation : sensors count and kernels/scalar.py activation code
    rule : code of :data:`RULES`;  feedback_rate : β of the feedback rule
    step_size, eps_hat, beta1, beta2 : Adam with the bias corrections of its step folded in
        (:func:`adam_scalars`);  apply : take the Adam step (False: only G, Gb and F)
    """

    n_inputs: int
    activation: int
    rule: int
    feedback_rate: float
    step_size: float
    eps_hat: float
    beta1: float
    beta2: float
    apply: bool


def adam_scalars(lr: float, step: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
    """``(step_size, eps_hat)`` of Adam step ``step`` ≥ 1: ``θ −= step_size·m/(√v + eps_hat)``
    equals ``θ −= lr·m̂/(√v̂ + ε)`` (Kingma & Ba's efficient form)."""
    if step < 1:
        raise ValueError(f"adam_scalars: step {step}, expected >= 1")
    return (lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step),
            eps * math.sqrt(1.0 - beta2 ** step))


# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------

_DACT_NP = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0).astype(np.float64),
            2: lambda y: np.ones_like(y)}


def _adam_descent(theta, m, v, grad, cols, sc):
    """One Adam step of ``theta[cols]`` down ``grad`` (views, changed in place)."""
    m[cols] = sc.beta1 * m[cols] + (1.0 - sc.beta1) * grad[cols]
    v[cols] = sc.beta2 * v[cols] + (1.0 - sc.beta2) * grad[cols] ** 2
    theta[cols] -= sc.step_size * m[cols] / (np.sqrt(v[cols]) + sc.eps_hat)


def credit_update_reference(batch: CreditBatch, params: CreditParams, top: CreditTopology,
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
    dact = _DACT_NP[sc.activation]
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
        gz = e * dact(y[t, :, n]) * scale[t]
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

def credit_update_composed(xp, batch: CreditBatch, params: CreditParams, top: CreditTopology,
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
    if sc.activation == 0:
        dact = 1.0 - xp.tanh(y_tau) ** 2
    elif sc.activation == 1:
        dact = (y_tau > 0).astype(K.dtype)
    else:
        dact = xp.ones_like(y_tau)
    gz = E.T * dact * scale[tau]
    gz[:n_in] = 0.0
    G, Gb = out
    G[...] = 0.0
    tau_host = np.asarray(top.tau.get() if hasattr(top.tau, "get") else top.tau)
    for t in np.unique(tau_host[n_in:]):
        rows = xp.asarray(np.flatnonzero(tau_host == t))
        G[rows] = gz[rows] @ Vc[int(t)]
    G *= top.mask * (1.0 / B)
    Gb[...] = gz.mean(axis=1)
    if sc.apply:
        for theta, m, v, grad in ((K, mK, vK, G), (bias, mb, vb, Gb)):
            m *= sc.beta1
            m -= (1.0 - sc.beta1) * grad
            v *= sc.beta2
            v += (1.0 - sc.beta2) * grad * grad
            theta -= sc.step_size * m / (v ** 0.5 + sc.eps_hat)
    return out


def _composed_numpy(batch, params, top, sc, out):
    return credit_update_composed(np, batch, params, top, sc, out)


# Faces by backend name. Until the compiled faces land, the cpu backend runs the composed
# update on NumPy.
FACES = {"numpy": credit_update_reference, "cpu": _composed_numpy}
