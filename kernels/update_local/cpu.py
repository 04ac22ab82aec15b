"""The cpu face: numba.njit, tiles of up to 32 neurons that learn from the same slices."""

from __future__ import annotations

import numpy as np
from numba import carray, prange

from leaky.kernels.jit import compiled
from leaky.kernels.jit import cpu_jit as _cpu_jit
from leaky.kernels.jit import stack_empty as _stack_empty
from leaky.kernels.scalar import tanh32 as _tanh32
from leaky.kernels.tiles import outer_nn as _outer_nn
from leaky.kernels.tiles import outer_nn8 as _outer_nn8
from leaky.kernels.tiles import outer_tn as _outer_tn
from leaky.kernels.tiles import slice_tiles
from leaky.kernels.scalar import adam_step as _adam_step
from leaky.kernels.scalar import step_param as _step_param
from leaky.kernels.update_local.boundary import (ActorRows, CriticState, LocalScalars, Topology, Transitions,
                                                 UpdateOut)
from leaky.kernels.update_local.residual import _residual


def _compiled(fn, name, **flags):
    """The module's compilations: the shared conventions plus ``error_model=\"numpy\"``."""
    return compiled(fn, name, error_model="numpy", **flags)


# ---------------------------------------------------------------------------------------------
# cpu: numba.njit; tiles of up to 32 neurons that learn from the same slices
# ---------------------------------------------------------------------------------------------
#
# Neurons are sorted by their slice τ and cut into tiles of TILE_CPU that share it, so their
# per-neuron dot products become small matrix products over the same S transitions:
#   0. per call, a vectorised pre-pass: d = α − σ(y), σ'(y), σ(y') for every (t, b, n);
#   1. the tile's transitions copied zero-padded (S to 8, features to 32), its critic rows
#      masked by the view (f ⊙ w) into transposed panels (L, 32);
#   2. X·Pw, X·Pp, X'·Pw̄ as 8-transition × 32-neuron outer-product register tiles;
#   3. residuals; 4. gradient rows Eᵀ·X as 8-row × 32-feature outer-product tiles;
#   5. critic steps over contiguous row spans (vectorised Adam / SGD);
#   6. slopes X·Pp with the updated p; 7. rows of K as Sᵀ·X; soft update, diagnostics.
# Every inner loop indexes slices from 0; the module compiles with error_model="numpy" (no
# zero-division checks, which stop LLVM vectorising). docs/local-update.md has the details.

TILE_CPU = 32


@_cpu_jit()
def _actions_cpu(ys, alphas, yn, activation, own_linear, D, SG, MU):
    """Elementwise pre-pass over every (t, b, n): ``D = α − σ(y)``, ``SG = σ'(y)`` and (own
    linear critic) ``MU = σ(y')``; vectorised loops, the activation chosen outside them."""
    T, B, N = ys.shape
    one = D.dtype.type(1.0)
    zero = D.dtype.type(0.0)
    for t in range(T):
        for b in range(B):
            y = ys[t, b]
            a = alphas[t, b]
            d = D[t, b]
            g = SG[t, b]
            if activation == 0:
                for m in range(N):
                    th = _tanh32(y[m])
                    d[m] = a[m] - th
                    g[m] = one - th * th
            elif activation == 1:
                for m in range(N):
                    d[m] = a[m] - (y[m] if y[m] > zero else zero)
                    g[m] = one if y[m] > zero else zero
            else:
                for m in range(N):
                    d[m] = a[m] - y[m]
                    g[m] = one
            if own_linear:
                yy = yn[t, b]
                mu = MU[t, b]
                if activation == 0:
                    for m in range(N):
                        mu[m] = _tanh32(yy[m])
                elif activation == 1:
                    for m in range(N):
                        mu[m] = yy[m] if yy[m] > zero else zero
                else:
                    for m in range(N):
                        mu[m] = yy[m]


@_cpu_jit()
def _cpu_tiles(tau, n_inputs, N):
    """``(order, starts)`` of :func:`leaky.kernels.tiles.slice_tiles`: at most TILE_CPU neurons of one slice."""
    return slice_tiles(tau, n_inputs, N, TILE_CPU)


