"""The credit update's cpu face: ``numba.njit``, tiles of ≤ 32 neurons sharing a decision step, one
task each (kernels/credit/__init__.py has the math)."""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, prange

from leaky.kernels.credit.boundary import (CreditBatch, CreditGrads, CreditParams, CreditScalars, check_inputs,
                                           tau_is_valid)
from leaky.kernels.data import Topology
from leaky.kernels.jit import compiled, cpu_jit
from leaky.kernels.scalar import adam_step
from leaky.kernels.scalar import tanh32 as _tanh
from leaky.kernels.step.cpu import PARALLEL_MIN_WORK, presynaptic_count
from leaky.kernels.tiles import outer_tn, slice_tiles

#
# The agents are sorted by decision step (stable) and cut into tiles of at most 32 neurons with
# one t = tau. A tile is one task (prange): it owns its neurons' rows of K, G, F and the moments,
# so tasks never write the same memory and the result does not depend on the thread count.
# Per tile:
#   1. gz[b, i] = e[b, n_i]·σ'(y[t, b, n_i])·s[t, b] into E (B, 32) (columns past the tile zero):
#      e by the neuron's rule (outputs exact; perturb from d = g·ȧ, computed once per call;
#      feedback after the F row's update; dfa), Gb = Σ_b gz / B;
#   2. the row gradients Eᵀ·Vc[t] over the union of the tile's presynaptic ranges, widened to a
#      multiple of 32 columns inside the row: 8-neuron × 32-column outer-product register tiles
#      (kernels/tiles.py's outer_tn: per batch row, eight broadcast gz times two vectors
#      of voltages into 16 vector accumulators), summed over b in order;
#   3. per neuron, G's row written whole (0 off the mask), then Adam over col_lo…col_hi with
#      the mask as a select (vectorised), and the bias.
# Networks narrower than 32 neurons take plain loops for step 2.

_TILE_N = 32


@cpu_jit()
def credit_tiles(tau, n_inputs, N):
    """``(order, starts)`` of :func:`leaky.kernels.tiles.slice_tiles`: at most 32 neurons with one decision step."""
    return slice_tiles(tau, n_inputs, N, _TILE_N)


@cpu_jit(inline="always")
def _gz_row(ev, ys, s, Eb, tot, w, act):
    """gz = e·σ'(y)·s over one batch row of a tile (``act`` a constant: one vectorised loop per
    activation), into the row of E and the running sums of Gb."""
    one = Eb.dtype.type(1)
    zero = Eb.dtype.type(0)
    for i in range(w):
        yy = ys[i]
        if act == 0:
            th = _tanh(yy)
            d = one - th * th
        elif act == 1:
            d = one if yy > zero else zero
        else:
            d = one
        gz = ev[i] * d * s
        Eb[i] = gz
        tot[i] += gz


