"""The DDPG actor: the network's greedy forward pass through the ℓ internal steps and the decoder,
kept for the backward pass, and its adjoint (BPTT) on the backend's array module (the package
docstring has the math)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leaky.core.errors import ConfigError
from leaky.kernels.scalar import ACTIVATIONS, INHIBITIONS, sigma, sigma_grad
from leaky.model.network import Network


# ---------------------------------------------------------------------------------------------
# Actor: the network's forward pass, kept for the backward pass
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorParams:
    """What the actor's forward pass reads (backend arrays).

    Attributes
    ----------
    K : (N, N) weights, masked;  b : (N,) bias;  leak : (N,) λ;  mask : (N, N) 0/1
    half, mid : (d_act,) decoder ``a = half·clip(V_O, -1, 1) + mid`` (1 and 0 without a box)
    """

    K: Any
    b: Any
    leak: Any
    mask: Any
    half: Any
    mid: Any

    @classmethod
    def from_network(cls, net: Network, K=None, b=None) -> "ActorParams":
        """The parameters of ``net`` (its own arrays, not copies), or ``K``/``b`` instead."""
        half, mid = decoder_affine(net)
        return cls(K=net.K if K is None else K, b=net.b if b is None else b, leak=net.leak,
                   mask=net.mask, half=half, mid=mid)


@dataclass(frozen=True)
class ActorTape:
    """One forward pass, kept for :func:`actor_backward` (backend arrays).

    Attributes
    ----------
    V : (ℓ+1, B, N) voltages before every internal step (sensors applied) and after the last
    z, y : (ℓ, B, N) pre-activations and inhibited pre-activations
    scale : (ℓ, B, 1) divisive factor ``s`` (None without inhibition)
    action : (B, d_act) decoded action
    """

    V: Any
    z: Any
    y: Any
    scale: Any
    action: Any


@dataclass(frozen=True)
class ActorGrads:
    """Gradients of a scalar loss L through one environment step (backend arrays).

    Attributes
    ----------
    K : (N, N) ∂L/∂K, masked;  b : (N,) ∂L/∂b
    alpha : (ℓ, B, N) ∂L/∂α_τ, the loss's sensitivity to every neuron's action at every
        internal step (the "global ∂Q/∂α_n" that gradient-alignment compares local critics with)
    """

    K: Any
    b: Any
    alpha: Any


def decoder_affine(net: Network):
    """``(half, mid)`` (d_act,) backend arrays of ``net``'s decoder: the action box or [-1, 1]."""
    n_out = net.config.n_outputs
    space = net.action_space
    if space is None:
        half, mid = np.ones(n_out), np.zeros(n_out)
    else:
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        half, mid = (high - low) / 2.0, (high + low) / 2.0
    return net.backend.asarray(half), net.backend.asarray(mid)


def _code(value, table, what):
    if isinstance(value, str):
        if value not in table:
            raise ConfigError(f"{what}: got {value!r}, expected one of {sorted(table)}")
        return table[value]
    return int(value)