@_cpu_jit()
def _union_range(ids, k, col_lo, col_hi):
    """The smallest ``[lo, hi)`` holding every non-empty ``[col_lo[n], col_hi[n])`` of the tile."""
    lo = col_lo.shape[0]
    hi = 0
    for i in range(k):
        n = ids[i]
        if col_hi[n] > col_lo[n]:
            lo = min(lo, col_lo[n])
            hi = max(hi, col_hi[n])
    if hi <= lo:
        return 0, 0
    return lo, hi


@_cpu_jit()
def _dots_cpu(A, P, Spad, L, k, out):
    """``out[:Spad] = A[:Spad, :L] · P[:L]`` for the first ``k`` columns (and maybe more)."""
    if k <= 8:
        for s0 in range(0, Spad, 8):
            _outer_nn8(A, s0, P, L, out)
    else:
        for s0 in range(0, Spad, 8):
            _outer_nn(A, s0, P, L, out)


@_cpu_jit()
def _grads_cpu(E, c0, c1, A, Lpad, S, out):
    for c in range(c0, c1, 8):
        for m0 in range(0, Lpad, 32):
            _outer_tn(E, c, A, 0, m0, S, out, m0)


@_cpu_jit()
def _grads_panel_cpu(E, c0, c1, XP, s0, S, out):
    """:func:`_grads_cpu` reading the voltages as column panels ``XP (N/32, T·B, 32)``."""
    for c in range(c0, c1, 8):
        for p in range(XP.shape[0]):
            _outer_tn(E, c, XP[p], s0, 0, S, out, p * 32)


@_cpu_jit()
def _pack_panels(X2, XP):
    """``XP[p, q, j] = X2[q, 32p + j]`` (zero past N): the voltages as column panels."""
    TB, N = X2.shape
    zero = XP.dtype.type(0)
    for q in range(TB):
        x = X2[q]
        for p in range(XP.shape[0]):
            row = XP[p, q]
            m0 = p * 32
            w = min(32, N - m0)
            for j in range(w):
                row[j] = x[m0 + j]
            for j in range(w, 32):
                row[j] = zero


@_cpu_jit()
def _pack_rows(X, s0, S, lo, L, Xp):
    """Rows ``s0 … s0+S`` of ``X`` (columns lo … lo+L) into ``Xp``, the rest of ``Xp`` zeroed."""
    zero = Xp.dtype.type(0)
    width = Xp.shape[1]
    for s in range(Xp.shape[0]):
        dst = Xp[s]
        if s < S:
            src = X[s0 + s, lo:lo + L]
            for m in range(L):
                dst[m] = src[m]
            for m in range(L, width):
                dst[m] = zero
        else:
            for m in range(width):
                dst[m] = zero


@_cpu_jit()
def _residuals32(family, baseline, own_linear, s0, S, n0, A2, D2, MU2, r2, cont2, delta2, Yw, Yp,
                 Yb, sc, E):
    """The residual loop of a tile of 32 consecutive neurons ``n0 … n0+31``: ``E[s, j] = e``,
    ``E[s, 32 + j] = e·d`` and the sums ``sc[5:9]`` (Σe, Σ|e|, Σe∂Q/∂u, Σe½d²) over the S
    transitions from row ``s0``, with the critic scalars of ``sc[0:5]``.

    Per transition two passes over the 32 lanes: the first reads memory and writes only stack
    arrays (which LLVM keeps in registers), the second stores E. The general loop writes E and
    the sums between its loads, so LLVM cannot prove its dozen pointers apart and leaves it
    scalar (2.4 ns per element, measured); this one is two vector loops (docs/benchmarks.md).
    """
    dt = E.dtype.type
    zero = dt(0.0)
    half = dt(0.5)
    cst = carray(_stack_empty(160, E), (5, 32))
    acc = carray(_stack_empty(128, E), (4, 32))
    ed = carray(_stack_empty(64, E), (2, 32))
    for j in range(32):
        cst[0, j], cst[1, j], cst[2, j] = sc[0, j], sc[1, j], sc[2, j]
        cst[3, j], cst[4, j] = sc[3, j], sc[4, j]
        acc[0, j] = acc[1, j] = acc[2, j] = acc[3, j] = zero
    for s in range(S):
        q = s0 + s
        rq, cq, dq = r2[q], cont2[q], delta2[q]
        Aq, Dq, Mq = A2[q, n0:n0 + 32], D2[q, n0:n0 + 32], MU2[q, n0:n0 + 32]
        yw, yp, yb = Yw[s], Yp[s], Yb[s]
        for j in range(32):
            a = Aq[j]
            d = Dq[j]
            e = _residual(family, baseline, a, d, yw[j], yp[j], yb[j], cst[0, j], cst[1, j],
                          cst[2, j], cst[3, j], cst[4, j], Mq[j], rq, cq, dq, half)
            acc[0, j] += e
            acc[1, j] += abs(e)
            acc[2, j] += e * (a if own_linear else d)
            acc[3, j] += e * half * d * d
            ed[0, j] = e
            ed[1, j] = e * d
        Ew = E[s]
        for j in range(32):
            Ew[j] = ed[0, j]
            Ew[32 + j] = ed[1, j]
    for j in range(32):
        sc[5, j], sc[6, j], sc[7, j], sc[8, j] = acc[0, j], acc[1, j], acc[2, j], acc[3, j]


