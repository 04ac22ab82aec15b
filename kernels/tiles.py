"""Register tiles of the cpu faces: small matrix products whose accumulators stay in registers.

Every cpu face that multiplies voltages by weights does it with these tiles (kernels/step/cpu.py,
kernels/tangent/cpu.py, kernels/update_local/cpu.py, kernels/credit/cpu.py); each is written here
once. Two kinds, for ``z = V Kᵀ`` over a row range ``lo…hi`` of presynaptic columns:

* outer-product tiles (:func:`outer8x32`, AVX-512, B ≥ 8): 8 batch rows × 32 neurons over a
  panel of Kᵀ packed by :func:`pack_k_panels`; per presynaptic column, two vectors of the
  panel times eight broadcast voltages into 16 vector accumulators, which live in a stack
  array LLVM keeps in registers. 165–268 GFLOP/s on one Zen 5 core for N = 64 … 1024
  (OpenBLAS's Haswell kernels: 121–135);
* dot tiles (:func:`tile4x4`, :func:`tile2x4`, :func:`tile1x4`, :func:`tile_single`, chosen by
  :func:`dot_rows`): 4 (AVX2: 2) batch rows × 4 neurons, 16 dot products each in its own
  vector of partial sums (lane l adds columns l, l + 16, …; the columns past the last whole
  vector go to a scalar), then 16 horizontal reductions in a fixed pairwise order
  (``jit.lane_sum``): ~12 ns per tile, as much as 85 columns, so dot tiles reach 60–180 GFLOP/s
  depending on the row length. With AVX2's 16 registers the 4 × 4 tile spills (measured 80
  GFLOP/s against 118 for 2 × 4), so there the dot tiles are 2 × 4 and no outer tiles run;

and the transposed products of the updates: :func:`outer_nn`, :func:`outer_nn8` (eight
transitions' dot products with 32 or 8 packed critic rows) and :func:`outer_tn` (eight
gradient rows over 32 features, summed over the transitions in order).

The order of every sum is the source's, not fastmath's, and every multiply-add is
``jit.fmuladd``: a kernel rounds the same wherever LLVM compiled it (docs/kernels.md). The
loops index slices from 0, so numba emits no negative-index wrap-around selects, and
``error_model="numpy"`` drops Python's zero-division checks: either one stops LLVM vectorising.
The neurons of a tile share the union of their presynaptic ranges col_lo…col_hi
(:func:`group_range`), widened to a whole number of vectors where the row has room; that is
exact (K is stored masked, and 0·V = 0 for finite V, as in the references' dense products).
"""

import numpy as np
from llvmlite.binding import get_host_cpu_features   # numba's own code generator
from numba import carray
from numba import config as numba_config

from leaky.kernels.jit import cpu_jit, fmuladd, lane_sum, stack_empty

TILE = 4         # neurons per register tile; row blocks are whole multiples of it
LANES = 16       # float32 lanes of one AVX-512 vector: what the tile loops advance by


def _host_has_avx512():
    """Whether numba compiles for a CPU with AVX-512 (its target, NUMBA_CPU_FEATURES or host)."""
    features = numba_config.CPU_FEATURES or get_host_cpu_features().flatten()
    return "+avx512f" in features.split(",")


TILE_ROWS = 4 if _host_has_avx512() else 2  # batch rows per register tile (a compile constant)
OUTER = TILE_ROWS == 4   # outer-product tiles need 32 vector registers (AVX-512)
DOT_LANES = 16 if OUTER else 8   # partial sums of a dot product: one vector register
_DOT_ACC16, _DOT_ACC8, _DOT_ACC4 = 16 * DOT_LANES, 8 * DOT_LANES, 4 * DOT_LANES  # stack sizes
OUTER_ROWS = 8    # batch rows × neurons of an outer-product tile: 16 AVX-512 accumulators
OUTER_COLS = 32
# Packing the panels costs 0.2 ns per weight; an outer tile saves 4–8·10⁻³ ns per weight, row
# and internal step over a dot tile, more at small N where the dot tiles' horizontal reductions
# weigh most. Measured (one thread, serial, N = 64 / 128 / 256, B = 8 … 32): outer tiles pay
# from B·ℓ ≈ 32 / 48 / 64 on: the threshold is N/4 + 16, clamped to [32, 64].
_OUTER_MIN_ROWS_STEPS = 64


