"""The call boundary of the tangent step: the named tuples every face takes, and their checks.

Every face is ``tangent_step_<face>(V0, u, T, net, flags, out)``: the carried voltages
``V0 (B, N)``, the encoded sensor input ``u (B, n_inputs)``, the tangents ``T (k, B, N)`` and the
named tuples below; the faces' own options are keyword-only (``schedule``, ``stream``).
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
    tile_lo, tile_hi : (⌈N/32⌉,) int32 the union of those ranges per 32-neuron tile
        (``kernels.step.tile_ranges``); read by the cuda face only
    """

    K: Any
    bias: Any
    leak: Any
    tau: Any
    last: Any
    col_lo: Any
    col_hi: Any
    tile_lo: Any = None
    tile_hi: Any = None


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
    """Vc (ℓ+1, B, N), z, y (ℓ, B, N), scale (ℓ, B), Vdot (k, B, N); ``work`` (k, B, N) the
    compiled faces' scratch for the tangents' pre-activations (contents undefined after a call;
    the reference does not need it)."""

    Vc: Any
    z: Any
    y: Any
    scale: Any
    Vdot: Any
    work: Any = None


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


def _shape_error(what, got, want):
    raise ValueError(f"tangent step: {what} has shape {tuple(got)}, expected {tuple(want)}")


def check_inputs(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut) -> None:
    """ValueError unless every array has the shape, dtype and layout the compiled faces take
    (float32, C-contiguous; int32 index arrays) and the flags are in range. Reads no values."""
    n_in, act, inhibition, kappa, pulse, ell = flags
    if not (isinstance(ell, (int, np.integer)) and ell >= 1):
        raise ValueError(f"tangent step: ell = {ell!r}, expected an int >= 1")
    if act not in (0, 1, 2) or inhibition not in (0, 1):
        raise ValueError(f"tangent step: activation {act!r} / inhibition {inhibition!r}, expected "
                         "0, 1, 2 / 0, 1 (kernels/scalar.py's codes)")
    if T.ndim != 3:
        raise ValueError(f"tangent step: T has {T.ndim} dimensions, expected 3 (k, B, N)")
    k, B, N = T.shape
    if not 0 <= n_in < N:
        raise ValueError(f"tangent step: n_inputs = {n_in}, expected 0 <= n_inputs < N = {N}")
    want = {"V0": (V0, (B, N)), "u": (u, (B, n_in)), "K": (net.K, (N, N)), "bias": (net.bias, (N,)),
            "leak": (net.leak, (N,)), "Vc": (out.Vc, (ell + 1, B, N)), "z": (out.z, (ell, B, N)),
            "y": (out.y, (ell, B, N)), "scale": (out.scale, (ell, B)), "Vdot": (out.Vdot, (k, B, N)),
            "work": (out.work, (k, B, N))}
    for name, (a, shape) in want.items():
        if a is None:
            raise ValueError(f"tangent step: {name} is None, expected a float32 array of shape {shape}"
                             + (" (TangentOut.work: the compiled faces' scratch)" if name == "work" else ""))
        if tuple(a.shape) != shape:
            _shape_error(name, a.shape, shape)
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"tangent step: {name} is {a.dtype}"
                             f"{'' if a.flags.c_contiguous else ', not C-contiguous'}; expected a "
                             "C-contiguous float32 array")
    if T.dtype != np.float32 or not T.flags.c_contiguous:
        raise ValueError(f"tangent step: T is {T.dtype}, expected a C-contiguous float32 array")
    for name in ("tau", "last", "col_lo", "col_hi"):
        a = getattr(net, name)
        if tuple(a.shape) != (N,) or a.dtype != np.int32:
            raise ValueError(f"tangent step: {name} is {a.dtype} of shape {tuple(a.shape)}, "
                             f"expected int32 of shape ({N},)")
