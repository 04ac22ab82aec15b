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

import numpy as np
from llvmlite.binding import get_host_cpu_features
from numba import config as numba_config
from numba import carray, float32, get_num_threads, njit, prange

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.scalar import FASTMATH as _FAST
from leaky.kernels.scalar import activate, activate_cuda, compiled, cuda_jit
from leaky.kernels.scalar import fmuladd as _fma
from leaky.kernels.scalar import lane_sum as _lane_sum
from leaky.kernels.scalar import stack_empty as _stack_empty
from leaky.kernels.scalar import tanh32 as _tanh


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
# cpu: numba.njit, fused; register-tiled pre-activations, at most one parallel region per call
# ---------------------------------------------------------------------------------------------
#
# z = V Kᵀ + b, one internal step at a time, in register tiles of two kinds.
#
# Outer-product tiles (AVX-512, B ≥ 8, B·ℓ ≥ 64): 8 batch rows × 32 neurons. Each call first
# packs every 32-neuron group's weights as a contiguous panel of Kᵀ (0.2 ns per weight); per
# presynaptic column m a tile loads two vectors of the panel and broadcasts eight voltages into
# 16 vector accumulators, which live in a stack array LLVM keeps in registers. 165–268 GFLOP/s
# on one Zen 5 core for N = 64 … 1024 (OpenBLAS's Haswell kernels: 121–135).
#
# Dot tiles (every other case, and the rows and neurons the outer tiles leave over): 4 batch
# rows × 4 neurons, 16 dot products over the presynaptic range, each its own vector
# accumulator (explicit partial sums: lane l adds columns l, l + 16, …; the columns past the
# last whole vector go to a scalar), then 16 horizontal reductions in a fixed pairwise order
# (scalar.lane_sum): these cost ~12 ns per tile, as much as 85 columns, so dot tiles reach
# 60–180 GFLOP/s depending on the row length. The order of every sum is the source's, not
# fastmath's, and every multiply-add is scalar.fmuladd: a kernel rounds the same wherever LLVM
# compiled it (docs/kernels.md).
# With AVX2's 16 registers the 4 × 4 tile spills (measured 80 GFLOP/s against 118 for 2 × 4),
# so there the dot tiles are 2 × 4 and no outer tiles run.
#
# The loops index slices from 0, so numba emits no negative-index wrap-around selects, and
# error_model="numpy" drops Python's zero-division checks: either one stops LLVM vectorising.
# The neurons of a tile share the union of their presynaptic ranges col_lo…col_hi, widened to a
# whole number of vectors where the row has room; that is exact (K is stored masked, and
# 0·V = 0 for finite V, as in the reference's dense product) and costs a layered network a few
# extra columns per tile and one tile of a neighbouring layer's columns per layer boundary,
# never the dense N×N. The activation pass runs per row right after its pre-activations, with
# a vectorisable tanh.
#
# Every batch row evolves independently through all ℓ internal steps (inhibition is per row),
# so the parallel schedule "rows" gives each task a block of rows and all ℓ steps: one parallel
# region per call, no barrier between internal steps. A batch too small to split (fewer than
# 4 rows per thread) uses "neurons" instead: each internal step splits its neurons, one region
# per step. All schedules run the same tiles over the same 8-aligned row blocks and 32-aligned
# neuron groups, so a result does not depend on the schedule or the thread count.

_TILE = 4         # neurons per register tile; row blocks are whole multiples of it
_LANES = 16       # float32 lanes of one AVX-512 vector: what the tile loops advance by
_ROW_BLOCK = 64   # rows per task: their V and z (64·N floats each) stay in L2 while K streams by


def _host_has_avx512():
    """Whether numba compiles for a CPU with AVX-512 (its target, NUMBA_CPU_FEATURES or host)."""
    features = numba_config.CPU_FEATURES or get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


