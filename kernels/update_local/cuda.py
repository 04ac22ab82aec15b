"""The cuda face: numba.cuda.jit, one launch, one block per neuron."""

from __future__ import annotations

import numpy as np
from numba import float32

try:  # the cuda face needs numba-cuda; the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.data import array_module
from leaky.kernels.spec import F1, F2, F3, I1, KernelSpec, Launch, run, cuda_kernels
from leaky.kernels.jit import cuda_jit as _cuda_jit
from leaky.kernels.scalar import activate_cuda, activate_grad_cuda
from leaky.kernels.scalar import step_param_cuda as _step_param_cuda
from leaky.kernels.update_local.boundary import (ActorRows, CriticState, LocalScalars, Topology, Transitions,
                                                 UpdateOut)
from leaky.kernels.update_local.cpu import _scalars
from leaky.kernels.update_local.residual import _residual_cuda

# ---------------------------------------------------------------------------------------------
# cuda: numba.cuda.jit; one launch, one block per neuron
# ---------------------------------------------------------------------------------------------
#
# Block n owns neuron n's critic row, Adam rows, target row, row of K and bias: no other block
# touches them, so __syncthreads() between the phases is the only synchronisation (no atomics).
#   1. TD errors: transitions in tiles of BLOCK (one per thread); the features stream through
#      shared memory in BLOCK × TILE_M tiles (coalesced loads along m, rows padded to TILE_M + 1
#      floats: no bank conflicts), each thread accumulates its transition's w·x, p·x, w̄·x'.
#      e and d go to the scratch row work[n]; Σe, Σ|e|, Σe·∂Q/∂u, Σe·½d² by a shared-memory tree.
#   2. Critic gradient rows: threads over features m (coalesced along m), each loops over the
#      transitions reading e, d from the scratch (a broadcast), and steps its own w[m], p[m].
#      Thread 0 steps c, u, h.
#   3. Slopes with the updated p (tiles again), s = slope·σ'(y) into the scratch; tree sums.
#   4. Row of K: threads over presynaptic m, Σ s·V[m]; soft target update; bias and diag.

BLOCK = 128                      # threads per block; also transitions per tile (power of two)
TILE_M = 32                      # features per shared-memory tile
XS_SHAPE = (BLOCK, TILE_M + 1)   # +1: thread i reads row i, column k -> 33i + k, distinct banks
PS_SHAPE = (3, TILE_M)           # w, p, w̄ slices of the tile
RED_SHAPE = (4, BLOCK)


