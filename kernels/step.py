"""Fused internal steps of a leaky recurrent network (one environment step).

For every batch row b, starting from the carried voltages ``V0[b]`` and the encoded sensor
input ``u[b]`` (clamp: ``V[I] = u``; pulse: ``V[I] += u``, once), ℓ times, τ = 0 … ℓ-1::

    z = V Kᵀ + b                    pre-activation (K is stored masked: K ⊙ (1 - M) = 0)
    y = Θ(z)                        inhibition: none, or divisive  z / (1 + κ·mean_{n∉I}|z_n|)
    α = σ(y) + ξ[τ]                 action of every neuron (ξ = 0 on sensors: they are not agents)
    V ← (1 - λ) ⊙ V + λ ⊙ α         leak; then sensors re-clamped (clamp mode)

Outputs, the cache that learning reads: ``Vc (ℓ+1, B, N)`` the voltages before every internal
step and after the last, ``z, y, alpha (ℓ, B, N)``.

Shapes: V0 (B, N), u (B, n_in), K (N, N), bias (N,), leak (N,), xi (ℓ, B, N),
col_lo/col_hi (N,) the half-open range of presynaptic columns that can be non-zero in each row
of K (the whole row for a dense network, the previous layer for a layered one; the reference
ignores it, so the tests prove the skip is exact).

Cost per call: ℓ·B·Σ_n (col_hi_n - col_lo_n) multiply-adds (ℓ·B·N² dense). Bytes: K once per
call from DRAM (then from cache), V0/u/xi read and the cache (3ℓ+1)·B·N written once.
"""

import math
import types

import numpy as np
from numba import float32, njit, prange

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.scalar import activate, activate_cuda

_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}  # reassociation, not no-NaN: NaNs still show

# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------

_ACT_NP = {
    0: np.tanh,
    1: lambda y: np.maximum(y, 0.0),
    2: lambda y: y,
}