_TILE_ROWS = 4 if _host_has_avx512() else 2  # batch rows per register tile (a compile constant)
_OUTER = _TILE_ROWS == 4   # outer-product tiles need 32 vector registers (AVX-512)
_DOT_LANES = 16 if _OUTER else 8   # partial sums of a dot product: one vector register
_DOT_ACC16, _DOT_ACC8, _DOT_ACC4 = 16 * _DOT_LANES, 8 * _DOT_LANES, 4 * _DOT_LANES  # stack sizes
_OUTER_ROWS = 8    # batch rows × neurons of an outer-product tile: 16 AVX-512 accumulators
_OUTER_COLS = 32
# Packing the panels costs 0.2 ns per weight; an outer tile saves 4–8·10⁻³ ns per weight, row
# and internal step over a dot tile, more at small N where the dot tiles' horizontal reductions
# weigh most. Measured (one thread, serial, N = 64 / 128 / 256, B = 8 … 32): outer tiles pay
# from B·ℓ ≈ 32 / 48 / 64 on: the threshold is N/4 + 16, clamped to [32, 64].
_OUTER_MIN_ROWS_STEPS = 64


def outer_min_rows_steps(n_rows: int) -> int:
    """B·ℓ from which the outer-product tiles pay at N = ``n_rows`` neurons."""
    return min(_OUTER_MIN_ROWS_STEPS, max(32, n_rows // 4 + 16))


def _cpu_jit(**flags):
    return njit(cache=True, fastmath=_FAST, error_model="numpy", **flags)


@_cpu_jit(inline="always")
def _group_range(col_lo, col_hi, n0, n1):
    """Columns rows n0…n1-1 of K multiply: the union of their ranges (empty rows ignored),
    widened to a multiple of _LANES columns where it fits in the row.

    The widening reads only zeros of the masked K, and spares the tile loops a scalar
    remainder of up to 15 iterations (as slow as 15 vector ones)."""
    N = col_hi.shape[0]
    lo = N
    hi = 0
    for n in range(n0, n1):
        if col_hi[n] > col_lo[n]:
            lo = min(lo, col_lo[n])
            hi = max(hi, col_hi[n])
    if hi <= lo:
        return 0, 0
    width = (hi - lo + _LANES - 1) // _LANES * _LANES
    if width <= N:
        lo = min(lo, N - width)
        hi = lo + width
    return lo, hi


@_cpu_jit(inline="always")
def _store4(z, b, n0, bias, a0, a1, a2, a3):
    """z[b, n0:n0+4] = (a0, a1, a2, a3) + bias[n0:n0+4]."""
    z[b, n0] = a0 + bias[n0]
    z[b, n0 + 1] = a1 + bias[n0 + 1]
    z[b, n0 + 2] = a2 + bias[n0 + 2]
    z[b, n0 + 3] = a3 + bias[n0 + 3]


@_cpu_jit(inline="always")
def _tile4x4(V, K, bias, b0, n0, lo, hi, z):
    """z[b0:b0+4, n0:n0+4] = V[b0:b0+4, lo:hi] · K[n0:n0+4, lo:hi]ᵀ + bias[n0:n0+4].

    16 dot products, each summed in _DOT_LANES partial sums (lane l takes columns l, l + lanes,
    …: one vector accumulator per product, kept in registers), the columns past the last whole
    vector in a scalar each, then the lanes pairwise (``lane_sum``) plus that scalar."""
    v0, v1, v2, v3 = V[b0, lo:hi], V[b0 + 1, lo:hi], V[b0 + 2, lo:hi], V[b0 + 3, lo:hi]
    k0, k1, k2, k3 = K[n0, lo:hi], K[n0 + 1, lo:hi], K[n0 + 2, lo:hi], K[n0 + 3, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(_stack_empty(_DOT_ACC16, z), (16, _DOT_LANES))
    for l in range(_DOT_LANES):
        acc[0, l] = acc[1, l] = acc[2, l] = acc[3, l] = zero
        acc[4, l] = acc[5, l] = acc[6, l] = acc[7, l] = zero
        acc[8, l] = acc[9, l] = acc[10, l] = acc[11, l] = zero
        acc[12, l] = acc[13, l] = acc[14, l] = acc[15, l] = zero
    L = hi - lo
    whole = L - L % _DOT_LANES
    for m0 in range(0, whole, _DOT_LANES):
        for l in range(_DOT_LANES):
            m = m0 + l
            x0, x1, x2, x3 = v0[m], v1[m], v2[m], v3[m]
            w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
            acc[0, l] = _fma(x0, w0, acc[0, l])
            acc[1, l] = _fma(x0, w1, acc[1, l])
            acc[2, l] = _fma(x0, w2, acc[2, l])
            acc[3, l] = _fma(x0, w3, acc[3, l])
            acc[4, l] = _fma(x1, w0, acc[4, l])
            acc[5, l] = _fma(x1, w1, acc[5, l])
            acc[6, l] = _fma(x1, w2, acc[6, l])
            acc[7, l] = _fma(x1, w3, acc[7, l])
            acc[8, l] = _fma(x2, w0, acc[8, l])
            acc[9, l] = _fma(x2, w1, acc[9, l])
            acc[10, l] = _fma(x2, w2, acc[10, l])
            acc[11, l] = _fma(x2, w3, acc[11, l])
            acc[12, l] = _fma(x3, w0, acc[12, l])
            acc[13, l] = _fma(x3, w1, acc[13, l])
            acc[14, l] = _fma(x3, w2, acc[14, l])
            acc[15, l] = _fma(x3, w3, acc[15, l])
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
    for m in range(whole, L):
        x0, x1, x2, x3 = v0[m], v1[m], v2[m], v3[m]
        w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
        a00 = _fma(x0, w0, a00); a01 = _fma(x0, w1, a01); a02 = _fma(x0, w2, a02); a03 = _fma(x0, w3, a03)  # noqa: E702
        a10 = _fma(x1, w0, a10); a11 = _fma(x1, w1, a11); a12 = _fma(x1, w2, a12); a13 = _fma(x1, w3, a13)  # noqa: E702
        a20 = _fma(x2, w0, a20); a21 = _fma(x2, w1, a21); a22 = _fma(x2, w2, a22); a23 = _fma(x2, w3, a23)  # noqa: E702
        a30 = _fma(x3, w0, a30); a31 = _fma(x3, w1, a31); a32 = _fma(x3, w2, a32); a33 = _fma(x3, w3, a33)  # noqa: E702
    _store4(z, b0, n0, bias, _lane_sum(acc, 0, _DOT_LANES) + a00, _lane_sum(acc, 1, _DOT_LANES) + a01,
            _lane_sum(acc, 2, _DOT_LANES) + a02, _lane_sum(acc, 3, _DOT_LANES) + a03)
    _store4(z, b0 + 1, n0, bias, _lane_sum(acc, 4, _DOT_LANES) + a10, _lane_sum(acc, 5, _DOT_LANES) + a11,
            _lane_sum(acc, 6, _DOT_LANES) + a12, _lane_sum(acc, 7, _DOT_LANES) + a13)
    _store4(z, b0 + 2, n0, bias, _lane_sum(acc, 8, _DOT_LANES) + a20, _lane_sum(acc, 9, _DOT_LANES) + a21,
            _lane_sum(acc, 10, _DOT_LANES) + a22, _lane_sum(acc, 11, _DOT_LANES) + a23)
    _store4(z, b0 + 3, n0, bias, _lane_sum(acc, 12, _DOT_LANES) + a30, _lane_sum(acc, 13, _DOT_LANES) + a31,
            _lane_sum(acc, 14, _DOT_LANES) + a32, _lane_sum(acc, 15, _DOT_LANES) + a33)


@_cpu_jit(inline="always")
def _outer8x32(V, panel, bias, b0, n0, lo, hi, z):
    """z[b0:b0+8, n0:n0+32] = V[b0:b0+8, lo:hi] · panel[lo:hi] + bias[n0:n0+32].

    ``panel (N, 32)``: the packed Kᵀ columns of neurons n0…n0+31 (:func:`_pack_panels`).

    An outer-product tile: per column m, two vectors of weights times eight broadcast voltages into
    16 vector accumulators. The accumulators live in a stack array that LLVM keeps in
    registers (written row by row: a loop over the rows defeats that), so unlike the dot tiles
    there is no horizontal reduction at the end, which costs as much as ~85 columns.
    """
    acc = carray(_stack_empty(256, z), (8, 32))
    for j in range(32):
        acc[0, j] = acc[1, j] = acc[2, j] = acc[3, j] = z.dtype.type(0)
        acc[4, j] = acc[5, j] = acc[6, j] = acc[7, j] = z.dtype.type(0)
    v0, v1, v2, v3 = V[b0, lo:hi], V[b0 + 1, lo:hi], V[b0 + 2, lo:hi], V[b0 + 3, lo:hi]
    v4, v5, v6, v7 = V[b0 + 4, lo:hi], V[b0 + 5, lo:hi], V[b0 + 6, lo:hi], V[b0 + 7, lo:hi]
    for m in range(hi - lo):
        x0, x1, x2, x3, x4, x5, x6, x7 = v0[m], v1[m], v2[m], v3[m], v4[m], v5[m], v6[m], v7[m]
        w = panel[lo + m]
        for j in range(32):
            k = w[j]
            acc[0, j] = _fma(x0, k, acc[0, j])
            acc[1, j] = _fma(x1, k, acc[1, j])
            acc[2, j] = _fma(x2, k, acc[2, j])
            acc[3, j] = _fma(x3, k, acc[3, j])
            acc[4, j] = _fma(x4, k, acc[4, j])
            acc[5, j] = _fma(x5, k, acc[5, j])
            acc[6, j] = _fma(x6, k, acc[6, j])
            acc[7, j] = _fma(x7, k, acc[7, j])
    c = bias[n0:n0 + 32]
    for r in range(8):
        zr = z[b0 + r, n0:n0 + 32]
        for j in range(32):
            zr[j] = acc[r, j] + c[j]


@_cpu_jit(inline="always")
def _tile2x4(V, K, bias, b0, n0, lo, hi, z):
    """Two batch rows × 4 neurons: the tile for CPUs with 16 vector registers (AVX2); lanes as
    in :func:`_tile4x4`."""
    v0, v1 = V[b0, lo:hi], V[b0 + 1, lo:hi]
    k0, k1, k2, k3 = K[n0, lo:hi], K[n0 + 1, lo:hi], K[n0 + 2, lo:hi], K[n0 + 3, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(_stack_empty(_DOT_ACC8, z), (8, _DOT_LANES))
    for l in range(_DOT_LANES):
        acc[0, l] = acc[1, l] = acc[2, l] = acc[3, l] = zero
        acc[4, l] = acc[5, l] = acc[6, l] = acc[7, l] = zero
    L = hi - lo
    whole = L - L % _DOT_LANES
    for m0 in range(0, whole, _DOT_LANES):
        for l in range(_DOT_LANES):
            m = m0 + l
            x0, x1 = v0[m], v1[m]
            w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
            acc[0, l] = _fma(x0, w0, acc[0, l])
            acc[1, l] = _fma(x0, w1, acc[1, l])
            acc[2, l] = _fma(x0, w2, acc[2, l])
            acc[3, l] = _fma(x0, w3, acc[3, l])
            acc[4, l] = _fma(x1, w0, acc[4, l])
            acc[5, l] = _fma(x1, w1, acc[5, l])
            acc[6, l] = _fma(x1, w2, acc[6, l])
            acc[7, l] = _fma(x1, w3, acc[7, l])
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    for m in range(whole, L):
        x0, x1 = v0[m], v1[m]
        w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
        a00 = _fma(x0, w0, a00); a01 = _fma(x0, w1, a01); a02 = _fma(x0, w2, a02); a03 = _fma(x0, w3, a03)  # noqa: E702
        a10 = _fma(x1, w0, a10); a11 = _fma(x1, w1, a11); a12 = _fma(x1, w2, a12); a13 = _fma(x1, w3, a13)  # noqa: E702
    _store4(z, b0, n0, bias, _lane_sum(acc, 0, _DOT_LANES) + a00, _lane_sum(acc, 1, _DOT_LANES) + a01,
            _lane_sum(acc, 2, _DOT_LANES) + a02, _lane_sum(acc, 3, _DOT_LANES) + a03)
    _store4(z, b0 + 1, n0, bias, _lane_sum(acc, 4, _DOT_LANES) + a10, _lane_sum(acc, 5, _DOT_LANES) + a11,
            _lane_sum(acc, 6, _DOT_LANES) + a12, _lane_sum(acc, 7, _DOT_LANES) + a13)


@_cpu_jit(inline="always")
def _tile1x4(V, K, bias, b, n0, lo, hi, z):
    """One batch row × 4 neurons (the rows left over by 4×4 tiles; all of B = 1…3)."""
    v = V[b, lo:hi]
    k0, k1, k2, k3 = K[n0, lo:hi], K[n0 + 1, lo:hi], K[n0 + 2, lo:hi], K[n0 + 3, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(_stack_empty(_DOT_ACC4, z), (4, _DOT_LANES))
    for l in range(_DOT_LANES):
        acc[0, l] = acc[1, l] = acc[2, l] = acc[3, l] = zero
    L = hi - lo
    whole = L - L % _DOT_LANES
    for m0 in range(0, whole, _DOT_LANES):
        for l in range(_DOT_LANES):
            m = m0 + l
            x = v[m]
            acc[0, l] = _fma(x, k0[m], acc[0, l])
            acc[1, l] = _fma(x, k1[m], acc[1, l])
            acc[2, l] = _fma(x, k2[m], acc[2, l])
            acc[3, l] = _fma(x, k3[m], acc[3, l])
    a0 = a1 = a2 = a3 = zero
    for m in range(whole, L):
        x = v[m]
        a0 = _fma(x, k0[m], a0); a1 = _fma(x, k1[m], a1); a2 = _fma(x, k2[m], a2); a3 = _fma(x, k3[m], a3)  # noqa: E702
    _store4(z, b, n0, bias, _lane_sum(acc, 0, _DOT_LANES) + a0, _lane_sum(acc, 1, _DOT_LANES) + a1,
            _lane_sum(acc, 2, _DOT_LANES) + a2, _lane_sum(acc, 3, _DOT_LANES) + a3)


@_cpu_jit(inline="always")
def _tile_single(V, K, bias, b, n, lo, hi, z):
    """One batch row × one neuron (the neurons left over by 4-neuron groups)."""
    v = V[b, lo:hi]
    k = K[n, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(_stack_empty(_DOT_LANES, z), (1, _DOT_LANES))
    for l in range(_DOT_LANES):
        acc[0, l] = zero
    L = hi - lo
    whole = L - L % _DOT_LANES
    for m0 in range(0, whole, _DOT_LANES):
        for l in range(_DOT_LANES):
            acc[0, l] = _fma(v[m0 + l], k[m0 + l], acc[0, l])
    a = zero
    for m in range(whole, L):
        a = _fma(v[m], k[m], a)
    z[b, n] = (_lane_sum(acc, 0, _DOT_LANES) + a) + bias[n]


@_cpu_jit(inline="always")
def _dot_rows(V, K, bias, r0, r1, g, g1, lo, hi, z):
    """z[r0:r1, g:g1] with dot tiles: 4 (or 2) rows × 4 neurons, then single rows; g1 - g ≤ 4."""
    if g1 - g == _TILE:
        b = r0
        if _TILE_ROWS == 4:
            while b + 4 <= r1:
                _tile4x4(V, K, bias, b, g, lo, hi, z)
                b += 4
        else:
            while b + 2 <= r1:
                _tile2x4(V, K, bias, b, g, lo, hi, z)
                b += 2
        while b < r1:
            _tile1x4(V, K, bias, b, g, lo, hi, z)
            b += 1
    else:
        for n in range(g, g1):
            for b in range(r0, r1):
                _tile_single(V, K, bias, b, n, lo, hi, z)


@_cpu_jit()
def _preactivate(V, K, Kp, bias, col_lo, col_hi, r0, r1, n0, n1, z):
    """z[r0:r1, n0:n1] = V[r0:r1] Kᵀ[:, n0:n1] + bias[n0:n1], with n0 a multiple of 32.

    With panels ``Kp`` (``outer``): groups of 32 neurons, 8-row outer-product tiles, the rows
    left over by dot tiles. Then (or without panels) groups of 4 neurons with dot tiles.
    Neuron groups outside, row tiles inside: a group's weights stay in L1 (dot) or L2 (outer)
    while the rows' voltages stream from L2.
    """
    g = n0
    if Kp.shape[0] > 0:
        while g + _OUTER_COLS <= n1:
            lo, hi = _group_range(col_lo, col_hi, g, g + _OUTER_COLS)
            b = r0
            while b + _OUTER_ROWS <= r1:
                _outer8x32(V, Kp[g // _OUTER_COLS], bias, b, g, lo, hi, z)
                b += _OUTER_ROWS
            if b < r1:
                for g4 in range(g, g + _OUTER_COLS, _TILE):
                    lo4, hi4 = _group_range(col_lo, col_hi, g4, g4 + _TILE)
                    _dot_rows(V, K, bias, b, r1, g4, g4 + _TILE, lo4, hi4, z)
            g += _OUTER_COLS
    for g4 in range(g, n1, _TILE):
        g1 = min(g4 + _TILE, n1)
        lo, hi = _group_range(col_lo, col_hi, g4, g1)
        _dot_rows(V, K, bias, r0, r1, g4, g1, lo, hi, z)


@_cpu_jit()
def _pack_panels(K, col_lo, col_hi, Kp):
    """Kp[i, m, j] = K[32i + j, m]: each 32-neuron group's weights as a contiguous panel.

    Only the columns the group's outer tiles read are packed. Eight rows of K at a time: 32
    rows N floats apart (4 KiB at N = 1024) share one L1 set and evict each other.
    """
    for i in range(Kp.shape[0]):
        g = i * _OUTER_COLS
        lo, hi = _group_range(col_lo, col_hi, g, g + _OUTER_COLS)
        panel = Kp[i, lo:hi]
        for p in range(0, _OUTER_COLS, 8):
            k0, k1, k2, k3 = K[g + p, lo:hi], K[g + p + 1, lo:hi], K[g + p + 2, lo:hi], \
                K[g + p + 3, lo:hi]
            k4, k5, k6, k7 = K[g + p + 4, lo:hi], K[g + p + 5, lo:hi], K[g + p + 6, lo:hi], \
                K[g + p + 7, lo:hi]
            for m in range(hi - lo):
                w = panel[m]
                w[p], w[p + 1], w[p + 2], w[p + 3] = k0[m], k1[m], k2[m], k3[m]
                w[p + 4], w[p + 5], w[p + 6], w[p + 7] = k4[m], k5[m], k6[m], k7[m]


@_cpu_jit(inline="always")
def _agents(z, y, alpha, xi, v_old, v_new, leak, scale, act):
    """Activation, noise and leak over the agent neurons of one row (``act`` a constant)."""
    one = z.dtype.type(1)
    for i in range(z.shape[0]):
        yy = z[i] * scale
        y[i] = yy
        # σ of scalar.activate, spelled out: inlining activate here trips a numba IR check
        a = yy
        if act == 0:
            a = _tanh(yy)
        elif act == 1 and not yy > 0:
            a = yy * 0  # relu; NaN stays NaN
        a += xi[i]
        alpha[i] = a
        v_new[i] = (one - leak[i]) * v_old[i] + leak[i] * a


@_cpu_jit(inline="always")
def _abs_sum(x):
    """Σ|x| in _DOT_LANES partial sums, then pairwise (``lane_sum``) plus the remainder."""
    zero = x.dtype.type(0)
    acc = carray(_stack_empty(_DOT_LANES, x), (1, _DOT_LANES))
    for l in range(_DOT_LANES):
        acc[0, l] = zero
    n = x.shape[0]
    whole = n - n % _DOT_LANES
    for i0 in range(0, whole, _DOT_LANES):
        for l in range(_DOT_LANES):
            acc[0, l] += abs(x[i0 + l])
    rest = zero
    for i in range(whole, n):
        rest += abs(x[i])
    return _lane_sum(acc, 0, _DOT_LANES) + rest


@_cpu_jit()
def _activate_row(tau, b, u, leak, xi, n_inputs, activation, inhibition, kappa, pulse, Vc, z, y,
                  alpha):
    """Inhibition, activation, noise and leak of row ``b`` at internal step ``tau``."""
    N = z.shape[2]
    zr = z[tau, b]
    scale = zr.dtype.type(1)
    if inhibition == 1:
        s = _abs_sum(zr[n_inputs:])
        scale = zr.dtype.type(1.0 / (1.0 + kappa * s / (N - n_inputs)))
    for n in range(n_inputs):  # sensors: not agents, no noise; clamped or leaky (pulse)
        yy = zr[n] * scale
        y[tau, b, n] = yy
        if activation == 0:
            a = _tanh(yy)
        else:
            a = activate(yy, activation)
        alpha[tau, b, n] = a
        if pulse:
            Vc[tau + 1, b, n] = (1 - leak[n]) * Vc[tau, b, n] + leak[n] * a
        else:
            Vc[tau + 1, b, n] = u[b, n]
    i = n_inputs
    zs, ys, as_, xs = zr[i:], y[tau, b, i:], alpha[tau, b, i:], xi[tau, b, i:]
    v_old, v_new, lk = Vc[tau, b, i:], Vc[tau + 1, b, i:], leak[i:]
    if activation == 0:  # one loop per activation, each vectorised with its σ inlined
        _agents(zs, ys, as_, xs, v_old, v_new, lk, scale, 0)
    elif activation == 1:
        _agents(zs, ys, as_, xs, v_old, v_new, lk, scale, 1)
    else:
        _agents(zs, ys, as_, xs, v_old, v_new, lk, scale, 2)


@_cpu_jit(inline="always")
def _load_row(V0, u, n_inputs, pulse, b, Vc):
    """Vc[0, b] = V0[b] with the sensor input applied."""
    for n in range(V0.shape[1]):
        Vc[0, b, n] = V0[b, n]
    for i in range(n_inputs):
        Vc[0, b, i] = Vc[0, b, i] + u[b, i] if pulse else u[b, i]


def _step_cpu_body(V0, u, K, bias, leak, xi, col_lo, col_hi, n_inputs, activation, inhibition,
                   kappa, pulse, Vc, z, y, alpha, row_block, neuron_tasks, outer):
    ell, B, N = xi.shape
    Kp = np.empty((N // _OUTER_COLS if outer else 0, N, _OUTER_COLS), dtype=K.dtype)
    _pack_panels(K, col_lo, col_hi, Kp)
    if neuron_tasks == 0:  # schedule "rows" (and serial): a task owns rows for all ℓ steps
        for blk in prange((B + row_block - 1) // row_block):
            r0 = blk * row_block
            r1 = min(B, r0 + row_block)
            for b in range(r0, r1):
                _load_row(V0, u, n_inputs, pulse, b, Vc)
            for tau in range(ell):
                _preactivate(Vc[tau], K, Kp, bias, col_lo, col_hi, r0, r1, 0, N, z[tau])
                for b in range(r0, r1):
                    _activate_row(tau, b, u, leak, xi, n_inputs, activation, inhibition, kappa,
                                  pulse, Vc, z, y, alpha)
    else:  # schedule "neurons": every internal step splits its neurons over the tasks
        for b in range(B):
            _load_row(V0, u, n_inputs, pulse, b, Vc)
        per_task = -(-N // neuron_tasks)
        per_task = -(-per_task // _OUTER_COLS) * _OUTER_COLS   # whole 32-neuron groups
        for tau in range(ell):
            for task in prange(neuron_tasks):
                n0 = min(N, task * per_task)
                _preactivate(Vc[tau], K, Kp, bias, col_lo, col_hi, 0, B, n0, min(N, n0 + per_task),
                             z[tau])
            for b in range(B):
                _activate_row(tau, b, u, leak, xi, n_inputs, activation, inhibition, kappa,
                              pulse, Vc, z, y, alpha)


# prange is range in a serial njit: one body, two compilations.
_step_cpu_serial = compiled(_step_cpu_body, "_step_cpu_serial", error_model="numpy")
_step_cpu_parallel = compiled(_step_cpu_body, "_step_cpu_parallel", error_model="numpy", parallel=True)


@_cpu_jit()
def presynaptic_count(col_lo, col_hi):
    """Σ_n (col_hi_n − col_lo_n), the nnz of the masked K: multiply-adds per row and step."""
    total = 0
    for n in range(col_lo.shape[0]):
        total += max(0, col_hi[n] - col_lo[n])
    return total


# Below this many multiply-adds per call a parallel region (5–10 µs to start and join on this
# 2-core machine when both cores are idle) costs more than splitting the work saves.
PARALLEL_MIN_WORK = 1 << 20
SCHEDULES = ("serial", "rows", "neurons")


def cpu_schedule(B, ell, nnz, schedule=None):
    """``(name, row_block, neuron_tasks)`` of the schedule ``step_cpu`` runs.

    By default: serial below ``PARALLEL_MIN_WORK`` multiply-adds or with one thread, else
    "rows" when every thread gets at least one 4-row tile, else "neurons". ``schedule`` forces
    one of :data:`SCHEDULES`.
    """
    if schedule is None:
        if ell * B * nnz < PARALLEL_MIN_WORK:  # first: get_num_threads() alone costs 0.5 µs
            return "serial", _ROW_BLOCK, 0
        threads = get_num_threads()
        schedule = "serial" if threads < 2 else "rows" if B >= _TILE * threads else "neurons"
    elif schedule not in SCHEDULES:
        raise ValueError(f"schedule: got {schedule!r}, expected one of {SCHEDULES}")
    if schedule == "serial":
        return "serial", _ROW_BLOCK, 0
    threads = get_num_threads()
    if schedule == "rows":  # blocks of whole 8-row tiles, at most _ROW_BLOCK rows, ≥ 1 per thread
        return "rows", min(_ROW_BLOCK, -(-B // (threads * _OUTER_ROWS)) * _OUTER_ROWS), 0
    return "neurons", _ROW_BLOCK, threads


def step_cpu(V0, u, K, bias, leak, xi, col_lo, col_hi, n_inputs, activation, inhibition, kappa,
             pulse, out, nnz=None, schedule=None):
    """Fused step on the CPU, writing ``out = (Vc, z, y, alpha)``; returns ``out``.

    ``nnz`` (optional) is :func:`presynaptic_count` of the mask, computed once per network so
    the call does not recount it; ``schedule`` (optional) forces one of :data:`SCHEDULES`
    instead of the choice :func:`cpu_schedule` makes from the work (benchmarks, tests).
    """
    Vc, z, y, alpha = out
    ell, B, N = xi.shape
    if nnz is None:
        nnz = presynaptic_count(col_lo, col_hi)
    # The small calls this library makes per env step cost a few µs in all: the common case
    # (serial) skips cpu_schedule.
    if schedule is None and ell * B * nnz < PARALLEL_MIN_WORK:
        kernel, row_block, neuron_tasks = _step_cpu_serial, _ROW_BLOCK, 0
    else:
        name, row_block, neuron_tasks = cpu_schedule(B, ell, nnz, schedule)
        kernel = _step_cpu_serial if name == "serial" else _step_cpu_parallel
    outer = (_OUTER and B >= _OUTER_ROWS and N >= _OUTER_COLS
             and B * ell >= outer_min_rows_steps(N))
    kernel(V0, u, K, bias, leak, xi, col_lo, col_hi, int(n_inputs), int(activation),
           int(inhibition), float(kappa), bool(pulse), Vc, z, y, alpha, row_block, neuron_tasks,
           outer)
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
