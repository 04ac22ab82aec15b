"""Tangent step: one greedy environment step of the network carrying k activity tangents per row.

A forward-mode derivative (a JVP) of the action with respect to every neuron's activity at its
decision step, computed with the same weights as the step itself: no backward pass. For every
batch row b, from the carried voltages ``V0[b]`` and the encoded sensor input ``u[b]`` (clamp:
``V[I] = u``; pulse: ``V[I] += u``, once), τ = 0 … ℓ-1, for every neuron n with τ ≤ last[n]::

    z = V Kᵀ + bias,  y = Θ(z) = s·z,  α = σ(y),  V ← (1-λ)⊙V + λ⊙α        the primal (ξ = 0)
    ż = V̇ Kᵀ,  ẏ = s·ż − κ s² z · mean_{j∉I}(sign(z_j) ż_j)  (divisive; ẏ = ż without)
    α̇ = σ'(y)·ẏ + T[j, b, n]·1[τ = tau[n], n ∉ I],   V̇ ← (1-λ)⊙V̇ + λ⊙α̇         each tangent j

with ``V̇ = 0`` at τ = 0 and the sensors re-clamped (clamp: ``V[I] = u``, ``V̇[I] = 0``). A
neuron past its last step holds its voltage and tangents, and its ``z``, ``y`` are 0 there.

Why ``last``: what learning reads of one step is the action ``V_ℓ[O]`` and, for every neuron n,
``y_{tau[n]}[n]`` and the voltages ``V_{tau[n]}`` of its presynaptic neurons. With the decision
steps ``tau[n] = max(0, ℓ-1-d_n)`` (``d_n`` hops to the outputs) a presynaptic neuron m of n has
``d_m ≤ d_n + 1``, so ``tau[m] ≥ tau[n] − 1``: computing each neuron only up to its own decision
step (``last = tau``) leaves everything learning reads exact and skips the rest. A layered
network then costs one pass of its MLP instead of ℓ passes of the whole mask. Divisive inhibition
couples every neuron of a row through the mean, so there the caller passes ``last = ℓ-1``
(every neuron at every step; the tests hold that this equals ``kernels/step.py`` exactly).

The tangents are standard normal inputs (the caller draws them), so ``E[(g·ȧ) T_n]`` is the
sensitivity ``g·∂a/∂α_n`` of a scalar of the action to neuron n's activity at its decision step:
the activity-perturbation (forward-gradient) estimate of ``kernels/credit.py``.

Shapes: V0 (B, N), u (B, n_in), T (k, B, N); K (N, N) masked, bias, leak (N,); tau, last,
col_lo, col_hi (N,) int32. Outputs: Vc (ℓ+1, B, N) voltages before every internal step and
after the last, z, y (ℓ, B, N), scale (ℓ, B) the divisive factor s (1 without inhibition),
Vdot (k, B, N) the tangents of the voltages after the last step.

Cost per call: ``(1 + k)·B·Σ_τ Σ_{n: τ ≤ last_n} (col_hi_n − col_lo_n)`` multiply-adds (dense,
``last = ℓ−1``: ``(1+k)·ℓ·B·N²``). Bytes: K once from DRAM, then from cache; Vc, z, y written once;
T read once and Vdot written once.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class TangentNet(NamedTuple):
    """What the tangent step reads of the network (arrays of the face's module).

    K : (N, N) weights, stored masked;  bias, leak : (N,)
    tau : (N,) int32 decision steps (tangents are injected there; sensors never)
    last : (N,) int32 the last internal step each neuron is computed at (``tau``, or ℓ−1)
    col_lo, col_hi : (N,) int32 half-open presynaptic column range of each row of K
    """

    K: Any
    bias: Any
    leak: Any
    tau: Any
    last: Any
    col_lo: Any
    col_hi: Any


class TangentFlags(NamedTuple):
    """Scalars of the step: ``n_inputs``, the activation and inhibition codes of
    kernels/scalar.py, ``kappa``, ``pulse`` (input mode) and ``ell`` (internal steps ℓ)."""

    n_inputs: int
    activation: int
    inhibition: int
    kappa: float
    pulse: bool
    ell: int


class TangentOut(NamedTuple):
    """Vc (ℓ+1, B, N), z, y (ℓ, B, N), scale (ℓ, B), Vdot (k, B, N)."""

    Vc: Any
    z: Any
    y: Any
    scale: Any
    Vdot: Any


def decision_last(tau, ell: int, inhibition: int) -> np.ndarray:
    """``last (N,) int32``: the decision steps ``tau``, or ℓ−1 everywhere under divisive inhibition."""
    tau = np.asarray(tau, dtype=np.int32)
    return np.full_like(tau, ell - 1) if inhibition == 1 else tau.copy()


def check_last(tau, last, ell: int, inhibition: int) -> None:
    """ValueError unless ``tau ≤ last ≤ ℓ−1`` (and ``last = ℓ−1`` under divisive inhibition)."""
    tau, last = np.asarray(tau), np.asarray(last)
    if tau.shape != last.shape:
        raise ValueError(f"tangent step: tau has shape {tau.shape} and last {last.shape}, expected equal")
    if ((tau < 0) | (tau > last) | (last > ell - 1)).any():
        raise ValueError(f"tangent step: expected 0 <= tau <= last <= ell - 1 = {ell - 1}, got tau in "
                         f"[{tau.min()}, {tau.max()}] and last in [{last.min()}, {last.max()}]")
    if inhibition == 1 and (last != ell - 1).any():
        raise ValueError("tangent step: divisive inhibition couples a row's neurons through its mean; "
                         "expected last = ell - 1 for every neuron")


# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------

_ACT_NP = {0: np.tanh, 1: lambda y: np.maximum(y, 0.0), 2: lambda y: y}
_DACT_NP = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0).astype(np.float64),
            2: lambda y: np.ones_like(y)}


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
    act, dact = _ACT_NP[act_code], _DACT_NP[act_code]
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
        V_new = (1.0 - leak) * V + leak * act(yt)
        Vd_new = (1.0 - leak) * Vd + leak * (dact(yt) * yd + T * inject)
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

# Faces by backend name. Until the compiled faces land, the cpu backend runs the reference
# (float64 math, float32 results).
FACES = {"numpy": tangent_step_reference, "cpu": tangent_step_reference}