@_cpu_jit()
def _slopes32(family, s0, S, n0, SG2, Yp, sc, E):
    """The slope loop of a tile of 32 consecutive neurons, two passes per transition like
    :func:`_residuals32`: ``E[s, j] = (u + p·x)·σ'(y)``, ``sc[0] += u + p·x``,
    ``sc[2] += E[s, j]``, with the updated ``u`` in ``sc[1]``."""
    dt = E.dtype.type
    zero = dt(0.0)
    u = carray(_stack_empty(32, E), (32,))
    acc = carray(_stack_empty(64, E), (2, 32))
    gv = carray(_stack_empty(32, E), (32,))
    for j in range(32):
        u[j] = sc[1, j]
        acc[0, j] = acc[1, j] = zero
    for s in range(S):
        ys = Yp[s]
        Gq = SG2[s0 + s, n0:n0 + 32]
        for j in range(32):
            slope = u[j] + (ys[j] if family == 1 else zero)
            g = slope * Gq[j]
            acc[0, j] += slope
            acc[1, j] += g
            gv[j] = g
        Ew = E[s]
        for j in range(32):
            Ew[j] = gv[j]
    for j in range(32):
        sc[0, j], sc[2, j] = acc[0, j], acc[1, j]


@_cpu_jit()
def _step_span(th, am, av, g, fm, L, masked, optimizer, lr, inv, beta1, omb1, beta2, omb2,
               step_size, eps_hat, tb, keep_soft, tau_soft):
    """:func:`_step_param` over a span of one critic row (``th``, ``am``, ``av``: slices of the
    row and its moments; ``g``: the summed ascent, times ``inv`` to a mean), vectorised; with
    ``masked``, entries where ``fm`` is 0 keep their value and moments. Then the soft target
    update of the same span, ``tb ← keep_soft·tb + τ·th`` with the new ``th`` (fused: one pass
    over the row; θ does not change between the critic step and the target update)."""
    one = th.dtype.type(1.0)
    if not masked:                   # the common case, without selects
        if optimizer == 0:
            for m in range(L):
                t = th[m] + lr * (g[m] * inv)
                th[m] = t
                tb[m] = keep_soft * tb[m] + tau_soft * t
        else:
            for m in range(L):
                mm, vv, d = _adam_step(am[m], av[m], -(g[m] * inv), beta1, omb1, beta2, omb2,
                                       step_size, eps_hat)
                am[m] = mm
                av[m] = vv
                t = th[m] - d
                th[m] = t
                tb[m] = keep_soft * tb[m] + tau_soft * t
    elif optimizer == 0:
        for m in range(L):
            keep = masked and fm[m] == 0
            t = th[m] + (th.dtype.type(0.0) if keep else one) * (lr * (g[m] * inv))
            th[m] = t
            new = keep_soft * tb[m] + tau_soft * t
            tb[m] = tb[m] if keep else new
    else:
        for m in range(L):
            keep = masked and fm[m] == 0
            mm, vv, step = _adam_step(am[m], av[m], -(g[m] * inv), beta1, omb1, beta2, omb2,
                                      step_size, eps_hat)
            am[m] = am[m] if keep else mm
            av[m] = av[m] if keep else vv
            t = th[m] if keep else th[m] - step
            th[m] = t
            new = keep_soft * tb[m] + tau_soft * t
            tb[m] = tb[m] if keep else new