@_cuda_jit
def _update_kernel(Vs, ys, alphas, Vn, yn, r, cont, delta, tau, mask, col_lo, col_hi, K, bias,
                   theta, theta_bar, adam_m, adam_v, diag, work, n_inputs, activation, family,
                   view, baseline, optimizer, lr_critic, lr_actor, tau_soft, beta1, beta2, sched):
    Xs = cuda.shared.array(XS_SHAPE, float32)
    Xn = cuda.shared.array(XS_SHAPE, float32)
    Ps = cuda.shared.array(PS_SHAPE, float32)
    red = cuda.shared.array(RED_SHAPE, float32)
    n = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    T = Vs.shape[0]
    B = Vs.shape[1]
    N = Vs.shape[2]
    zero = float32(0.0)
    one = float32(1.0)
    half = float32(0.5)
    step_size = sched[0]   # Adam's bias-corrected scalars, from device memory (a captured
    eps_hat = sched[1]     # graph replays its arguments; kernels/loop.py advances these)
    if n < n_inputs:  # sensors are not agents (uniform over the block: no barrier skipped)
        if tid < 3:
            diag[n, tid] = zero
        return
    ic = 2 * N
    iu = ic + 1
    ih = ic + 2
    t0 = 0
    t1 = T
    if tau[n] >= 0:
        t0 = tau[n]
        t1 = t0 + 1
    count = (t1 - t0) * B
    inv = one / float32(count)
    lo = 0
    hi = N
    if view == 1:
        lo = col_lo[n]
        hi = col_hi[n]
    own_linear = family == 0 and baseline == 0

    # -- 1. residuals ---------------------------------------------------------------------------
    c = theta[n, ic]
    u = theta[n, iu]
    h = theta[n, ih]
    cb = theta_bar[n, ic]
    ub = theta_bar[n, iu]
    s_e = zero
    s_abs = zero
    s_u = zero
    s_h = zero
    for j0 in range(0, count, BLOCK):
        j = j0 + tid
        wx = zero
        px = zero
        wbx = zero
        for m0 in range(lo, hi, TILE_M):
            for q in range(tid, BLOCK * TILE_M, BLOCK):
                i = q // TILE_M
                k = q - i * TILE_M
                jj = j0 + i
                m = m0 + k
                xv = zero
                xn = zero
                if jj < count and m < hi:
                    if view == 0 or mask[n, m] != 0:
                        tt = t0 + jj // B
                        bb = jj - (jj // B) * B
                        xv = Vs[tt, bb, m]
                        if baseline == 0:
                            xn = Vn[tt, bb, m]
                Xs[i, k] = xv
                Xn[i, k] = xn
            if tid < TILE_M:
                m = m0 + tid
                live = m < hi
                Ps[0, tid] = theta[n, m] if live else zero
                Ps[1, tid] = theta[n, N + m] if live else zero
                Ps[2, tid] = theta_bar[n, m] if live else zero
            cuda.syncthreads()
            for k in range(TILE_M):
                xv = Xs[tid, k]
                wx += Ps[0, k] * xv
                px += Ps[1, k] * xv
                wbx += Ps[2, k] * Xn[tid, k]
            cuda.syncthreads()
        if j < count:
            tt = t0 + j // B
            bb = j - (j // B) * B
            a = alphas[tt, bb, n]
            d = a - activate_cuda(ys[tt, bb, n], activation)
            mu_next = zero
            if own_linear:
                mu_next = activate_cuda(yn[tt, bb, n], activation)
            e = _residual_cuda(family, baseline, a, d, wx, px, wbx, c, u, h, cb, ub, mu_next,
                               r[tt, bb], cont[tt, bb], delta[tt, bb], half)
            work[n, 0, j] = e
            work[n, 1, j] = d
            s_e += e
            s_abs += abs(e)
            s_u += e * (a if own_linear else d)
            s_h += e * half * d * d
    red[0, tid] = s_e
    red[1, tid] = s_abs
    red[2, tid] = s_u
    red[3, tid] = s_h
    cuda.syncthreads()
    stride = BLOCK // 2
    while stride > 0:
        if tid < stride:
            for q in range(4):
                red[q, tid] += red[q, tid + stride]
        cuda.syncthreads()
        stride //= 2
    mean_e = red[0, 0] * inv
    mean_abs = red[1, 0] * inv

    # -- 2. critic step -------------------------------------------------------------------------
    omb1 = one - beta1
    omb2 = one - beta2
    for m in range(lo + tid, hi, BLOCK):
        if view == 0 or mask[n, m] != 0:
            gw = zero
            gp = zero
            for tt in range(t0, t1):
                base = (tt - t0) * B
                for bb in range(B):
                    x = Vs[tt, bb, m]
                    e = work[n, 0, base + bb]
                    gw += e * x
                    gp += e * work[n, 1, base + bb] * x
            if baseline == 0:
                _step_param_cuda(theta, adam_m, adam_v, n, m, gw * inv, optimizer, lr_critic,
                                 beta1, omb1, beta2, omb2, step_size, eps_hat)
            if family == 1:
                jp = N + m
                _step_param_cuda(theta, adam_m, adam_v, n, jp, gp * inv, optimizer, lr_critic,
                                 beta1, omb1, beta2, omb2, step_size, eps_hat)
    if tid == 0:
        if baseline == 0:
            _step_param_cuda(theta, adam_m, adam_v, n, ic, red[0, 0] * inv, optimizer,
                             lr_critic, beta1, omb1, beta2, omb2, step_size, eps_hat)
        _step_param_cuda(theta, adam_m, adam_v, n, iu, red[2, 0] * inv, optimizer, lr_critic,
                         beta1, omb1, beta2, omb2, step_size, eps_hat)
        if family == 1:
            _step_param_cuda(theta, adam_m, adam_v, n, ih, red[3, 0] * inv, optimizer,
                             lr_critic, beta1, omb1, beta2, omb2, step_size, eps_hat)
            theta[n, ih] = min(theta[n, ih], zero)
    cuda.syncthreads()

    # -- 3. slopes with the updated critic ------------------------------------------------------
    u = theta[n, iu]
    s_slope = zero
    s_s = zero
    for j0 in range(0, count, BLOCK):
        j = j0 + tid
        px = zero
        if family == 1:
            for m0 in range(lo, hi, TILE_M):
                for q in range(tid, BLOCK * TILE_M, BLOCK):
                    i = q // TILE_M
                    k = q - i * TILE_M
                    jj = j0 + i
                    m = m0 + k
                    xv = zero
                    if jj < count and m < hi:
                        if view == 0 or mask[n, m] != 0:
                            xv = Vs[t0 + jj // B, jj - (jj // B) * B, m]
                    Xs[i, k] = xv
                if tid < TILE_M:
                    m = m0 + tid
                    Ps[1, tid] = theta[n, N + m] if m < hi else zero
                cuda.syncthreads()
                for k in range(TILE_M):
                    px += Ps[1, k] * Xs[tid, k]
                cuda.syncthreads()
        if j < count:
            tt = t0 + j // B
            bb = j - (j // B) * B
            slope = u + px
            s = slope * activate_grad_cuda(ys[tt, bb, n], activation)
            work[n, 0, j] = s
            s_slope += slope
            s_s += s
    red[0, tid] = s_slope
    red[1, tid] = s_s
    cuda.syncthreads()
    stride = BLOCK // 2
    while stride > 0:
        if tid < stride:
            red[0, tid] += red[0, tid + stride]
            red[1, tid] += red[1, tid + stride]
        cuda.syncthreads()
        stride //= 2

    # -- 4. row of K, targets, bias, diagnostics ------------------------------------------------
    for m in range(col_lo[n] + tid, col_hi[n], BLOCK):
        if mask[n, m] != 0:
            g = zero
            for tt in range(t0, t1):
                base = (tt - t0) * B
                for bb in range(B):
                    g += work[n, 0, base + bb] * Vs[tt, bb, m]
            K[n, m] += lr_actor * (g * inv)
    keep = one - tau_soft
    for m in range(lo + tid, hi, BLOCK):
        if view == 0 or mask[n, m] != 0:
            theta_bar[n, m] = keep * theta_bar[n, m] + tau_soft * theta[n, m]
            if family == 1:
                theta_bar[n, N + m] = keep * theta_bar[n, N + m] + tau_soft * theta[n, N + m]
    if tid == 0:
        bias[n] += lr_actor * (red[1, 0] * inv)
        theta_bar[n, ic] = keep * theta_bar[n, ic] + tau_soft * theta[n, ic]
        theta_bar[n, iu] = keep * theta_bar[n, iu] + tau_soft * theta[n, iu]
        if family == 1:
            theta_bar[n, ih] = keep * theta_bar[n, ih] + tau_soft * theta[n, ih]
        diag[n, 0] = mean_e
        diag[n, 1] = mean_abs
        diag[n, 2] = red[0, 0] * inv


UPDATE_SPEC = KernelSpec.typed(_update_kernel, (
    F3, F3, F3, F3, F3, F2, F2, F2, I1, F2, I1, I1, F2, F1, F2, F2, F2, F2, F2, F3, "int32", "int32",
    "int32", "int32", "int32", "int32", "float32", "float32", "float32", "float32", "float32", F1))


def cuda_workspace(T, B, N, xp):
    """Scratch of :func:`update_local_cuda` for (T, B, N) transitions: float32 ``(N, 2, T·B)``
    of ``xp`` (CuPy; NumPy in the simulator), per neuron its residuals and centred actions."""
    return xp.empty((N, 2, T * B), dtype=np.float32)


def update_local_launch(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                        sc: LocalScalars, out: UpdateOut, sched) -> Launch:
    """The launch of the fused local update (N blocks × ``BLOCK`` threads): what
    :func:`update_local_cuda` runs at once and a captured program keeps. ``out.work`` and
    ``sched`` are required here (see :func:`update_local_cuda`); ``tr.delta`` and the Adam
    moments may not be None."""
    N = tr.V.shape[2]
    return UPDATE_SPEC.launch((max(1, N),), (BLOCK,), dict(
        Vs=tr.V, ys=tr.y, alphas=tr.alpha, Vn=tr.V_next, yn=tr.y_next, r=tr.reward, cont=tr.cont,
        delta=tr.delta, **top._asdict(), **actor._asdict(), **critic._asdict(), diag=out.diag,
        work=out.work, **sc._asdict(), sched=sched))


def update_local_cuda(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                      sc: LocalScalars, out: UpdateOut, *, sched=None, stream=0):
    """Fused local update on the GPU (CuPy arrays; NumPy arrays in the simulator), float32.

    Same arguments as :func:`update_local_reference`, all on the device (``top``'s index arrays
    too). One launch of N blocks × ``BLOCK`` threads. ``out.work``: an optional
    :func:`cuda_workspace`; ``sched``: an optional float32 ``(2,)`` device array holding Adam's
    ``(step_size, eps_hat)`` (both are made here when None; a captured program passes its own,
    advanced on the device, and ``sc.step_size``/``sc.eps_hat`` are then not read).
    """
    T, B, N = tr.V.shape
    if tr.delta is None:
        tr = tr._replace(delta=tr.reward)
    if critic.adam_m is None or critic.adam_v is None:
        critic = critic._replace(adam_m=critic.theta, adam_v=critic.theta)
    xp = array_module(critic.theta)
    if out.work is None:
        out = out._replace(work=cuda_workspace(T, B, N, xp))
    if sched is None:
        step_size, eps_hat = _scalars(critic.theta, sc)[5:]
        sched = xp.asarray(np.array([step_size, eps_hat], dtype=np.float32))
    run(update_local_launch(tr, top, actor, critic, sc, out, sched), stream)
    return out.diag


CUDA_KERNELS = cuda_kernels(UPDATE_SPEC)
