"""Scalar math shared by the ``cpu`` and ``cuda`` faces (written once, jitted for both).

Activation codes are small integers so that one compiled kernel serves every activation:

======  ==========  ===============  =====================
code    name        σ(y)             σ'(y)
======  ==========  ===============  =====================
0       tanh        tanh(y)          1 - tanh(y)²
1       relu        max(y, 0)        1 if y > 0 else 0
2       identity    y                1
======  ==========  ===============  =====================

Inhibition codes: 0 none (``y = z``), 1 divisive (``y = z / (1 + κ·mean|z|)``, the mean taken
over the non-sensor neurons of the batch row).
"""

import math
import types

from numba import njit
from numba.extending import register_jitable

try:
    from numba import cuda
except ImportError:  # pragma: no cover - the cuda extras are not installed
    cuda = None

ACTIVATIONS = {"tanh": 0, "relu": 1, "identity": 2}
INHIBITIONS = {"none": 0, "divisive": 1}


def activate(y, code):
    if code == 0:
        return math.tanh(y)
    if code == 1:
        return y if y > 0.0 else 0.0 * y
    return y


def activate_grad(y, code):
    """σ'(y), written in terms of the pre-activation ``y``."""
    if code == 0:
        t = math.tanh(y)
        return 1.0 - t * t
    if code == 1:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


def shared(fn):
    """One scalar function, two compilations: returns ``(cpu_version, cuda_version)``.

    The cpu version is ``register_jitable`` (callable from ``njit`` code and from Python); the
    cuda version a ``cuda.jit(device=True, inline="always")`` device function, which
    ``cuda.compile_ptx`` can compile without a GPU (a ``register_jitable`` called from a kernel
    asks the driver for the device's compute capability).
    """
    cpu = register_jitable(inline="always")(fn)
    gpu = cuda.jit(device=True, inline="always")(fn) if cuda is not None else None
    return cpu, gpu


activate, activate_cuda = shared(activate)
activate_grad, activate_grad_cuda = shared(activate_grad)


# -- compilation conventions shared by every kernel module ----------------------------------------

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}  # reassociation, not no-NaN: NaNs still show


def compiled(fn, name, **flags):
    """``fn`` compiled (cached, fastmath) under its own name, so that the serial and the parallel
    compilations of one body keep separate cache files."""
    clone = types.FunctionType(fn.__code__, fn.__globals__, name)
    clone.__qualname__ = name
    return njit(cache=True, fastmath=FASTMATH, **flags)(clone)


def cuda_jit(fn):
    """``cuda.jit`` without a signature: nothing compiles until the first launch (and importing
    a kernel module works without a GPU)."""
    return cuda.jit(fn) if cuda is not None else None


# Plain (not inlined) calls: several inlined call sites of the multi-return activate in one
# function trip numba's pedantic IR check (NumbaIRAssumptionWarning); LLVM inlines them anyway.
@njit(cache=True, fastmath=FASTMATH)
def sigma(y, code):
    return activate(y, code)


@njit(cache=True, fastmath=FASTMATH)
def sigma_grad(y, code):
    return activate_grad(y, code)


def step_param(theta, adam_m, adam_v, n, j, ascent, optimizer, lr, beta1, one_minus_beta1,
               beta2, one_minus_beta2, step_size, eps_hat):
    """One step of ``theta[n, j]``: SGD ascent (optimizer 0), or Adam descent on g = −ascent
    with the bias corrections folded into ``step_size`` and ``eps_hat``.

    Under SGD the moment arrays are not touched (they may be placeholders).
    """
    if optimizer == 0:
        theta[n, j] += lr * ascent
    else:
        g = -ascent
        m = beta1 * adam_m[n, j] + one_minus_beta1 * g
        v = beta2 * adam_v[n, j] + one_minus_beta2 * g * g
        adam_m[n, j] = m
        adam_v[n, j] = v
        theta[n, j] -= step_size * m / (math.sqrt(v) + eps_hat)


step_param, step_param_cuda = shared(step_param)
