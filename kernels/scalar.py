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
