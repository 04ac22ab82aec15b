"""The cuda face: numba.cuda.jit, one launch, one block per neuron, one thread per hidden unit."""

from __future__ import annotations

import math

import numpy as np
from numba import float32, int32

try:  # the cuda face needs numba-cuda; the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.data import array_module
from leaky.kernels.jit import cuda_jit as _cuda_jit
from leaky.kernels.jit import shared
from leaky.kernels.scalar import activate_cuda, activate_grad_cuda
from leaky.kernels.scalar import step_param_cuda as _step_param_cuda
from leaky.kernels.spec import F1, F2, F3, I1, KernelSpec, Launch, cuda_kernels, run
from leaky.kernels.update_mlp.boundary import (HS_SHAPE, IX_SHAPE, MAX_HIDDEN, NTHREADS, RED_SHAPE, SC_SHAPE, TILE_S,
                                               ActorRows, CriticState, MLPScalars, Topology, Transitions, UpdateOut,
                                               mlp_hidden)


def _cuda_device(fn):
    return cuda.jit(device=True, inline="always")(fn) if cuda is not None else None


# ---------------------------------------------------------------------------------------------
# scalar math of the cuda face: one critic, one hidden unit at a time (the cpu face batches
# the transitions of a neuron instead, below)
# ---------------------------------------------------------------------------------------------
#
# Written for a packed parameter row (mlp_layout): b1 at H(N+1), W2 at H(N+2), b2 at H(N+2)+H²,
# w3 at H(N+3)+H², b3 at H(N+4)+H². Type-preserving: no float literals (float32 stays float32).

def _unit1(row, x, mrow, a_in, k, N, H, view):
    """h1[k] = tanh(b1[k] + Σ_i W1[k, i] f_i x_i + W1[k, N] a_in); ``mrow`` read under view 1."""
    base = k * (N + 1)
    acc = row[H * (N + 1) + k] + row[base + N] * a_in
    if view == 0:
        for i in range(N):
            acc += row[base + i] * x[i]
    else:
        for i in range(N):
            if mrow[i] != 0:
                acc += row[base + i] * x[i]
    return math.tanh(acc)


def _unit2(row, h1, k, N, H):
    """h2[k] = tanh(b2[k] + Σ_j W2[k, j] h1[j])."""
    w2 = H * (N + 2)
    base = w2 + k * H
    acc = row[w2 + H * H + k]
    for j in range(H):
        acc += row[base + j] * h1[j]
    return math.tanh(acc)


def _unit_back(row, g2, h1k, k, N, H):
    """(1 − h1[k]²) Σ_j W2[j, k] g2[j]: ∂Q/∂a1[k] when g2 = ∂Q/∂a2 (times δ when g2 carries δ)."""
    base = H * (N + 2) + k
    acc = row[base] * g2[0]
    for j in range(1, H):
        acc += row[base + j * H] * g2[j]
    return acc - h1k * h1k * acc


_unit1, _unit1_cuda = shared(_unit1)
_unit2, _unit2_cuda = shared(_unit2)
_unit_back, _unit_back_cuda = shared(_unit_back)


# ---------------------------------------------------------------------------------------------
# cuda: numba.cuda.jit; one launch, one block per neuron
# ---------------------------------------------------------------------------------------------
#
# Block n = MAX_HIDDEN × TILE_S threads owns neuron n's critic row, target row, Adam rows, row of
# K and bias: no other block touches them, so __syncthreads() between phases is the only
# synchronisation (no atomics). Thread (k, q) is hidden unit k of transition q of a tile of
# TILE_S transitions; the hidden activations of the tile live in shared memory (TILE_S × 64).
#   A. per tile: layer 1 of critic and target (a thread each: one dot product over N+1),
#      layer 2 and w3·h2 (dot over H), Q and Q̄ by shared-memory tree sums over k, δ, then
#      δ ∂Q/∂a2 and δ ∂Q/∂a1 (a column of W2); then the block's 256 threads stride over the
#      P parameters and add the tile's Σ_q δ ∂Q/∂θ into the neuron's scratch row work[n]
#      (coalesced along W1's rows, the tile's voltages read along m).
#   B. threads over parameters: critic step (SGD/Adam), soft target update, scratch zeroed.
#   C. per tile, the updated critic at α = μ: layers 1, 2, ∂Q/∂a2, ∂Q/∂a1, and the slope
#      Σ_k W1[k, N] ∂Q/∂a1[k] by a tree sum; s = g σ'(y); threads over presynaptic m add
#      Σ_q s V[m] into work[n, m].
#   D. row of K, bias, diagnostics.
# The tree sums run over MAX_HIDDEN (a power of two) with zeros past H. No warp shuffles (the
# simulator has none); a tile costs about 22 barriers.