@cpu_jit()
def _gz_tile(ids, w, t, y, scale, T, adot, g, dadv, F, D, n_out, activation, rule, feedback_rate,
             E, Gb):
    """Step 1 of a tile: E[b, i] = gz of neuron ids[i], Gb, and (feedback) the F rows.

    The tile's values of each batch row are gathered into short contiguous rows first, so the
    rule and σ' run as vector loops over the tile's neurons.
    """
    k, B, N = T.shape
    dt = E.dtype.type
    zero = dt(0)
    inv_b = dt(1.0 / B)
    inv_k = dt(1.0 / k) if k > 0 else zero
    h = 0                            # ids[:h] hidden, ids[h:] outputs (the last n_out indices)
    while h < w and ids[h] < N - n_out:
        h += 1
    FT = np.zeros((n_out, _TILE_N), dtype=E.dtype)    # the hidden neurons' F, transposed
    if rule == 1 and h > 0:          # feedback: the F rows first; e reads the updated rows
        acc = np.zeros((n_out, _TILE_N), dtype=E.dtype)
        for j in range(k):
            for b in range(B):
                Tg = T[j, b]
                for p in range(n_out):
                    a = adot[j, b, p]
                    ap = acc[p]
                    for i in range(h):
                        ap[i] += a * Tg[ids[i]]
        rate = dt(feedback_rate)
        keep = dt(1.0 - feedback_rate)
        inv_kb = dt(1.0 / (k * B))
        for i in range(h):
            n = ids[i]
            for p in range(n_out):
                F[n, p] = keep * F[n, p] + rate * (acc[p, i] * inv_kb)
    if rule != 0:
        for p in range(n_out):
            for i in range(h):
                FT[p, i] = F[ids[i], p]
    ev = np.empty(_TILE_N, dtype=E.dtype)
    ys = np.empty(_TILE_N, dtype=E.dtype)
    ts = np.empty(_TILE_N, dtype=E.dtype)
    tot = np.zeros(_TILE_N, dtype=E.dtype)
    n0 = ids[0]
    contiguous = ids[w - 1] - n0 == w - 1       # the usual case: views instead of gathers
    yt = y[t]
    st = scale[t]
    for b in range(B):
        if contiguous:
            yv = yt[b, n0:n0 + w]
        else:
            yb = yt[b]
            for i in range(w):
                ys[i] = yb[ids[i]]
            yv = ys[:w]
        for i in range(w):
            ev[i] = zero
        if rule == 0:
            for j in range(k):
                d = D[j, b] * inv_k
                if contiguous:
                    tv = T[j, b, n0:n0 + h]
                else:
                    Tg = T[j, b]
                    for i in range(h):
                        ts[i] = Tg[ids[i]]
                    tv = ts[:h]
                for i in range(h):
                    ev[i] += d * tv[i]
        else:
            for p in range(n_out):
                gp = g[b, p]
                fp = FT[p]
                for i in range(h):
                    ev[i] += gp * fp[i]
        for i in range(h, w):         # outputs: their exact ∂a/∂α under every rule
            o = ids[i] - (N - n_out)
            ev[i] = g[b, o] * dadv[b, o]
        if activation == 0:
            _gz_row(ev, yv, st[b], E[b], tot, w, 0)
        elif activation == 1:
            _gz_row(ev, yv, st[b], E[b], tot, w, 1)
        else:
            _gz_row(ev, yv, st[b], E[b], tot, w, 2)
    for i in range(w):
        Gb[ids[i]] = tot[i] * inv_b


@cpu_jit()
def _adam_row(theta, m, v, grad_ascent, mrow, L, beta1, beta2, step_size, eps_hat):
    """Adam descent on −grad over a span of one row, entries where ``mrow`` is 0 kept."""
    dt = theta.dtype.type
    omb1 = dt(1.0 - beta1)
    omb2 = dt(1.0 - beta2)
    b1 = dt(beta1)
    b2 = dt(beta2)
    ss = dt(step_size)
    eh = dt(eps_hat)
    for i in range(L):
        mm, vv, d = adam_step(m[i], v[i], -grad_ascent[i], b1, omb1, b2, omb2, ss, eh)
        keep = mrow[i] == 0
        m[i] = m[i] if keep else mm
        v[i] = v[i] if keep else vv
        theta[i] = theta[i] if keep else theta[i] - d


@cpu_jit()
def _credit_tile(ids, w, Vc, y, scale, T, adot, g, dadv, K, bias, F, mK, vK, mb, vb, tau, mask,
                 col_lo, col_hi, D, n_out, activation, rule, feedback_rate, step_size, eps_hat,
                 beta1, beta2, apply, G, Gb):
    k, B, N = T.shape
    dt = G.dtype.type
    zero = dt(0)
    inv_b = dt(1.0 / B)
    t = tau[ids[0]]
    w8 = (w + 7) // 8 * 8
    one = np.ones(1, dtype=G.dtype)     # the bias's "mask"
    E = np.empty((B, _TILE_N), dtype=G.dtype)
    for b in range(B):
        for i in range(w, w8):
            E[b, i] = zero
    _gz_tile(ids, w, t, y, scale, T, adot, g, dadv, F, D, n_out, activation, rule, feedback_rate,
             E, Gb)
    # the tile's union of presynaptic ranges, in whole 32-column tiles: the last one starts at
    # N − 32 at the latest, overlapping its neighbour (whose columns it recomputes identically)
    lo = N
    hi = 0
    for i in range(w):
        n = ids[i]
        if col_hi[n] > col_lo[n]:
            lo = min(lo, col_lo[n])
            hi = max(hi, col_hi[n])
    if hi <= lo:
        lo = hi = 0
    L = hi - lo
    GT = np.empty((w8, N), dtype=G.dtype)      # absolute columns; lo…hi written
    Vt = Vc[t]
    if N >= _TILE_N:
        for c0 in range(0, w8, 8):
            for m0 in range(lo, hi, _TILE_N):
                m = min(m0, N - _TILE_N)
                outer_tn(E, c0, Vt, 0, m, B, GT, m)
    else:
        for i in range(w):
            gt = GT[i]
            for m in range(lo, hi):
                gt[m] = zero
        for b in range(B):
            vb_ = Vt[b]
            for i in range(w):
                e = E[b, i]
                gt = GT[i]
                for m in range(lo, hi):
                    gt[m] += e * vb_[m]
    for i in range(w):
        n = ids[i]
        Gr = G[n]
        Mr = mask[n]
        for m in range(lo):
            Gr[m] = zero
        gt = GT[i, lo:hi]
        Gs, Ms = Gr[lo:hi], Mr[lo:hi]
        for m in range(L):
            Gs[m] = gt[m] * inv_b if Ms[m] != 0 else zero
        for m in range(hi, N):
            Gr[m] = zero
        if apply:
            a, e = col_lo[n], col_hi[n]
            if e > a:
                _adam_row(K[n, a:e], mK[n, a:e], vK[n, a:e], Gr[a:e], Mr[a:e], e - a, beta1,
                          beta2, step_size, eps_hat)
            _adam_row(bias[n:n + 1], mb[n:n + 1], vb[n:n + 1], Gb[n:n + 1], one, 1, beta1,
                      beta2, step_size, eps_hat)


