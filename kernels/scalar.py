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

import numpy as np
from numba import njit
from numba import types as nbtypes
from numba.core import cgutils
from llvmlite import ir as llvmir
from numba.extending import intrinsic, register_jitable

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

# Only "nsz" (the sign of a zero may differ): no reassociation, contraction, reciprocal or
# approximate-function flags. Those let LLVM round differently wherever it optimises a function
# again, and Numba does optimise every called kernel again inside each caller; the copy a call
# binds to then depends on what the process compiled or loaded from the cache first
# (docs/kernels.md, "Compiled once, the same everywhere"). The tiles that need vector partial
# sums or fused multiply-adds say so explicitly: lane_sum and fmuladd below.
FASTMATH = {"nsz"}


def compiled(fn, name, **flags):
    """``fn`` compiled (cached, FASTMATH) under its own name, so that the serial and the parallel
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


# -- cpu-face building blocks shared by the tiled kernels (kernels/step.py, update_local.py) ------

@intrinsic
def fmuladd(typingctx, a, b, c):
    """``a·b + c`` as LLVM's ``llvm.fmuladd``: one fused multiply-add where the target has one
    (every x86-64 CPU with FMA or AVX-512), else a multiply and an add. The choice is the
    target's (its CPU features are part of Numba's cache key), never the optimiser's, so a
    kernel rounds the same wherever LLVM compiled it; plain ``a * b + c`` under ``contract``
    would be fused or not depending on what surrounds it."""
    if not (isinstance(a, nbtypes.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        name = "llvm.fmuladd.f32" if signature.return_type == nbtypes.float32 else "llvm.fmuladd.f64"
        fn = cgutils.get_or_insert_function(builder.module, llvmir.FunctionType(ty, [ty, ty, ty]), name)
        return builder.call(fn, args)

    return a(a, b, c), codegen


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def tanh32(x):
    """float32 tanh to 3e-7 absolute: Eigen's rational minimax form (odd 13 / even 6).

    LLVM vectorises it (0.1 ns per element here); libm's ``tanhf`` is a scalar call (8.5 ns),
    which made activation passes cost as much as the GEMMs around them. NaN passes the clamp.
    """
    c = np.float32(7.90531110763549805)  # tanh(c) = 1 - 2.7e-7 in float32
    x = c if x > c else x
    x = -c if x < -c else x
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


@intrinsic
def stack_empty(typingctx, size, like):
    """A pointer to ``size`` (a literal) elements of ``like``'s dtype on the stack (an alloca):
    register tiles of accumulators that LLVM keeps in vector registers."""
    if not isinstance(size, nbtypes.IntegerLiteral):
        return None
    n = size.literal_value

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(like.dtype)
        return cgutils.alloca_once(builder, ty, size=context.get_constant(nbtypes.intp, n))

    return nbtypes.CPointer(like.dtype)(size, like), codegen


@intrinsic
def lane_sum(typingctx, acc, row, lanes):
    """``Σ_l acc[row, l]`` over the first ``lanes`` (a literal power of two) entries of a row
    of the C-contiguous 2-D ``acc``, as one vector: lane l plus lane l + lanes/2, then the
    lower half plus its upper half again, down to one lane. The order is fixed by the IR, not
    left to fastmath reassociation: the horizontal sum of a register tile's partial sums."""
    if not (isinstance(lanes, nbtypes.IntegerLiteral) and isinstance(acc, nbtypes.Array)
            and acc.ndim == 2 and acc.layout == "C" and isinstance(acc.dtype, nbtypes.Float)):
        return None
    n = lanes.literal_value
    if n < 1 or n & (n - 1):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(acc)(context, builder, args[0])
        ty = context.get_value_type(acc.dtype)
        ncols = builder.extract_value(arr.shape, 1)
        r = context.cast(builder, args[1], signature.args[1], nbtypes.intp)
        ptr = builder.gep(arr.data, [builder.mul(r, ncols)])
        vec = builder.load(builder.bitcast(ptr, llvmir.VectorType(ty, n).as_pointer()), align=4)
        i32 = llvmir.IntType(32)

        def lanes_from(first, count):
            return llvmir.Constant(llvmir.VectorType(i32, count),
                                   [llvmir.Constant(i32, first + i) for i in range(count)])

        width = n
        while width > 1:
            width //= 2
            lo = builder.shuffle_vector(vec, vec, lanes_from(0, width))
            hi = builder.shuffle_vector(vec, vec, lanes_from(width, width))
            vec = builder.fadd(lo, hi)
        return builder.extract_element(vec, llvmir.Constant(llvmir.IntType(32), 0))

    return acc.dtype(acc, row, lanes), codegen