@_cuda_device
def _tree_sum(red, q, k):
    """red[0, q, 0] = Σ_k red[0, q, k] and red[1, q, 0] likewise (all threads must call)."""
    stride = MAX_HIDDEN // 2
    while stride > 0:
        if k < stride:
            red[0, q, k] += red[0, q, k + stride]
            red[1, q, k] += red[1, q, k + stride]
        cuda.syncthreads()
        stride //= 2


@_cuda_device
def _slope_tile(row, x, mrow, mu, live, k, q, N, H, view, h1s, g2s, red):
    """∂Q/∂α at α = mu for transition q of a tile (every thread of the block must call).

    Thread (k, q) computes unit k; returns the slope of its transition q (0 when not live).
    """
    if live and k < H:
        h1s[q, k] = _unit1_cuda(row, x, mrow, mu, k, N, H, view)
    cuda.syncthreads()
    if live and k < H:
        h2 = _unit2_cuda(row, h1s[q], k, N, H)
        g = row[H * (N + 3) + H * H + k]
        g2s[q, k] = g - h2 * h2 * g
    cuda.syncthreads()
    v = float32(0.0)
    if live and k < H:
        v = row[k * (N + 1) + N] * _unit_back_cuda(row, g2s[q], h1s[q, k], k, N, H)
    red[0, q, k] = v
    red[1, q, k] = float32(0.0)
    cuda.syncthreads()
    _tree_sum(red, q, k)
    return red[0, q, 0]