def _credit_cpu_body(Vc, y, scale, T, adot, g, dadv, K, bias, F, mK, vK, mb, vb, tau, mask,
                     col_lo, col_hi, n_inputs, activation, rule, feedback_rate, step_size, eps_hat,
                     beta1, beta2, apply, G, Gb):
    k, B, N = T.shape
    n_out = g.shape[1]
    for n in range(n_inputs):          # sensors are not agents: their rows are 0, never stepped
        for m in range(N):
            G[n, m] = 0
        Gb[n] = 0
    D = np.zeros((k, B), dtype=G.dtype)
    if rule == 0:                      # d = g·ȧ per tangent and row, shared by every neuron
        for j in range(k):
            for b in range(B):
                acc = G.dtype.type(0)
                for p in range(n_out):
                    acc += g[b, p] * adot[j, b, p]
                D[j, b] = acc
    order, starts = credit_tiles(tau, n_inputs, N)
    for j in prange(starts.shape[0] - 1):
        i0 = starts[j]
        i1 = starts[j + 1]
        _credit_tile(order[i0:i1], i1 - i0, Vc, y, scale, T, adot, g, dadv, K, bias, F, mK, vK,
                     mb, vb, tau, mask, col_lo, col_hi, D, n_out, activation, rule, feedback_rate,
                     step_size, eps_hat, beta1, beta2, apply, G, Gb)


_credit_cpu_serial = compiled(_credit_cpu_body, "_credit_cpu_serial", error_model="numpy")
_credit_cpu_parallel = compiled(_credit_cpu_body, "_credit_cpu_parallel", error_model="numpy",
                                parallel=True)


def credit_work(B, k, N, n_out, nnz):
    """Multiply-adds of one call: ``B·nnz`` for the row gradients, ``k·B·N·n_out`` for the rules."""
    return B * nnz + k * B * N * n_out


def credit_update_cpu(batch: CreditBatch, params: CreditParams, top: Topology,
                      sc: CreditScalars, out: CreditGrads) -> CreditGrads:
    """The credit update on the CPU: float32 NumPy arrays, ``params`` and ``out`` in place."""
    check_inputs(batch, params, top, sc, out)
    ell = batch.Vc.shape[0] - 1
    if not tau_is_valid(top.tau, ell):
        raise ValueError(f"credit update: decision steps tau in [{int(np.min(top.tau))}, "
                         f"{int(np.max(top.tau))}], expected 0 <= tau < ell = {ell}")
    k, B, N = batch.T.shape
    nnz = int(presynaptic_count(top.col_lo, top.col_hi))
    work = credit_work(B, k, N, batch.g.shape[1], nnz)
    kernel = (_credit_cpu_parallel if work >= PARALLEL_MIN_WORK and get_num_threads() > 1
              else _credit_cpu_serial)
    kernel(*batch, *params, top.tau, top.mask, top.col_lo, top.col_hi, int(sc.n_inputs),
           int(sc.activation), int(sc.rule), float(sc.feedback_rate), float(sc.step_size),
           float(sc.eps_hat), float(sc.beta1), float(sc.beta2), bool(sc.apply), out.G, out.Gb)
    return out
