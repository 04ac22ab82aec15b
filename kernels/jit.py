"""How every kernel is compiled: the fastmath flags, the cached compilations, the device functions,
and the LLVM intrinsics that fix how the cpu tiles round.

* :func:`shared` compiles one scalar function twice: ``register_jitable`` for the cpu faces and
  a ``cuda.jit(device=True, inline="always")`` device function for the cuda faces (which
  ``cuda.compile_ptx`` can build without a GPU).
* :func:`compiled` is the cached ``njit`` of a cpu face's body under a name of its own, so that
  the serial and the parallel compilations of one body keep separate cache files.
* :func:`cuda_jit` is ``cuda.jit`` without a signature: nothing compiles until the first launch
  (importing a kernel module works without a GPU, and without numba-cuda installed).
* :func:`fmuladd`, :func:`stack_empty` and :func:`lane_sum` are the intrinsics of the register
  tiles (kernels/tiles.py): fused multiply-adds where the target has them, stack arrays LLVM keeps
  in registers, and horizontal sums in a fixed order.
"""

import types

from llvmlite import ir as llvmir   # numba's own code generator (installed with it)
from numba import njit
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

try:
    from numba import cuda
except ImportError:  # pragma: no cover - the cuda extras are not installed
    cuda = None

# Only "nsz" (the sign of a zero may differ): no reassociation, contraction, reciprocal or
# approximate-function flags. Those let LLVM round differently wherever it optimises a function
# again, and Numba does optimise every called kernel again inside each caller; the copy a call
# binds to then depends on what the process compiled or loaded from the cache first
# (docs/kernels.md, "Compiled once, the same everywhere"). The tiles that need vector partial
# sums or fused multiply-adds say so explicitly: lane_sum and fmuladd below.
FASTMATH = {"nsz"}


def shared(fn):
    """One scalar function, two compilations: returns ``(cpu_version, cuda_version)``.

    The cpu version is ``register_jitable`` (callable from ``njit`` code and from Python); the
    cuda version a ``cuda.jit(device=True, inline="always")`` device function, which
    ``cuda.compile_ptx`` can compile without a GPU (a ``register_jitable`` called from a kernel
    asks the driver for the device's compute capability).
    """
    cpu = register_jitable(inline="always")(fn)
    return cpu, cuda_device(fn)


def cuda_device(fn):
    """``fn`` as an inlined CUDA device function (None without numba-cuda)."""
    return cuda.jit(device=True, inline="always")(fn) if cuda is not None else None


def compiled(fn, name, **flags):
    """``fn`` compiled (cached, FASTMATH) under its own name, so that the serial and the parallel
    compilations of one body keep separate cache files."""
    clone = types.FunctionType(fn.__code__, fn.__globals__, name)
    clone.__qualname__ = name
    return njit(cache=True, fastmath=FASTMATH, **flags)(clone)


def cpu_jit(**flags):
    """The cpu faces' ``njit``: cached, FASTMATH, ``error_model="numpy"`` (Python's zero-division
    checks stop LLVM vectorising a loop)."""
    return njit(cache=True, fastmath=FASTMATH, error_model="numpy", **flags)


def cuda_jit(fn):
    """``cuda.jit`` without a signature: nothing compiles until the first launch (and importing
    a kernel module works without a GPU)."""
    return cuda.jit(fn) if cuda is not None else None


# -- intrinsics of the cpu register tiles ----------------------------------------------------------

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