def actor_forward(params: ActorParams, V0, u, n_inputs: int, activation, inhibition,
                  kappa: float, pulse: bool, ell: int, xp) -> ActorTape:
    """The greedy network step of kernels/step's reference, keeping what backward needs.

    Parameters
    ----------
    params : ActorParams
    V0 : (B, N) carried voltages (before the sensors are applied)
    u : (B, n_inputs) encoded observation ε(s)
    n_inputs : int, number of sensor neurons
    activation, inhibition : int codes of kernels/scalar.py or their names ("tanh", "divisive")
    kappa : float, divisive inhibition strength;  pulse : bool, input mode ``pulse``
    ell : int, internal steps ℓ;  xp : the array module (numpy or cupy)

    Returns
    -------
    ActorTape
        On the numpy backend ``tape.V`` and ``tape.action`` equal ``Network.step``'s cache and
        action bit for bit (same operations in the same order).
    """
    activation = _code(activation, ACTIVATIONS, "activation")
    inhibition = _code(inhibition, INHIBITIONS, "inhibition")
    V = xp.array(V0, copy=True)
    B, N = V.shape
    if pulse:
        V[:, :n_inputs] += u
    else:
        V[:, :n_inputs] = u
    Vs = xp.empty((ell + 1, B, N), dtype=V.dtype)
    zs = xp.empty((ell, B, N), dtype=V.dtype)
    ys = xp.empty((ell, B, N), dtype=V.dtype)
    scales = xp.empty((ell, B, 1), dtype=V.dtype) if inhibition == 1 else None
    Vs[0] = V
    for tau in range(ell):
        z = V @ params.K.T + params.b
        if inhibition == 1:
            s = 1.0 / (1.0 + kappa * xp.abs(z[:, n_inputs:]).mean(axis=1, keepdims=True))
            scales[tau] = s
            y = z * s
        else:
            y = z
        alpha = sigma(y, activation, xp)
        V = (1.0 - params.leak) * V + params.leak * alpha
        if not pulse:
            V[:, :n_inputs] = u
        Vs[tau + 1], zs[tau], ys[tau] = V, z, y
    n_out = params.half.shape[0]
    action = xp.clip(V[:, N - n_out:], -1.0, 1.0) * params.half + params.mid
    return ActorTape(V=Vs, z=zs, y=ys, scale=scales, action=action)


def actor_backward(params: ActorParams, tape: ActorTape, g_action, n_inputs: int, activation,
                   inhibition, kappa: float, pulse: bool, xp) -> ActorGrads:
    """BPTT of ``L`` through the decoder and the ℓ internal steps of one environment step.

    Parameters
    ----------
    params : ActorParams, the parameters ``tape`` was computed with
    tape : ActorTape from :func:`actor_forward`
    g_action : (B, d_act) ∂L/∂a
    n_inputs, activation, inhibition, kappa, pulse, xp : as in :func:`actor_forward`

    Returns
    -------
    ActorGrads
        ∂L/∂K (masked), ∂L/∂b and ∂L/∂α_τ; the carried voltages ``V0`` are constants.
    """
    activation = _code(activation, ACTIVATIONS, "activation")
    inhibition = _code(inhibition, INHIBITIONS, "inhibition")
    ell, B, N = tape.z.shape
    n_out = params.half.shape[0]
    V_out = tape.V[ell][:, N - n_out:]
    inside = ((V_out >= -1.0) & (V_out <= 1.0)).astype(V_out.dtype)  # clip: 0 outside [-1, 1]
    gV = xp.zeros((B, N), dtype=V_out.dtype)
    gV[:, N - n_out:] = g_action * params.half * inside
    gK = xp.zeros((N, N), dtype=gV.dtype)
    gb = xp.zeros(N, dtype=gV.dtype)
    g_alpha = xp.empty((ell, B, N), dtype=gV.dtype)
    n_agents = N - n_inputs
    for tau in range(ell - 1, -1, -1):
        if not pulse:
            gV[:, :n_inputs] = 0.0  # V_{τ+1}[I] = ε(s) does not depend on V_τ
        g_alpha[tau] = params.leak * gV
        gy = g_alpha[tau] * sigma_grad(tape.y[tau], activation, xp)
        if inhibition == 1:
            s, z = tape.scale[tau], tape.z[tau]
            gz = s * gy
            coupling = kappa * s * s * (gy * z).sum(axis=1, keepdims=True) / n_agents
            gz[:, n_inputs:] -= coupling * xp.sign(z[:, n_inputs:])
        else:
            gz = gy
        gK += gz.T @ tape.V[tau]
        gb += gz.sum(axis=0)
        gV = (1.0 - params.leak) * gV + gz @ params.K
    return ActorGrads(K=gK * params.mask, b=gb, alpha=g_alpha)
