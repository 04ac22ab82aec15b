"""The fused step's reference face (NumPy, float64: the definition) and its composed alternative.

The math is in the package docstring (kernels/step/__init__.py).
"""

from __future__ import annotations

import numpy as np

from leaky.kernels.scalar import sigma
from leaky.kernels.step.boundary import StepFlags, StepNet, StepOut


def step_reference(V0, u, xi, net: StepNet, flags: StepFlags, out: StepOut | None = None) -> StepOut:
    """Definition of the fused step, in float64: returns a new :class:`StepOut`, or writes
    ``out`` and returns it (``net.col_lo/col_hi`` are not read: the masked K alone defines the
    products)."""
    n_inputs, activation, inhibition, kappa, pulse = flags
    V = np.array(V0, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    K = np.asarray(net.K, dtype=np.float64)
    bias = np.asarray(net.bias, dtype=np.float64)
    leak = np.asarray(net.leak, dtype=np.float64)
    xi = np.array(xi, dtype=np.float64)
    xi[:, :, :n_inputs] = 0.0
    ell, B, N = xi.shape
    if pulse:
        V[:, :n_inputs] += u
    else:
        V[:, :n_inputs] = u
    Vc = np.empty((ell + 1, B, N))
    z = np.empty((ell, B, N))
    y = np.empty((ell, B, N))
    alpha = np.empty((ell, B, N))
    Vc[0] = V
    for tau in range(ell):
        z[tau] = V @ K.T + bias
        if inhibition == 1:
            scale = 1.0 / (1.0 + kappa * np.abs(z[tau][:, n_inputs:]).mean(axis=1, keepdims=True))
            y[tau] = z[tau] * scale
        else:
            y[tau] = z[tau]
        alpha[tau] = sigma(y[tau], activation) + xi[tau]
        V = (1.0 - leak) * V + leak * alpha[tau]
        if not pulse:
            V[:, :n_inputs] = u
        Vc[tau + 1] = V
    if out is not None:
        for dst, src in zip(out, (Vc, z, y, alpha)):
            dst[...] = src
        return out
    return StepOut(Vc, z, y, alpha)


def step_composed(xp, V0, u, xi, net: StepNet, flags: StepFlags) -> StepOut:
    """The same step composed from library calls (GEMM + elementwise) on ``xp`` (NumPy or CuPy),
    in the arrays' dtype.

    Not a face of the kernel: the alternative every face is benchmarked against (one GEMM and
    about ten elementwise passes per internal step). Returns a new :class:`StepOut`.
    """
    n_inputs, activation, inhibition, kappa, pulse = flags
    K, bias, leak = net.K, net.bias, net.leak
    ell, B, N = xi.shape
    V = V0.copy()
    if pulse:
        V[:, :n_inputs] += u
    else:
        V[:, :n_inputs] = u
    Vc, z, y, alpha = [V], [], [], []
    for tau in range(ell):
        zt = V @ K.T + bias
        yt = zt
        if inhibition == 1:
            yt = zt / (1 + kappa * xp.abs(zt[:, n_inputs:]).mean(axis=1, keepdims=True))
        at = sigma(yt, activation, xp) + xi[tau]
        at[:, :n_inputs] -= xi[tau][:, :n_inputs]
        V = (1 - leak) * V + leak * at
        if not pulse:
            V[:, :n_inputs] = u
        Vc.append(V)
        z.append(zt)
        y.append(yt)
        alpha.append(at)
    return StepOut(xp.stack(Vc), xp.stack(z), xp.stack(y), xp.stack(alpha))