def outer_min_rows_steps(n_rows: int) -> int:
    """B·ℓ from which the outer-product tiles pay at N = ``n_rows`` neurons."""
    return min(_OUTER_MIN_ROWS_STEPS, max(32, n_rows // 4 + 16))


@cpu_jit()
def slice_tiles(tau, n_inputs, N, width):
    """``(order, starts)``: the agents ``n_inputs … N-1`` sorted by their slice ``tau[n]``
    (stable), tile ``j`` = ``order[starts[j]:starts[j + 1]]``: at most ``width`` neurons that
    learn from one slice (the per-neuron update families' cpu tiles)."""
    order = n_inputs + np.argsort(tau[n_inputs:N], kind="mergesort").astype(np.int64)
    A = N - n_inputs
    starts = np.empty(A + 1, dtype=np.int64)
    j = 0
    i = 0
    while i < A:
        starts[j] = i
        j += 1
        e = i + 1
        while e < A and e - i < width and tau[order[e]] == tau[order[i]]:
            e += 1
        i = e
    starts[j] = A
    return order, starts[:j + 1]


@cpu_jit(inline="always")
def group_range(col_lo, col_hi, n0, n1):
    """Columns rows n0…n1-1 of K multiply: the union of their ranges (empty rows ignored),
    widened to a multiple of LANES columns where it fits in the row.

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
    width = (hi - lo + LANES - 1) // LANES * LANES
    if width <= N:
        lo = min(lo, N - width)
        hi = lo + width
    return lo, hi


@cpu_jit(inline="always")
def _store4(z, b, n0, bias, a0, a1, a2, a3):
    """z[b, n0:n0+4] = (a0, a1, a2, a3) + bias[n0:n0+4]."""
    z[b, n0] = a0 + bias[n0]
    z[b, n0 + 1] = a1 + bias[n0 + 1]
    z[b, n0 + 2] = a2 + bias[n0 + 2]
    z[b, n0 + 3] = a3 + bias[n0 + 3]


@cpu_jit(inline="always")
def tile4x4(V, K, bias, b0, n0, lo, hi, z):
    """z[b0:b0+4, n0:n0+4] = V[b0:b0+4, lo:hi] · K[n0:n0+4, lo:hi]ᵀ + bias[n0:n0+4].

    16 dot products, each summed in DOT_LANES partial sums (lane l takes columns l, l + lanes,
    …: one vector accumulator per product, kept in registers), the columns past the last whole
    vector in a scalar each, then the lanes pairwise (``lane_sum``) plus that scalar."""
    v0, v1, v2, v3 = V[b0, lo:hi], V[b0 + 1, lo:hi], V[b0 + 2, lo:hi], V[b0 + 3, lo:hi]
    k0, k1, k2, k3 = K[n0, lo:hi], K[n0 + 1, lo:hi], K[n0 + 2, lo:hi], K[n0 + 3, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(stack_empty(_DOT_ACC16, z), (16, DOT_LANES))
    for l in range(DOT_LANES):
        acc[0, l] = acc[1, l] = acc[2, l] = acc[3, l] = zero
        acc[4, l] = acc[5, l] = acc[6, l] = acc[7, l] = zero
        acc[8, l] = acc[9, l] = acc[10, l] = acc[11, l] = zero
        acc[12, l] = acc[13, l] = acc[14, l] = acc[15, l] = zero
    L = hi - lo
    whole = L - L % DOT_LANES
    for m0 in range(0, whole, DOT_LANES):
        for l in range(DOT_LANES):
            m = m0 + l
            x0, x1, x2, x3 = v0[m], v1[m], v2[m], v3[m]
            w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
            acc[0, l] = fmuladd(x0, w0, acc[0, l])
            acc[1, l] = fmuladd(x0, w1, acc[1, l])
            acc[2, l] = fmuladd(x0, w2, acc[2, l])
            acc[3, l] = fmuladd(x0, w3, acc[3, l])
            acc[4, l] = fmuladd(x1, w0, acc[4, l])
            acc[5, l] = fmuladd(x1, w1, acc[5, l])
            acc[6, l] = fmuladd(x1, w2, acc[6, l])
            acc[7, l] = fmuladd(x1, w3, acc[7, l])
            acc[8, l] = fmuladd(x2, w0, acc[8, l])
            acc[9, l] = fmuladd(x2, w1, acc[9, l])
            acc[10, l] = fmuladd(x2, w2, acc[10, l])
            acc[11, l] = fmuladd(x2, w3, acc[11, l])
            acc[12, l] = fmuladd(x3, w0, acc[12, l])
            acc[13, l] = fmuladd(x3, w1, acc[13, l])
            acc[14, l] = fmuladd(x3, w2, acc[14, l])
            acc[15, l] = fmuladd(x3, w3, acc[15, l])
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
    for m in range(whole, L):
        x0, x1, x2, x3 = v0[m], v1[m], v2[m], v3[m]
        w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
        a00 = fmuladd(x0, w0, a00); a01 = fmuladd(x0, w1, a01); a02 = fmuladd(x0, w2, a02); a03 = fmuladd(x0, w3, a03)  # noqa: E702
        a10 = fmuladd(x1, w0, a10); a11 = fmuladd(x1, w1, a11); a12 = fmuladd(x1, w2, a12); a13 = fmuladd(x1, w3, a13)  # noqa: E702
        a20 = fmuladd(x2, w0, a20); a21 = fmuladd(x2, w1, a21); a22 = fmuladd(x2, w2, a22); a23 = fmuladd(x2, w3, a23)  # noqa: E702
        a30 = fmuladd(x3, w0, a30); a31 = fmuladd(x3, w1, a31); a32 = fmuladd(x3, w2, a32); a33 = fmuladd(x3, w3, a33)  # noqa: E702
    _store4(z, b0, n0, bias, lane_sum(acc, 0, DOT_LANES) + a00, lane_sum(acc, 1, DOT_LANES) + a01,
            lane_sum(acc, 2, DOT_LANES) + a02, lane_sum(acc, 3, DOT_LANES) + a03)
    _store4(z, b0 + 1, n0, bias, lane_sum(acc, 4, DOT_LANES) + a10, lane_sum(acc, 5, DOT_LANES) + a11,
            lane_sum(acc, 6, DOT_LANES) + a12, lane_sum(acc, 7, DOT_LANES) + a13)
    _store4(z, b0 + 2, n0, bias, lane_sum(acc, 8, DOT_LANES) + a20, lane_sum(acc, 9, DOT_LANES) + a21,
            lane_sum(acc, 10, DOT_LANES) + a22, lane_sum(acc, 11, DOT_LANES) + a23)
    _store4(z, b0 + 3, n0, bias, lane_sum(acc, 12, DOT_LANES) + a30, lane_sum(acc, 13, DOT_LANES) + a31,
            lane_sum(acc, 14, DOT_LANES) + a32, lane_sum(acc, 15, DOT_LANES) + a33)


@cpu_jit(inline="always")
def outer8x32(V, panel, bias, b0, n0, lo, hi, z):
    """z[b0:b0+8, n0:n0+32] = V[b0:b0+8, lo:hi] · panel[lo:hi] + bias[n0:n0+32].

    ``panel (N, 32)``: the packed Kᵀ columns of neurons n0…n0+31 (:func:`pack_k_panels`).

    An outer-product tile: per column m, two vectors of weights times eight broadcast voltages into
    16 vector accumulators. The accumulators live in a stack array that LLVM keeps in
    registers (written row by row: a loop over the rows defeats that), so unlike the dot tiles
    there is no horizontal reduction at the end, which costs as much as ~85 columns.
    """
    acc = carray(stack_empty(256, z), (8, 32))
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
            acc[0, j] = fmuladd(x0, k, acc[0, j])
            acc[1, j] = fmuladd(x1, k, acc[1, j])
            acc[2, j] = fmuladd(x2, k, acc[2, j])
            acc[3, j] = fmuladd(x3, k, acc[3, j])
            acc[4, j] = fmuladd(x4, k, acc[4, j])
            acc[5, j] = fmuladd(x5, k, acc[5, j])
            acc[6, j] = fmuladd(x6, k, acc[6, j])
            acc[7, j] = fmuladd(x7, k, acc[7, j])
    c = bias[n0:n0 + 32]
    for r in range(8):
        zr = z[b0 + r, n0:n0 + 32]
        for j in range(32):
            zr[j] = acc[r, j] + c[j]


@cpu_jit(inline="always")
def tile2x4(V, K, bias, b0, n0, lo, hi, z):
    """Two batch rows × 4 neurons: the tile for CPUs with 16 vector registers (AVX2); lanes as
    in :func:`tile4x4`."""
    v0, v1 = V[b0, lo:hi], V[b0 + 1, lo:hi]
    k0, k1, k2, k3 = K[n0, lo:hi], K[n0 + 1, lo:hi], K[n0 + 2, lo:hi], K[n0 + 3, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(stack_empty(_DOT_ACC8, z), (8, DOT_LANES))
    for l in range(DOT_LANES):
        acc[0, l] = acc[1, l] = acc[2, l] = acc[3, l] = zero
        acc[4, l] = acc[5, l] = acc[6, l] = acc[7, l] = zero
    L = hi - lo
    whole = L - L % DOT_LANES
    for m0 in range(0, whole, DOT_LANES):
        for l in range(DOT_LANES):
            m = m0 + l
            x0, x1 = v0[m], v1[m]
            w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
            acc[0, l] = fmuladd(x0, w0, acc[0, l])
            acc[1, l] = fmuladd(x0, w1, acc[1, l])
            acc[2, l] = fmuladd(x0, w2, acc[2, l])
            acc[3, l] = fmuladd(x0, w3, acc[3, l])
            acc[4, l] = fmuladd(x1, w0, acc[4, l])
            acc[5, l] = fmuladd(x1, w1, acc[5, l])
            acc[6, l] = fmuladd(x1, w2, acc[6, l])
            acc[7, l] = fmuladd(x1, w3, acc[7, l])
    a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
    for m in range(whole, L):
        x0, x1 = v0[m], v1[m]
        w0, w1, w2, w3 = k0[m], k1[m], k2[m], k3[m]
        a00 = fmuladd(x0, w0, a00); a01 = fmuladd(x0, w1, a01); a02 = fmuladd(x0, w2, a02); a03 = fmuladd(x0, w3, a03)  # noqa: E702
        a10 = fmuladd(x1, w0, a10); a11 = fmuladd(x1, w1, a11); a12 = fmuladd(x1, w2, a12); a13 = fmuladd(x1, w3, a13)  # noqa: E702
    _store4(z, b0, n0, bias, lane_sum(acc, 0, DOT_LANES) + a00, lane_sum(acc, 1, DOT_LANES) + a01,
            lane_sum(acc, 2, DOT_LANES) + a02, lane_sum(acc, 3, DOT_LANES) + a03)
    _store4(z, b0 + 1, n0, bias, lane_sum(acc, 4, DOT_LANES) + a10, lane_sum(acc, 5, DOT_LANES) + a11,
            lane_sum(acc, 6, DOT_LANES) + a12, lane_sum(acc, 7, DOT_LANES) + a13)


@cpu_jit(inline="always")
def tile1x4(V, K, bias, b, n0, lo, hi, z):
    """One batch row × 4 neurons (the rows left over by 4×4 tiles; all of B = 1…3)."""
    v = V[b, lo:hi]
    k0, k1, k2, k3 = K[n0, lo:hi], K[n0 + 1, lo:hi], K[n0 + 2, lo:hi], K[n0 + 3, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(stack_empty(_DOT_ACC4, z), (4, DOT_LANES))
    for l in range(DOT_LANES):
        acc[0, l] = acc[1, l] = acc[2, l] = acc[3, l] = zero
    L = hi - lo
    whole = L - L % DOT_LANES
    for m0 in range(0, whole, DOT_LANES):
        for l in range(DOT_LANES):
            m = m0 + l
            x = v[m]
            acc[0, l] = fmuladd(x, k0[m], acc[0, l])
            acc[1, l] = fmuladd(x, k1[m], acc[1, l])
            acc[2, l] = fmuladd(x, k2[m], acc[2, l])
            acc[3, l] = fmuladd(x, k3[m], acc[3, l])
    a0 = a1 = a2 = a3 = zero
    for m in range(whole, L):
        x = v[m]
        a0 = fmuladd(x, k0[m], a0); a1 = fmuladd(x, k1[m], a1); a2 = fmuladd(x, k2[m], a2); a3 = fmuladd(x, k3[m], a3)  # noqa: E702
    _store4(z, b, n0, bias, lane_sum(acc, 0, DOT_LANES) + a0, lane_sum(acc, 1, DOT_LANES) + a1,
            lane_sum(acc, 2, DOT_LANES) + a2, lane_sum(acc, 3, DOT_LANES) + a3)


@cpu_jit(inline="always")
def tile_single(V, K, bias, b, n, lo, hi, z):
    """One batch row × one neuron (the neurons left over by 4-neuron groups)."""
    v = V[b, lo:hi]
    k = K[n, lo:hi]
    zero = z.dtype.type(0)
    acc = carray(stack_empty(DOT_LANES, z), (1, DOT_LANES))
    for l in range(DOT_LANES):
        acc[0, l] = zero
    L = hi - lo
    whole = L - L % DOT_LANES
    for m0 in range(0, whole, DOT_LANES):
        for l in range(DOT_LANES):
            acc[0, l] = fmuladd(v[m0 + l], k[m0 + l], acc[0, l])
    a = zero
    for m in range(whole, L):
        a = fmuladd(v[m], k[m], a)
    z[b, n] = (lane_sum(acc, 0, DOT_LANES) + a) + bias[n]


@cpu_jit(inline="always")
def dot_rows(V, K, bias, r0, r1, g, g1, lo, hi, z):
    """z[r0:r1, g:g1] with dot tiles: 4 (or 2) rows × 4 neurons, then single rows; g1 - g ≤ 4."""
    if g1 - g == TILE:
        b = r0
        if TILE_ROWS == 4:
            while b + 4 <= r1:
                tile4x4(V, K, bias, b, g, lo, hi, z)
                b += 4
        else:
            while b + 2 <= r1:
                tile2x4(V, K, bias, b, g, lo, hi, z)
                b += 2
        while b < r1:
            tile1x4(V, K, bias, b, g, lo, hi, z)
            b += 1
    else:
        for n in range(g, g1):
            for b in range(r0, r1):
                tile_single(V, K, bias, b, n, lo, hi, z)


@cpu_jit()
def pack_k_panels(K, col_lo, col_hi, Kp):
    """Kp[i, m, j] = K[32i + j, m]: each 32-neuron group's weights as a contiguous panel.

    Only the columns the group's outer tiles read are packed. Eight rows of K at a time: 32
    rows N floats apart (4 KiB at N = 1024) share one L1 set and evict each other.
    """
    for i in range(Kp.shape[0]):
        g = i * OUTER_COLS
        lo, hi = group_range(col_lo, col_hi, g, g + OUTER_COLS)
        panel = Kp[i, lo:hi]
        for p in range(0, OUTER_COLS, 8):
            k0, k1, k2, k3 = K[g + p, lo:hi], K[g + p + 1, lo:hi], K[g + p + 2, lo:hi], \
                K[g + p + 3, lo:hi]
            k4, k5, k6, k7 = K[g + p + 4, lo:hi], K[g + p + 5, lo:hi], K[g + p + 6, lo:hi], \
                K[g + p + 7, lo:hi]
            for m in range(hi - lo):
                w = panel[m]
                w[p], w[p + 1], w[p + 2], w[p + 3] = k0[m], k1[m], k2[m], k3[m]
                w[p + 4], w[p + 5], w[p + 6], w[p + 7] = k4[m], k5[m], k6[m], k7[m]


@cpu_jit(inline="always")
def outer_nn(A, s0, P, L, out):
    """``out[s0:s0+8, 0:32] = A[s0:s0+8, 0:L] · P[0:L, 0:32]``: eight transitions' dot products
    with 32 packed critic rows.

    Per feature m, one row of the panel (two vectors) times eight broadcast voltages into 16
    vector accumulators; the accumulators live in a stack array that LLVM keeps in registers
    (the pattern of kernels/step's outer tiles).
    """
    acc = carray(stack_empty(256, out), (8, 32))
    zero = out.dtype.type(0)
    for j in range(32):
        acc[0, j] = acc[1, j] = acc[2, j] = acc[3, j] = zero
        acc[4, j] = acc[5, j] = acc[6, j] = acc[7, j] = zero
    v0, v1, v2, v3 = A[s0], A[s0 + 1], A[s0 + 2], A[s0 + 3]
    v4, v5, v6, v7 = A[s0 + 4], A[s0 + 5], A[s0 + 6], A[s0 + 7]
    for m in range(L):
        x0, x1, x2, x3, x4, x5, x6, x7 = v0[m], v1[m], v2[m], v3[m], v4[m], v5[m], v6[m], v7[m]
        w = P[m]
        for j in range(32):
            k = w[j]
            acc[0, j] = fmuladd(x0, k, acc[0, j])
            acc[1, j] = fmuladd(x1, k, acc[1, j])
            acc[2, j] = fmuladd(x2, k, acc[2, j])
            acc[3, j] = fmuladd(x3, k, acc[3, j])
            acc[4, j] = fmuladd(x4, k, acc[4, j])
            acc[5, j] = fmuladd(x5, k, acc[5, j])
            acc[6, j] = fmuladd(x6, k, acc[6, j])
            acc[7, j] = fmuladd(x7, k, acc[7, j])
    for r in range(8):
        o = out[s0 + r]
        for j in range(32):
            o[j] = acc[r, j]


@cpu_jit(inline="always")
def outer_tn(E, c0, A, r0, m0, S, out, o0):
    """``out[c0:c0+8, o0:o0+32] = E[0:S, c0:c0+8]ᵀ · A[r0:r0+S, m0:m0+32]``: eight gradient
    rows (per-transition weights e of eight neurons) over 32 features, summed over the S
    transitions in order; per transition eight broadcast weights times two vectors of voltages.
    ``A`` is the voltages (T·B, N) or one column panel of them (T·B, 32), whose rows are
    contiguous, so the tile streams memory in order (rows of the plain layout are N floats apart).
    """
    acc = carray(stack_empty(256, out), (8, 32))
    zero = out.dtype.type(0)
    for j in range(32):
        acc[0, j] = acc[1, j] = acc[2, j] = acc[3, j] = zero
        acc[4, j] = acc[5, j] = acc[6, j] = acc[7, j] = zero
    for s in range(S):
        e = E[s]
        e0, e1, e2, e3 = e[c0], e[c0 + 1], e[c0 + 2], e[c0 + 3]
        e4, e5, e6, e7 = e[c0 + 4], e[c0 + 5], e[c0 + 6], e[c0 + 7]
        a = A[r0 + s, m0:m0 + 32]
        for j in range(32):
            k = a[j]
            acc[0, j] = fmuladd(e0, k, acc[0, j])
            acc[1, j] = fmuladd(e1, k, acc[1, j])
            acc[2, j] = fmuladd(e2, k, acc[2, j])
            acc[3, j] = fmuladd(e3, k, acc[3, j])
            acc[4, j] = fmuladd(e4, k, acc[4, j])
            acc[5, j] = fmuladd(e5, k, acc[5, j])
            acc[6, j] = fmuladd(e6, k, acc[6, j])
            acc[7, j] = fmuladd(e7, k, acc[7, j])
    for r in range(8):
        o = out[c0 + r, o0:o0 + 32]
        for j in range(32):
            o[j] = acc[r, j]


@cpu_jit(inline="always")
def outer_nn8(A, s0, P, L, out):
    """:func:`outer_nn` for the first 8 columns only (tiles of at most 8 neurons)."""
    acc = carray(stack_empty(64, out), (8, 8))
    zero = out.dtype.type(0)
    for j in range(8):
        acc[0, j] = acc[1, j] = acc[2, j] = acc[3, j] = zero
        acc[4, j] = acc[5, j] = acc[6, j] = acc[7, j] = zero
    v0, v1, v2, v3 = A[s0], A[s0 + 1], A[s0 + 2], A[s0 + 3]
    v4, v5, v6, v7 = A[s0 + 4], A[s0 + 5], A[s0 + 6], A[s0 + 7]
    for m in range(L):
        x0, x1, x2, x3, x4, x5, x6, x7 = v0[m], v1[m], v2[m], v3[m], v4[m], v5[m], v6[m], v7[m]
        w = P[m]
        for j in range(8):
            k = w[j]
            acc[0, j] = fmuladd(x0, k, acc[0, j])
            acc[1, j] = fmuladd(x1, k, acc[1, j])
            acc[2, j] = fmuladd(x2, k, acc[2, j])
            acc[3, j] = fmuladd(x3, k, acc[3, j])
            acc[4, j] = fmuladd(x4, k, acc[4, j])
            acc[5, j] = fmuladd(x5, k, acc[5, j])
            acc[6, j] = fmuladd(x6, k, acc[6, j])
            acc[7, j] = fmuladd(x7, k, acc[7, j])
    for r in range(8):
        o = out[s0 + r]
        for j in range(8):
            o[j] = acc[r, j]
