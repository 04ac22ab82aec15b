"""The fused step's cuda face: ``numba.cuda.jit``, one launch runs all ℓ internal steps for a tile
of batch rows.

The math is in the package docstring (kernels/step/__init__.py).
"""

import math

import numpy as np
from numba import float32

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.jit import cuda_jit
from leaky.kernels.scalar import activate_cuda
from leaky.kernels.spec import F1, F2, F3, I1, KernelSpec, Launch, cuda_kernels, run
from leaky.kernels.step.boundary import StepFlags, StepNet, StepOut

#
# Block = TILE_B batch rows × TILE_N neurons (256 threads). The block owns its rows for the
# whole call, so __syncthreads() between internal steps is the only synchronisation needed.
# For each tile of TILE_N neurons it walks the presynaptic tiles of K that can be non-zero
# (tile_lo/tile_hi, from the mask) and stages a TILE_N×TILE_K tile of K and a TILE_B×TILE_K
# tile of voltages in shared memory: every K element loaded feeds TILE_B multiply-adds.

TILE_B = 8
TILE_N = 32
TILE_K = 32
KS_SHAPE = (TILE_N, TILE_K + 1)  # +1 column: Ks[tx, k] across a warp hits 32 distinct banks


@cuda_jit
def _step_kernel(V0, u, K, bias, leak, xi, tile_lo, tile_hi, n_inputs, activation, inhibition,
                 kappa, pulse, Vc, z, y, alpha):
    Ks = cuda.shared.array(KS_SHAPE, float32)
    Vs = cuda.shared.array((TILE_B, TILE_K), float32)
    red = cuda.shared.array((TILE_B, TILE_N), float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    ell = xi.shape[0]
    B = xi.shape[1]
    N = xi.shape[2]
    b = cuda.blockIdx.x * TILE_B + ty
    live = b < B

    if live:
        for n in range(tx, N, TILE_N):
            v = V0[b, n]
            if n < n_inputs:
                v = v + u[b, n] if pulse else u[b, n]
            Vc[0, b, n] = v
    cuda.syncthreads()

    for tau in range(ell):
        row_abs = float32(0.0)
        for n0 in range(0, N, TILE_N):
            n = n0 + tx
            acc = float32(0.0)
            t = n0 // TILE_N
            for m0 in range(tile_lo[t], tile_hi[t], TILE_K):
                m = m0 + tx
                for i in range(ty, TILE_N, TILE_B):
                    Ks[i, tx] = K[n0 + i, m] if (n0 + i < N and m < N) else float32(0.0)
                Vs[ty, tx] = Vc[tau, b, m] if (live and m < N) else float32(0.0)
                cuda.syncthreads()
                for k in range(TILE_K):
                    acc += Ks[tx, k] * Vs[ty, k]
                cuda.syncthreads()
            if live and n < N:
                zz = acc + bias[n]
                z[tau, b, n] = zz
                if n >= n_inputs:
                    row_abs += abs(zz)
        scale = float32(1.0)
        if inhibition == 1:
            red[ty, tx] = row_abs
            cuda.syncthreads()
            s = float32(0.0)
            for i in range(TILE_N):
                s += red[ty, i]
            scale = float32(1.0) / (float32(1.0) + kappa * s / (N - n_inputs))
        if live:
            for n in range(tx, N, TILE_N):
                yy = z[tau, b, n] * scale
                y[tau, b, n] = yy
                a = activate_cuda(yy, activation)
                if n >= n_inputs:
                    a += xi[tau, b, n]
                alpha[tau, b, n] = a
                if n < n_inputs and not pulse:
                    Vc[tau + 1, b, n] = u[b, n]
                else:
                    Vc[tau + 1, b, n] = (float32(1.0) - leak[n]) * Vc[tau, b, n] + leak[n] * a
        cuda.syncthreads()


def tile_ranges(col_lo, col_hi, tile=TILE_N):
    """Per tile of ``tile`` rows: the union of the rows' presynaptic column ranges."""
    col_lo = np.asarray(col_lo)
    col_hi = np.asarray(col_hi)
    N = col_lo.shape[0]
    n_tiles = (N + tile - 1) // tile
    lo = np.empty(n_tiles, dtype=np.int32)
    hi = np.empty(n_tiles, dtype=np.int32)
    for t in range(n_tiles):
        rows = slice(t * tile, min(N, (t + 1) * tile))
        nonempty = col_hi[rows] > col_lo[rows]
        if nonempty.any():
            lo[t] = col_lo[rows][nonempty].min()
            hi[t] = col_hi[rows][nonempty].max()
        else:
            lo[t] = hi[t] = 0
    return lo, hi


STEP_SPEC = KernelSpec(_step_kernel, (
    ("V0", F2), ("u", F2), ("K", F2), ("bias", F1), ("leak", F1), ("xi", F3), ("tile_lo", I1),
    ("tile_hi", I1), ("n_inputs", "int32"), ("activation", "int32"), ("inhibition", "int32"),
    ("kappa", "float32"), ("pulse", "boolean"), ("Vc", F3), ("z", F3), ("y", F3), ("alpha", F3)))


def step_launch(V0, u, xi, net: StepNet, flags: StepFlags, out: StepOut) -> Launch:
    """The launch of the fused step (``ceil(B / TILE_B)`` blocks of ``TILE_B × TILE_N``
    threads): what :func:`step_cuda` runs at once and a captured program keeps."""
    B = xi.shape[1]
    grid = (max(1, math.ceil(B / TILE_B)),)
    return STEP_SPEC.launch(grid, (TILE_N, TILE_B), {
        "V0": V0, "u": u, "xi": xi, "K": net.K, "bias": net.bias, "leak": net.leak,
        "tile_lo": net.tile_lo, "tile_hi": net.tile_hi, **flags._asdict(),
        "Vc": out.V, "z": out.z, "y": out.y, "alpha": out.alpha})


def step_cuda(V0, u, xi, net: StepNet, flags: StepFlags, out: StepOut, *, stream=0) -> StepOut:
    """Fused step on the GPU (CuPy arrays; NumPy arrays in the simulator), float32, one launch.

    ``net.tile_lo``/``net.tile_hi`` are :func:`tile_ranges` of the row ranges (computed once
    per mask, on the device).
    """
    run(step_launch(V0, u, xi, net, flags, out), stream)
    return out


CUDA_KERNELS = cuda_kernels(STEP_SPEC)
