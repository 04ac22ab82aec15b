"""Counter-based Gaussian noise: Philox-2x32-10 and Box–Muller, one draw per (key, counter, index).

A draw depends only on ``(seed, stream, counter, index)``, never on a generator state held
between calls or on the launch configuration. That is what a captured CUDA graph needs: the
graph replays the same kernel arguments every time, so the step counter lives in device memory
(``counter[0]``, advanced by another kernel of the program) and each replay draws new noise.
The step kernels stay pure: this module fills the noise array they take.

Philox-2x32 with 10 rounds is the generator of Salmon et al. (2011), "Parallel random numbers: as
easy as 1, 2, 3", also used by cuRAND and JAX. Element ``i`` uses counter block
``(i // 2, counter)``; its two 32-bit outputs give two uniforms in (0, 1] and Box–Muller gives
``cos`` for even ``i`` and ``sin`` for odd ``i`` (float32 arithmetic on every face).

* ``normal``: the scalar draw (``register_jitable``; the same code runs in NumPy-land);
  ``normal_cuda``: the same function as a CUDA device function.
* ``fill_normal_cpu``: ``out[i] = std[i % len(std)] · normal(seed, stream, counter, i)``, njit.
* ``_fill_normal_kernel``: the same fill on the GPU (grid-stride); ``fill_normal_span_cuda`` is
  one thread's share of it, for kernels that draw noise among other work (kernels/loop.py).
"""

import math

import numpy as np
from numba import njit
from numba.extending import register_jitable

try:
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.jit import cuda_jit, shared
from leaky.kernels.spec import F1, L1, KernelSpec, Launch, cuda_kernels

_MASK32 = np.uint64(0xFFFFFFFF)
_PHILOX_M = np.uint64(0xD256D193)
_PHILOX_W = np.uint64(0x9E3779B9)
_KEY_MIX = np.uint64(0x85EBCA6B)
_SHIFT32 = np.uint64(32)
_TWO_PI = np.float32(2.0 * math.pi)
_INV_2_32 = np.float32(2.0 ** -32)


def philox2x32(c0, c1, key):
    """Philox-2x32-10 of the counter ``(c0, c1)`` under ``key`` (uint64 values < 2³²)."""
    for _ in range(10):
        prod = _PHILOX_M * c0
        hi = prod >> _SHIFT32
        lo = prod & _MASK32
        c0 = (hi ^ key ^ c1) & _MASK32
        c1 = lo
        key = (key + _PHILOX_W) & _MASK32
    return c0, c1


philox2x32, philox2x32_cuda = shared(philox2x32)


def _make_normal(philox):
    def normal(seed, stream, counter, index):
        """One standard normal draw (float32) of ``(seed, stream, counter, index)``."""
        key = (np.uint64(seed) * _PHILOX_W + np.uint64(stream) * _KEY_MIX) & _MASK32
        block = np.uint64(index >> 1)
        r0, r1 = philox(block & _MASK32, np.uint64(counter) & _MASK32, key)
        u1 = (np.float32(r0) + np.float32(1.0)) * _INV_2_32     # (0, 1]: log never sees 0
        u2 = np.float32(r1) * _INV_2_32
        radius = math.sqrt(np.float32(-2.0) * math.log(u1))
        angle = _TWO_PI * u2
        if index & 1:
            return np.float32(radius * math.sin(angle))
        return np.float32(radius * math.cos(angle))

    return normal


normal = register_jitable(inline="always")(_make_normal(philox2x32))
normal_cuda = cuda.jit(device=True, inline="always")(_make_normal(philox2x32_cuda)) if cuda is not None else None


@njit(cache=True)
def fill_normal_cpu(seed, stream, counter, std, out):
    """``out.flat[i] = std[i % len(std)] · normal(seed, stream, counter, i)`` (float32)."""
    flat = out.reshape(-1)
    n_std = std.shape[0]
    for i in range(flat.shape[0]):
        flat[i] = std[i % n_std] * normal(seed, stream, counter, i)
    return out


def _fill_normal_span(seed, stream, counter, std, out, start, step):
    """``out[i] = std[i % len(std)] · normal(seed, stream, counter[0], i)`` for
    ``i = start, start + step, …``: one thread's share of a grid-stride fill."""
    ctr = counter[0]
    n_std = std.shape[0]
    for i in range(start, out.shape[0], step):
        out[i] = std[i % n_std] * normal_cuda(seed, stream, ctr, i)


fill_normal_span_cuda = cuda.jit(device=True, inline="always")(_fill_normal_span) if cuda is not None else None


@cuda_jit
def _fill_normal_kernel(seed, stream, counter, std, out):
    """Grid-stride fill of the flat ``out``; the counter is read from device memory."""
    fill_normal_span_cuda(seed, stream, counter, std, out, cuda.grid(1), cuda.gridsize(1))


FILL_NORMAL_SPEC = KernelSpec.typed(_fill_normal_kernel, ("uint32", "uint32", L1, F1, F1))


def fill_normal_launch(seed, stream, counter, std, out, blocks, threads) -> Launch:
    """The launch of the GPU fill: ``blocks × threads`` grid-stride threads over the flat ``out``."""
    return FILL_NORMAL_SPEC.launch(blocks, threads, dict(seed=seed, stream=stream, counter=counter,
                                                         std=std, out=out))


# Signatures the PTX test compiles for sm_80 and sm_90 (tests/kernels/test_ptx.py).
CUDA_KERNELS = cuda_kernels(FILL_NORMAL_SPEC)


@njit(cache=True)
def signs_from_bits(words, out):
    """``out[i] = +1`` if bit ``i % 64`` of ``words[i // 64]`` is set, else −1 (Rademacher
    values from raw generator output: 64 values per 64-bit word)."""
    one = out.dtype.type(1)
    for i in range(out.shape[0]):
        bit = (words[i >> 6] >> np.uint64(i & 63)) & np.uint64(1)
        out[i] = one if bit else -one