@_cpu_jit()
def _soft_span(tb, th, fm, L, masked, keep, tau_soft):
    """``tb ← keep·tb + τ·th`` over a span, entries where ``fm`` is 0 (when ``masked``) left."""
    for m in range(L):
        new = keep * tb[m] + tau_soft * th[m]
        tb[m] = tb[m] if (masked and fm[m] == 0) else new


@_cpu_jit()
def _update_tile_cpu(ids, k, X2, XP, Xn2, D2, SG2, A2, MU2, r2, cont2, delta2, tau, mask, col_lo,
                     col_hi, K, bias, theta, theta_bar, adam_m, adam_v, diag, B, family, view,
                     baseline, optimizer, lr_critic, lr_actor, tau_soft, beta1, beta2,
                     step_size, eps_hat):
    TB, N = X2.shape
    T = TB // B
    dt = theta.dtype.type
    zero = dt(0.0)
    one = dt(1.0)
    half = dt(0.5)
    ic, iu, ih = 2 * N, 2 * N + 1, 2 * N + 2
    t0, t1 = 0, T
    if tau[ids[0]] >= 0:
        t0 = tau[ids[0]]
        t1 = t0 + 1
    s0 = t0 * B
    S = (t1 - t0) * B
    Spad = (S + 7) // 8 * 8
    inv = one / dt(S)
    lo, hi = 0, N
    if view == 1:
        lo, hi = _union_range(ids, k, col_lo, col_hi)
    L = hi - lo
    Lpad = (L + 31) // 32 * 32
    klo, khi = _union_range(ids, k, col_lo, col_hi)
    KL = khi - klo
    KLpad = (KL + 31) // 32 * 32
    own_linear = family == 0 and baseline == 0
    W = TILE_CPU

    # the tile's transitions, zero-padded to whole tiles; critic rows packed as panels (L, 32)
    # (views of the caller's rows where no padding is needed)
    whole = S == Spad and lo == 0 and hi == N
    if whole and Lpad == N:
        X = X2[s0:s0 + S]
    else:
        X = np.empty((Spad, Lpad), dtype=theta.dtype)
        _pack_rows(X2, s0, S, lo, L, X)
    if whole:
        Xn = Xn2[s0:s0 + S]
    else:
        Xn = np.empty((Spad, max(L, 1)), dtype=theta.dtype)
        _pack_rows(Xn2, s0, S, lo, L, Xn)
    if S == Spad and klo == 0 and KLpad == N:
        Xk = X2[s0:s0 + S]
    else:
        Xk = np.empty((Spad, KLpad), dtype=theta.dtype)
        _pack_rows(X2, s0, S, klo, KL, Xk)
    # Scratch is np.empty where every entry read is written first (zeroing ~360 KB per tile of
    # 32 neurons at N = B = 256 cost 1.5% of the call). Panel columns past k are zeroed: the dot
    # tiles read all 32, and zeros keep garbage (and denormals) out of their arithmetic.
    Pw = np.empty((max(L, 1), W), dtype=theta.dtype)
    Pp = np.empty((max(L, 1), W), dtype=theta.dtype)
    Pb = np.empty((max(L, 1), W), dtype=theta.dtype)
    if k < W:
        Pw[:, k:] = zero
        Pp[:, k:] = zero
        Pb[:, k:] = zero
    for m in range(L):          # panel rows written whole; the k critic rows read as streams
        pw, pp, pb = Pw[m], Pp[m], Pb[m]
        for i in range(k):
            n = ids[i]
            f = one
            if view == 1 and mask[n, lo + m] == 0:
                f = zero
            pw[i] = theta[n, lo + m] * f
            pp[i] = theta[n, N + lo + m] * f
            pb[i] = theta_bar[n, lo + m] * f
    Yw = np.empty((Spad, W), dtype=theta.dtype)   # columns < k written by the dots below; the
    Yp = np.empty((Spad, W), dtype=theta.dtype)   # ones a critic family does not compute are
    Yb = np.empty((Spad, W), dtype=theta.dtype)   # never used by its residual
    if baseline == 0:
        _dots_cpu(X, Pw, Spad, L, k, Yw)
        _dots_cpu(Xn, Pb, Spad, L, k, Yb)
    if family == 1:
        _dots_cpu(X, Pp, Spad, L, k, Yp)

    # residuals: E[s, i] = e, E[s, W + i] = e·d
    E = np.empty((Spad, 2 * W), dtype=theta.dtype)
    kr = (k + 7) // 8 * 8                          # the gradient tiles read columns < kr
    if kr > k:
        E[:, k:kr] = zero
        E[:, W + k:W + kr] = zero
    sc = np.zeros((9, W), dtype=theta.dtype)   # c u h c̄ ū Σe Σ|e| Σe∂Q/∂u Σe½d²
    for i in range(k):
        n = ids[i]
        sc[0, i] = theta[n, ic]
        sc[1, i] = theta[n, iu]
        sc[2, i] = theta[n, ih]
        sc[3, i] = theta_bar[n, ic]
        sc[4, i] = theta_bar[n, iu]
    # transitions outer, neurons inner: the tile's columns of a row are close together (and
    # contiguous when the tile's neurons are consecutive, the usual case: vector loads)
    n0 = ids[0]
    contig = ids[k - 1] - n0 == k - 1
    full = contig and k == W
    if full:
        _residuals32(family, baseline, own_linear, s0, S, n0, A2, D2, MU2, r2, cont2, delta2,
                     Yw, Yp, Yb, sc, E)
    for s in range(0 if full else S):
        q = s0 + s
        rq, cq, dq = r2[q], cont2[q], delta2[q]
        Ew = E[s]
        if contig:
            Aq, Dq, Mq = A2[q, n0:n0 + k], D2[q, n0:n0 + k], MU2[q, n0:n0 + k]
            Yws, Yps, Ybs = Yw[s], Yp[s], Yb[s]
            c_, u_, h_, cb_, ub_ = sc[0], sc[1], sc[2], sc[3], sc[4]
            se, sa, su, sh = sc[5], sc[6], sc[7], sc[8]
            for i in range(k):
                a = Aq[i]
                d = Dq[i]
                e = _residual(family, baseline, a, d, Yws[i], Yps[i], Ybs[i], c_[i], u_[i], h_[i],
                              cb_[i], ub_[i], Mq[i], rq, cq, dq, half)
                se[i] += e
                sa[i] += abs(e)
                su[i] += e * (a if own_linear else d)
                sh[i] += e * half * d * d
                Ew[i] = e
                Ew[W + i] = e * d
            continue
        for i in range(k):
            n = ids[i]
            a = A2[q, n]
            d = D2[q, n]
            e = _residual(family, baseline, a, d, Yw[s, i], Yp[s, i], Yb[s, i], sc[0, i],
                          sc[1, i], sc[2, i], sc[3, i], sc[4, i], MU2[q, n], rq, cq, dq, half)
            sc[5, i] += e
            sc[6, i] += abs(e)
            sc[7, i] += e * (a if own_linear else d)
            sc[8, i] += e * half * d * d
            Ew[i] = e
            Ew[W + i] = e * d

    # gradient rows G[i] = Σ e x, G[W + i] = Σ e d x
    G = np.empty((2 * W, Lpad), dtype=theta.dtype)   # rows < kr (and W..W+kr) written
    panels = whole and Lpad == N          # X is the caller's rows: read them as panels
    if baseline == 0:
        if panels:
            _grads_panel_cpu(E, 0, kr, XP, s0, S, G)
        else:
            _grads_cpu(E, 0, kr, X, Lpad, S, G)
    if family == 1:
        if panels:
            _grads_panel_cpu(E, W, W + kr, XP, s0, S, G)
        else:
            _grads_cpu(E, W, W + kr, X, Lpad, S, G)

    # critic steps and their spans' soft target updates; the updated p, masked, into its panel
    omb1 = one - beta1
    omb2 = one - beta2
    keep = one - tau_soft
    fm = np.ones(max(L, 1), dtype=theta.dtype)
    masked = view == 1
    for i in range(k):
        n = ids[i]
        if masked:
            for m in range(L):
                fm[m] = one if mask[n, lo + m] != 0 else zero
        if baseline == 0:
            _step_span(theta[n, lo:hi], adam_m[n, lo:hi], adam_v[n, lo:hi], G[i], fm, L, masked,
                       optimizer, lr_critic, inv, beta1, omb1, beta2, omb2, step_size, eps_hat,
                       theta_bar[n, lo:hi], keep, tau_soft)
        if family == 1:
            j0, j1 = N + lo, N + hi
            _step_span(theta[n, j0:j1], adam_m[n, j0:j1], adam_v[n, j0:j1], G[W + i], fm, L,
                       masked, optimizer, lr_critic, inv, beta1, omb1, beta2, omb2, step_size,
                       eps_hat, theta_bar[n, j0:j1], keep, tau_soft)
            for m in range(L):
                Pp[m, i] = theta[n, j0 + m] * fm[m]
        if baseline == 0:
            _step_param(theta, adam_m, adam_v, n, ic, sc[5, i] * inv, optimizer, lr_critic,
                        beta1, omb1, beta2, omb2, step_size, eps_hat)
        _step_param(theta, adam_m, adam_v, n, iu, sc[7, i] * inv, optimizer, lr_critic, beta1,
                    omb1, beta2, omb2, step_size, eps_hat)
        if family == 1:
            _step_param(theta, adam_m, adam_v, n, ih, sc[8, i] * inv, optimizer, lr_critic,
                        beta1, omb1, beta2, omb2, step_size, eps_hat)
            theta[n, ih] = min(theta[n, ih], zero)

    # actor: slopes with the updated critic, s = slope·σ'(y) into E[:, :W], rows of K
    if family == 1:
        _dots_cpu(X, Pp, Spad, L, k, Yp)
    for i in range(k):
        sc[1, i] = theta[ids[i], iu]
        sc[0, i] = zero
        sc[2, i] = zero
    if full:
        _slopes32(family, s0, S, n0, SG2, Yp, sc, E)
    for s in range(0 if full else S):
        q = s0 + s
        Ew = E[s]
        Ys = Yp[s]
        if contig:
            Gq = SG2[q, n0:n0 + k]
            u_, ss, sg = sc[1], sc[0], sc[2]
            for i in range(k):
                slope = u_[i] + (Ys[i] if family == 1 else zero)
                g = slope * Gq[i]
                ss[i] += slope
                sg[i] += g
                Ew[i] = g
            continue
        for i in range(k):
            slope = sc[1, i] + (Ys[i] if family == 1 else zero)
            g = slope * SG2[q, ids[i]]
            sc[0, i] += slope
            sc[2, i] += g
            Ew[i] = g
    GK = np.empty((W, KLpad), dtype=theta.dtype)
    if S == Spad and klo == 0 and KLpad == N:
        _grads_panel_cpu(E, 0, kr, XP, s0, S, GK)
    else:
        _grads_cpu(E, 0, kr, Xk, KLpad, S, GK)

    for i in range(k):
        n = ids[i]
        Kr, Mr, gk = K[n, klo:khi], mask[n, klo:khi], GK[i]
        for m in range(KL):          # times the 0/1 mask, not branched on it: vectorised
            Kr[m] += lr_actor * (gk[m] * inv) * Mr[m]
        bias[n] += lr_actor * (sc[2, i] * inv)
        if baseline != 0:            # w is not stepped (dopamine): its target still follows it
            if masked:
                for m in range(L):
                    fm[m] = one if mask[n, lo + m] != 0 else zero
            _soft_span(theta_bar[n, lo:hi], theta[n, lo:hi], fm, L, masked, keep, tau_soft)
        theta_bar[n, ic] = keep * theta_bar[n, ic] + tau_soft * theta[n, ic]
        theta_bar[n, iu] = keep * theta_bar[n, iu] + tau_soft * theta[n, iu]
        if family == 1:
            theta_bar[n, ih] = keep * theta_bar[n, ih] + tau_soft * theta[n, ih]
        diag[n, 0] = sc[5, i] * inv
        diag[n, 1] = sc[6, i] * inv
        diag[n, 2] = sc[0, i] * inv