def step_reference(V0, u, K, bias, leak, xi, col_lo, col_hi, n_inputs, activation, inhibition,
                   kappa, pulse, out=None):
    """Definition of the fused step, in float64. Returns ``(Vc, z, y, alpha)``."""
    V = np.array(V0, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    leak = np.asarray(leak, dtype=np.float64)
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
        alpha[tau] = _ACT_NP[activation](y[tau]) + xi[tau]
        V = (1.0 - leak) * V + leak * alpha[tau]
        if not pulse:
            V[:, :n_inputs] = u
        Vc[tau + 1] = V
    if out is not None:
        for dst, src in zip(out, (Vc, z, y, alpha)):
            dst[...] = src
        return out
    return Vc, z, y, alpha


def step_composed(xp, V0, u, K, bias, leak, xi, n_inputs, activation, inhibition, kappa, pulse):
    """The same step composed from library calls (GEMM + elementwise) on ``xp`` (NumPy or CuPy).

    Not a face of the kernel: the alternative every face is benchmarked against (one GEMM and
    about ten elementwise passes per internal step). Returns ``(Vc, z, y, alpha)``.
    """
    ell, B, N = xi.shape
    V = V0.copy()
    if pulse:
        V[:, :n_inputs] += u
    else:
        V[:, :n_inputs] = u
    Vc, z, y, alpha = [V], [], [], []
    act = {0: xp.tanh, 1: lambda a: xp.maximum(a, 0), 2: lambda a: a}[activation]
    for tau in range(ell):
        zt = V @ K.T + bias
        yt = zt
        if inhibition == 1:
            yt = zt / (1 + kappa * xp.abs(zt[:, n_inputs:]).mean(axis=1, keepdims=True))
        at = act(yt) + xi[tau]
        at[:, :n_inputs] -= xi[tau][:, :n_inputs]
        V = (1 - leak) * V + leak * at
        if not pulse:
            V[:, :n_inputs] = u
        Vc.append(V)
        z.append(zt)
        y.append(yt)
        alpha.append(at)
    return xp.stack(Vc), xp.stack(z), xp.stack(y), xp.stack(alpha)


# ---------------------------------------------------------------------------------------------
# cpu: numba.njit, fused, parallel over blocks of neurons (K stays in cache) then over rows
# ---------------------------------------------------------------------------------------------

_ROWS = 4  # batch rows per register tile: one load of K[n, m] feeds four multiply-adds


@njit(cache=True, fastmath=_FAST, inline="always")
def _preactivation_rows(V, K, bias, lo, hi, n, b0, rows, z):
    """z[b0:b0+rows, n] = V[b0:b0+rows, lo:hi] · K[n, lo:hi] + bias[n], rows ≤ 4."""
    zero = z.dtype.type(0)
    a0 = zero
    a1 = zero
    a2 = zero
    a3 = zero
    if rows == 4:
        for m in range(lo, hi):
            k = K[n, m]
            a0 += k * V[b0, m]
            a1 += k * V[b0 + 1, m]
            a2 += k * V[b0 + 2, m]
            a3 += k * V[b0 + 3, m]
        z[b0, n] = a0 + bias[n]
        z[b0 + 1, n] = a1 + bias[n]
        z[b0 + 2, n] = a2 + bias[n]
        z[b0 + 3, n] = a3 + bias[n]
    else:
        for r in range(rows):
            a0 = zero
            for m in range(lo, hi):
                a0 += K[n, m] * V[b0 + r, m]
            z[b0 + r, n] = a0 + bias[n]


@njit(cache=True, fastmath=_FAST, inline="always")
def _activate_row(tau, b, u, leak, xi, n_inputs, activation, inhibition, kappa, pulse, Vc, z, y,
                  alpha):
    """Inhibition, activation, noise and leak of row ``b`` at internal step ``tau``."""
    N = z.shape[2]
    scale = 1.0
    if inhibition == 1:
        s = 0.0
        for n in range(n_inputs, N):
            s += abs(z[tau, b, n])
        scale = 1.0 / (1.0 + kappa * s / (N - n_inputs))
    for n in range(N):
        yy = z[tau, b, n] * scale
        y[tau, b, n] = yy
        a = activate(yy, activation)
        if n >= n_inputs:
            a += xi[tau, b, n]
        alpha[tau, b, n] = a
        if n < n_inputs and not pulse:
            Vc[tau + 1, b, n] = u[b, n]
        else:
            Vc[tau + 1, b, n] = (1 - leak[n]) * Vc[tau, b, n] + leak[n] * a


def _step_cpu_body(V0, u, K, bias, leak, xi, col_lo, col_hi, n_inputs, activation, inhibition,
                   kappa, pulse, Vc, z, y, alpha):
    ell, B, N = xi.shape
    for b in prange(B):
        for n in range(N):
            Vc[0, b, n] = V0[b, n]
        for i in range(n_inputs):
            if pulse:
                Vc[0, b, i] += u[b, i]
            else:
                Vc[0, b, i] = u[b, i]
    n_block = 64
    n_blocks = (N + n_block - 1) // n_block
    row_blocks = (B + _ROWS - 1) // _ROWS
    for tau in range(ell):
        # (neuron block × row block) tiles; a neuron block's rows of K stay in L2 across tiles
        for tile in prange(n_blocks * row_blocks):
            blk = tile // row_blocks
            b0 = (tile % row_blocks) * _ROWS
            rows = min(_ROWS, B - b0)
            for n in range(blk * n_block, min(N, (blk + 1) * n_block)):
                _preactivation_rows(Vc[tau], K, bias, col_lo[n], col_hi[n], n, b0, rows, z[tau])
        for b in prange(B):
            _activate_row(tau, b, u, leak, xi, n_inputs, activation, inhibition, kappa, pulse,
                          Vc, z, y, alpha)


def _compiled(fn, name, **flags):
    """``fn`` compiled under its own name (so the two variants keep separate cache files)."""
    clone = types.FunctionType(fn.__code__, fn.__globals__, name)
    clone.__qualname__ = name
    return njit(cache=True, fastmath=_FAST, **flags)(clone)


# prange is range in a serial njit: one body, two compilations.
_step_cpu_serial = _compiled(_step_cpu_body, "_step_cpu_serial")
_step_cpu_parallel = _compiled(_step_cpu_body, "_step_cpu_parallel", parallel=True)


# Below this many multiply-adds per internal step a parallel region costs more than it saves.
PARALLEL_MIN_WORK = 1 << 16


def step_cpu(V0, u, K, bias, leak, xi, col_lo, col_hi, n_inputs, activation, inhibition, kappa,
             pulse, out):
    """Fused step on the CPU, writing ``out = (Vc, z, y, alpha)``; returns ``out``."""
    Vc, z, y, alpha = out
    ell, B, N = xi.shape
    work = B * int(np.sum(col_hi - col_lo))
    args = (V0, u, K, bias, leak, xi, col_lo, col_hi, int(n_inputs), int(activation),
            int(inhibition), float(kappa), bool(pulse), Vc, z, y, alpha)
    (_step_cpu_parallel if work >= PARALLEL_MIN_WORK else _step_cpu_serial)(*args)
    return out


# ---------------------------------------------------------------------------------------------
# cuda: numba.cuda.jit; one launch runs all ℓ internal steps for a tile of batch rows
# ---------------------------------------------------------------------------------------------
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


def _cuda_jit(fn):
    """``cuda.jit`` without a signature: nothing compiles until the first launch."""
    return cuda.jit(fn) if cuda is not None else None


@_cuda_jit
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


def step_cuda(V0, u, K, bias, leak, xi, tile_lo, tile_hi, n_inputs, activation, inhibition,
              kappa, pulse, out, stream=0):
    """Fused step on the GPU (CuPy arrays; NumPy arrays in the simulator), float32.

    ``tile_lo``/``tile_hi`` are :func:`tile_ranges` of the row ranges (computed once per mask).
    One launch, ``ceil(B / TILE_B)`` blocks of ``TILE_B × TILE_N`` threads.
    """
    Vc, z, y, alpha = out
    B = xi.shape[1]
    grid = (max(1, math.ceil(B / TILE_B)),)
    _step_kernel[grid, (TILE_N, TILE_B), stream](
        V0, u, K, bias, leak, xi, tile_lo, tile_hi, np.int32(n_inputs), np.int32(activation),
        np.int32(inhibition), np.float32(kappa), bool(pulse), Vc, z, y, alpha)
    return out


# Signatures the PTX test compiles for sm_80 and sm_90 (tests/test_ptx.py): (kernel, [sig, …]).
_F1, _F2, _F3, _I1 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "int32[::1]"
CUDA_KERNELS = [
    (_step_kernel, [f"void({_F2}, {_F2}, {_F2}, {_F1}, {_F1}, {_F3}, {_I1}, {_I1}, int32, int32, "
                    f"int32, float32, boolean, {_F3}, {_F3}, {_F3}, {_F3})"]),
]