@_cuda_jit
def _update_kernel(Vs, ys, alphas, Vn, yn, r, cont, tau, mask, col_lo, col_hi, K, bias, theta,
                   theta_bar, adam_m, adam_v, diag, work, n_inputs, activation, H, view,
                   optimizer, actor, lr_critic, lr_actor, tau_soft, beta1, beta2, step_size,
                   eps_hat):
    h1s = cuda.shared.array(HS_SHAPE, float32)
    h2s = cuda.shared.array(HS_SHAPE, float32)
    g1s = cuda.shared.array(HS_SHAPE, float32)
    g2s = cuda.shared.array(HS_SHAPE, float32)
    red = cuda.shared.array(RED_SHAPE, float32)
    sc = cuda.shared.array(SC_SHAPE, float32)
    ix = cuda.shared.array(IX_SHAPE, int32)
    n = cuda.blockIdx.x
    k = cuda.threadIdx.x
    q = cuda.threadIdx.y
    tid = q * MAX_HIDDEN + k
    T = Vs.shape[0]
    B = Vs.shape[1]
    N = Vs.shape[2]
    zero = float32(0.0)
    one = float32(1.0)
    if n < n_inputs:  # sensors are not agents (uniform over the block: no barrier skipped)
        if tid < 3:
            diag[n, tid] = zero
        return
    b1 = H * (N + 1)
    w2 = b1 + H
    b2 = w2 + H * H
    w3 = b2 + H
    b3 = w3 + H
    P = b3 + 1
    t0 = 0
    t1 = T
    if tau[n] >= 0:
        t0 = tau[n]
        t1 = t0 + 1
    count = (t1 - t0) * B
    inv = one / float32(count)
    row = theta[n]
    rowb = theta_bar[n]
    mrow = mask[n]
    wrk = work[n]
    for p in range(tid, P, NTHREADS):  # each thread zeroes the entries it will accumulate
        wrk[p] = zero
    s_e = zero      # diagnostics, summed by thread 0
    s_abs = zero
    s_slope = zero
    s_s = zero

    # -- A. TD errors and Σ δ ∂Q/∂θ, a tile of TILE_S transitions at a time -------------------
    for j0 in range(0, count, TILE_S):
        j = j0 + q
        live = j < count
        tt = t0
        bb = 0
        if live:
            tt = t0 + j // B
            bb = j - (j // B) * B
        if k == 0:
            ix[0, q] = tt
            ix[1, q] = bb
            sc[1, q] = alphas[tt, bb, n] if live else zero
        if live and k < H:
            mu_next = activate_cuda(yn[tt, bb, n], activation)
            h1s[q, k] = _unit1_cuda(row, Vs[tt, bb], mrow, alphas[tt, bb, n], k, N, H, view)
            g1s[q, k] = _unit1_cuda(rowb, Vn[tt, bb], mrow, mu_next, k, N, H, view)  # target h1
        cuda.syncthreads()
        qv = zero
        qb = zero
        if live and k < H:
            h2 = _unit2_cuda(row, h1s[q], k, N, H)
            h2s[q, k] = h2
            qv = row[w3 + k] * h2
            qb = rowb[w3 + k] * _unit2_cuda(rowb, g1s[q], k, N, H)
        red[0, q, k] = qv
        red[1, q, k] = qb
        cuda.syncthreads()
        _tree_sum(red, q, k)
        e = zero
        if live:
            e = r[tt, bb] + cont[tt, bb] * (red[1, q, 0] + rowb[b3]) - (red[0, q, 0] + row[b3])
        if k < H:
            g = e * row[w3 + k]
            h2 = h2s[q, k] if live else zero
            g2s[q, k] = g - h2 * h2 * g                       # δ ∂Q/∂a2
        if k == 0:
            sc[0, q] = e
        cuda.syncthreads()
        if k < H:
            g1s[q, k] = _unit_back_cuda(row, g2s[q], h1s[q, k], k, N, H) if live else zero
        cuda.syncthreads()
        n_live = min(TILE_S, count - j0)
        for p in range(tid, P, NTHREADS):
            acc = zero
            if p < b1:                                        # W1[kk, i]
                kk = p // (N + 1)
                i = p - kk * (N + 1)
                if i == N:
                    for qq in range(n_live):
                        acc += g1s[qq, kk] * sc[1, qq]
                elif view == 0 or mrow[i] != 0:
                    for qq in range(n_live):
                        acc += g1s[qq, kk] * Vs[ix[0, qq], ix[1, qq], i]
            elif p < w2:                                      # b1
                for qq in range(n_live):
                    acc += g1s[qq, p - b1]
            elif p < b2:                                      # W2[kk, jj]
                kk = (p - w2) // H
                jj = p - w2 - kk * H
                for qq in range(n_live):
                    acc += g2s[qq, kk] * h1s[qq, jj]
            elif p < w3:                                      # b2
                for qq in range(n_live):
                    acc += g2s[qq, p - b2]
            elif p < b3:                                      # w3
                for qq in range(n_live):
                    acc += sc[0, qq] * h2s[qq, p - w3]
            else:                                             # b3
                for qq in range(n_live):
                    acc += sc[0, qq]
            wrk[p] += acc
        if tid == 0:
            for qq in range(n_live):
                s_e += sc[0, qq]
                s_abs += abs(sc[0, qq])
        cuda.syncthreads()

    # -- B. critic step and soft target update, threads over parameters --------------------
    omb1 = one - beta1
    omb2 = one - beta2
    keep = one - tau_soft
    for p in range(tid, P, NTHREADS):
        _step_param_cuda(theta, adam_m, adam_v, n, p, wrk[p] * inv, optimizer, lr_critic, beta1,
                         omb1, beta2, omb2, step_size, eps_hat)
        rowb[p] = keep * rowb[p] + tau_soft * row[p]
        wrk[p] = zero
    cuda.syncthreads()

    # -- C. slopes of the updated critic, Σ s V[m] for the row of K ------------------------
    klo = col_lo[n]
    khi = col_hi[n]
    for j0 in range(0, count, TILE_S):
        j = j0 + q
        live = j < count
        tt = t0
        bb = 0
        if live:
            tt = t0 + j // B
            bb = j - (j // B) * B
        y = ys[tt, bb, n]
        slope = _slope_tile(row, Vs[tt, bb], mrow, activate_cuda(y, activation), live, k, q, N,
                            H, view, h1s, g2s, red)
        if k == 0:
            ix[0, q] = tt
            ix[1, q] = bb
            sc[0, q] = slope * activate_grad_cuda(y, activation) if live else zero
            sc[2, q] = slope if live else zero
        cuda.syncthreads()
        n_live = min(TILE_S, count - j0)
        if tid == 0:
            for qq in range(n_live):
                s_s += sc[0, qq]
                s_slope += sc[2, qq]
        if actor:
            for m in range(klo + tid, khi, NTHREADS):
                if mrow[m] != 0:
                    acc = zero
                    for qq in range(n_live):
                        acc += sc[0, qq] * Vs[ix[0, qq], ix[1, qq], m]
                    wrk[m] += acc
        cuda.syncthreads()

    # -- D. row of K, bias, diagnostics ----------------------------------------------------
    if actor:
        for m in range(klo + tid, khi, NTHREADS):
            if mrow[m] != 0:
                K[n, m] += lr_actor * (wrk[m] * inv)
    if tid == 0:
        if actor:
            bias[n] += lr_actor * (s_s * inv)
        diag[n, 0] = s_e * inv
        diag[n, 1] = s_abs * inv
        diag[n, 2] = s_slope * inv


def _check_hidden_cuda(H):
    if H > MAX_HIDDEN:
        raise ValueError(f"update_mlp cuda face: hidden size H = {H} exceeds MAX_HIDDEN = "
                          f"{MAX_HIDDEN} (one thread and one shared-memory slot per hidden unit); "
                          "use H <= MAX_HIDDEN or the cpu face")


MLP_SPEC = KernelSpec.typed(_update_kernel, (
    F3, F3, F3, F3, F3, F2, F2, I1, F2, I1, I1, F2, F1, F2, F2, F2, F2, F2, F2, "int32", "int32",
    "int32", "int32", "int32", "boolean", "float32", "float32", "float32", "float32", "float32",
    "float32", "float32"))


def update_mlp_launch(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                      sc: MLPScalars, out: UpdateOut) -> Launch:
    """The launch of the MLP-critic update (N blocks × (MAX_HIDDEN, TILE_S) threads): what
    :func:`update_mlp_cuda` runs at once and a captured program would keep. ``out.work`` (an
    ``(N, P)`` float32 scratch) is required here, and the Adam moments may not be None."""
    N = tr.V.shape[2]
    H = mlp_hidden(N, critic.theta.shape[1])
    _check_hidden_cuda(H)
    if tuple(out.work.shape) != tuple(critic.theta.shape):
        raise ValueError(f"update_mlp_cuda: work has shape {tuple(out.work.shape)}, expected "
                         f"{tuple(critic.theta.shape)} (the shape of theta)")
    values = dict(Vs=tr.V, ys=tr.y, alphas=tr.alpha, Vn=tr.V_next, yn=tr.y_next, r=tr.reward,
                  cont=tr.cont, **top._asdict(), **actor._asdict(), **critic._asdict(), diag=out.diag,
                  work=out.work, H=H, **sc._asdict())
    return MLP_SPEC.launch((max(1, N),), (MAX_HIDDEN, TILE_S), values)


def update_mlp_cuda(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                    sc: MLPScalars, out: UpdateOut, *, stream=0):
    """Fused MLP-critic update on the GPU (CuPy arrays; NumPy arrays in the simulator), float32.

    Same arguments as :func:`update_mlp_reference`, all on the device (``top``'s index arrays
    too). One launch of N blocks × (MAX_HIDDEN × TILE_S) threads; needs H ≤ MAX_HIDDEN.
    ``out.work``: an optional float32 scratch ``(N, P)`` (allocated here when None; pass one to
    keep the call free of allocations, e.g. under CUDA-graph capture). Its content on entry does
    not matter.
    """
    H = mlp_hidden(tr.V.shape[2], critic.theta.shape[1])
    _check_hidden_cuda(H)
    if critic.adam_m is None or critic.adam_v is None:
        critic = critic._replace(adam_m=critic.theta, adam_v=critic.theta)
    if out.work is None:
        out = out._replace(work=array_module(critic.theta).empty(critic.theta.shape, dtype=np.float32))
    run(update_mlp_launch(tr, top, actor, critic, sc, out), stream)
    return out.diag


# Signatures the PTX test compiles for sm_80 and sm_90 (tests/kernels/test_ptx.py).
CUDA_KERNELS = cuda_kernels(MLP_SPEC)