def _update_cpu_body(Vs, ys, alphas, Vn, yn, r, cont, delta, tau, mask, col_lo, col_hi, K, bias,
                     theta, theta_bar, adam_m, adam_v, diag, n_inputs, activation, family, view,
                     baseline, optimizer, lr_critic, lr_actor, tau_soft, beta1, beta2, step_size,
                     eps_hat, D, SG, MU, XP):
    T, B, N = Vs.shape
    for n in range(n_inputs):
        diag[n, 0] = 0.0
        diag[n, 1] = 0.0
        diag[n, 2] = 0.0
    order, starts = _cpu_tiles(tau, n_inputs, N)
    own_linear = family == 0 and baseline == 0
    _actions_cpu(ys, alphas, yn, activation, own_linear, D, SG, MU)
    TB = T * B
    X2 = Vs.reshape((TB, N))
    Xn2 = Vn.reshape((TB, N))
    A2 = alphas.reshape((TB, N))
    D2 = D.reshape((TB, N))
    SG2 = SG.reshape((TB, N))
    MU2 = MU.reshape((TB, N))
    r2 = r.reshape(TB)
    cont2 = cont.reshape(TB)
    delta2 = delta.reshape(TB)
    if N % 32 == 0:            # the tiles read panels only where no feature padding is needed
        _pack_panels(X2, XP)
    for j in prange(starts.shape[0] - 1):
        i0 = starts[j]
        i1 = starts[j + 1]
        _update_tile_cpu(order[i0:i1], i1 - i0, X2, XP, Xn2, D2, SG2, A2, MU2, r2, cont2, delta2, tau,
                         mask, col_lo, col_hi, K, bias, theta, theta_bar, adam_m, adam_v, diag,
                         B, family, view, baseline, optimizer, lr_critic, lr_actor, tau_soft,
                         beta1, beta2, step_size, eps_hat)


_update_cpu_serial = _compiled(_update_cpu_body, "_update_cpu_serial")
_update_cpu_parallel = _compiled(_update_cpu_body, "_update_cpu_parallel", parallel=True)

# Below this many multiply-adds per call a parallel region costs more than it saves.
PARALLEL_MIN_WORK = 1 << 16


def _scalars(theta, sc):
    """The float scalars every compiled face takes, in the parameters' float type."""
    ft = np.float32 if theta.dtype == np.float32 else np.float64
    return tuple(ft(v) for v in (sc.lr_critic, sc.lr_actor, sc.tau_soft, sc.beta1, sc.beta2,
                                 sc.step_size, sc.eps_hat))


def cpu_workspace(T, B, N, dtype=np.float32) -> tuple:
    """Scratch of :func:`update_local_cpu` for (T, B, N) transitions: ``d = α − σ(y)``, σ'(y),
    σ(y') as (T, B, N) and the voltages as column panels (⌈N/32⌉, T·B, 32).

    Pass it as ``UpdateOut.work`` to keep the call free of large allocations: allocated at
    every call, 2 MB at N = B = 256, ℓ = 2, glibc's malloc maps and unmaps it from the kernel
    each time and the page faults cost up to 40% of the update (measured: 1.87 against 1.34 ms).
    """
    shape = (T, B, N)
    return (np.empty(shape, dtype), np.empty(shape, dtype), np.empty(shape, dtype),
            np.empty(((N + 31) // 32, T * B, 32), dtype))


def update_local_cpu(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                     sc: LocalScalars, out: UpdateOut):
    """Fused local update on the CPU (float32 arrays, stepped in place); returns ``out.diag``.

    Same arguments as :func:`update_local_reference`; ``tr.delta`` None and Adam moments None
    are allowed where unused (a placeholder array is passed, never read or written).
    ``out.work``: a :func:`cpu_workspace` of the call's shape and dtype, reused across calls
    (made here when None).
    """
    T, B, N = tr.V.shape
    theta, theta_bar, adam_m, adam_v = critic
    work = out.work
    if work is None or work[0].shape != (T, B, N) or work[0].dtype != theta.dtype:
        work = cpu_workspace(T, B, N, theta.dtype)
    delta = tr.reward if tr.delta is None else tr.delta
    if adam_m is None or adam_v is None:
        adam_m = adam_v = theta
    Vs, ys, alphas, Vn, yn, r, cont, delta = (np.ascontiguousarray(a) for a in (
        tr.V, tr.y, tr.alpha, tr.V_next, tr.y_next, tr.reward, tr.cont, delta))   # read only
    args = (Vs, ys, alphas, Vn, yn, r, cont, delta, top.tau, top.mask, top.col_lo, top.col_hi,
            actor.K, actor.bias, theta, theta_bar, adam_m, adam_v, out.diag, int(sc.n_inputs),
            int(sc.activation), sc.family, sc.view, sc.baseline, sc.optimizer,
            *_scalars(theta, sc), *work)
    per_neuron = (T if int(np.min(top.tau, initial=0)) < 0 else 1) * B
    mads = 7 * per_neuron * N * N
    (_update_cpu_parallel if mads >= PARALLEL_MIN_WORK else _update_cpu_serial)(*args)
    return out.diag
