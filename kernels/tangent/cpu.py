"""The tangent step's cpu face: ``numba.njit``, the primal and the k tangents as sources of one
tiled product per internal step (kernels/tangent/__init__.py has the math)."""

from __future__ import annotations

import numpy as np
from numba import get_num_threads, prange

from leaky.kernels.jit import compiled, cpu_jit
from leaky.kernels.scalar import activate_call, activate_grad_call
from leaky.kernels.scalar import tanh32 as _tanh
from leaky.kernels.step.cpu import PARALLEL_MIN_WORK, SCHEDULES
from leaky.kernels.tangent.boundary import TangentFlags, TangentNet, TangentOut, check_inputs, check_last
from leaky.kernels.tiles import (OUTER, OUTER_COLS, OUTER_ROWS, TILE, dot_rows, group_range,
                                 outer8x32, outer_min_rows_steps, pack_k_panels)

#
# Per internal step τ the products z = V Kᵀ (primal, rows of Vc[τ]) and ż_j = V̇_j Kᵀ (tangent j,
# rows of Vdot[j]) are register tiles of kernels/tiles.py (8 rows × 32 neurons outer-product tiles
# over packed panels of Kᵀ, 4 × 4 or 2 × 4 dot tiles for the rest) with a zero bias: the bias is
# added in the row pass, to the primal only. Neuron groups are the outer loop and the 1 + k
# sources the inner one, so a group's panel of K stays in L1/L2 while every source's rows stream
# by. Pruning, all exact:
#   * a 32-neuron group is skipped when none of its neurons is live at τ (τ > last[n]); a group
#     only partly live runs dot tiles over its 4-neuron groups holding a live neuron;
#   * the tangents are exactly 0 until the first injection step τ₀ = min_{n∉I} tau[n], so their
#     products are skipped at every τ ≤ τ₀ (a dense ℓ = 2 network: the tangent products run only
#     for the outputs at τ = 1);
#   * every tile runs over the union of its neurons' col_lo…col_hi only.
# The row pass (one batch row: bias, inhibition, σ, σ', leak, the tangents' coupling and
# injection, the live selects) is vectorised loops over neurons. The primal product writes raw
# dot products into z[τ], the tangents' into out.work[j]; the row pass overwrites z[τ] with the
# definition's values (0 where not live) and updates Vdot in place: the products of the step
# are all done by then.
#
# Schedules as in kernels/step/cpu.py: "rows" (a task owns a block of batch rows for all ℓ steps, one
# parallel region), "neurons" (each step splits its 32-neuron groups over tasks; for batches too
# small to split) or serial below PARALLEL_MIN_WORK. Row blocks are multiples of 8, so every
# 8-row tile sits at the same rows under every schedule and thread count: the result is the same
# bit for bit.

_GROUP = OUTER_COLS          # 32 neurons: a panel of Kᵀ and an outer-product tile
_ROWS = OUTER_ROWS           # 8 rows of an outer-product tile
_TILE4 = TILE                # 4 neurons of a dot tile
_STACK_ROWS = 128                   # (1 + k)·row block at most: the block's rows stay in L2


@cpu_jit(inline="always")
def _any_live(last, t, n0, n1):
    for n in range(n0, n1):
        if last[n] >= t:
            return True
    return False


@cpu_jit()
def _products(Vt, Vdot, K, Kp, zero, col_lo, col_hi, last, t, n_src, r0, r1, n0, n1, zt, work):
    """Raw products of rows r0…r1 for the neuron groups of n0…n1 live at step ``t``: source 0 is
    the primal (``Vt`` → ``zt``), source 1 + j tangent j (``Vdot[j]`` → ``work[j]``)."""
    for g in range(n0, n1, _GROUP):
        g1 = min(g + _GROUP, n1)
        n_live = 0
        for n in range(g, g1):
            if last[n] >= t:
                n_live += 1
        if n_live == 0:
            continue
        outer = n_live == _GROUP and Kp.shape[0] > 0
        b_rest = r0 + (r1 - r0) // _ROWS * _ROWS if outer else r0
        if outer:
            lo, hi = group_range(col_lo, col_hi, g, g + _GROUP)
            panel = Kp[g // _GROUP]
            for src in range(n_src):
                V = Vt if src == 0 else Vdot[src - 1]
                out = zt if src == 0 else work[src - 1]
                for b in range(r0, b_rest, _ROWS):
                    outer8x32(V, panel, zero, b, g, lo, hi, out)
        if b_rest < r1:
            for g4 in range(g, g1, _TILE4):
                e4 = min(g4 + _TILE4, g1)
                if not _any_live(last, t, g4, e4):
                    continue
                lo4, hi4 = group_range(col_lo, col_hi, g4, e4)
                for src in range(n_src):
                    V = Vt if src == 0 else Vdot[src - 1]
                    out = zt if src == 0 else work[src - 1]
                    dot_rows(V, K, zero, b_rest, r1, g4, e4, lo4, hi4, out)


@cpu_jit(inline="always")
def _primal_agents(zr, yr, vo, vn, gs, bias, leak, last, t, s, act):
    """Bias, σ, σ', leak and the live selects over the agent neurons of one row (``act`` a
    constant: one vectorised loop per activation)."""
    one = zr.dtype.type(1)
    zero = zr.dtype.type(0)
    for i in range(zr.shape[0]):
        live = last[i] >= t
        zz = zr[i] + bias[i]
        yy = zz * s
        if act == 0:
            a = _tanh(yy)
            d = one - a * a
        elif act == 1:
            a = yy if yy > zero else yy * zero   # NaN stays NaN
            d = one if yy > zero else zero
        else:
            a = yy
            d = one
        v = (one - leak[i]) * vo[i] + leak[i] * a
        vn[i] = v if live else vo[i]
        zr[i] = zz if live else zero
        yr[i] = yy if live else zero
        gs[i] = d


@cpu_jit(inline="always")
def _tangent_agents(vd, zd, zr, gs, Tr, leak, tau, last, t, s, c):
    """One tangent's row over the agent neurons: ẏ = s·ż − c·z, α̇ = σ'·ẏ (+ T at tau), leak."""
    one = vd.dtype.type(1)
    for i in range(vd.shape[0]):
        ad = gs[i] * (s * zd[i] - c * zr[i])
        ad = ad + Tr[i] if tau[i] == t else ad
        v = (one - leak[i]) * vd[i] + leak[i] * ad
        vd[i] = v if last[i] >= t else vd[i]


@cpu_jit()
def _row_step(t, b, u, T, bias, leak, tau, last, n_inputs, activation, inhibition, kappa, pulse,
              tangents, zeros, Vc, z, y, scale, Vdot, work, gs):
    """Everything of batch row ``b`` at step ``t`` after the products: the primal, then each
    tangent (its products are read only if ``tangents``: before that they are exactly 0)."""
    N = z.shape[2]
    n_in = n_inputs
    one = z.dtype.type(1)
    zero = z.dtype.type(0)
    zr, yr, vo, vn = z[t, b], y[t, b], Vc[t, b], Vc[t + 1, b]
    s = one
    if inhibition == 1:
        acc = zero
        for n in range(n_in, N):
            acc += abs(zr[n] + bias[n])
        s = z.dtype.type(1.0 / (1.0 + kappa * acc / (N - n_in)))
    scale[t, b] = s
    for n in range(n_in):          # sensors: σ as any neuron, then clamped (or leaky: pulse)
        live = last[n] >= t
        zz = zr[n] + bias[n]
        yy = zz * s
        a = activate_call(yy, activation)
        gs[n] = activate_grad_call(yy, activation)
        v = (one - leak[n]) * vo[n] + leak[n] * a if pulse else u[b, n]
        vn[n] = v if live else vo[n]
        zr[n] = zz if live else zero
        yr[n] = yy if live else zero
    zra, yra, voa, vna, gsa = zr[n_in:], yr[n_in:], vo[n_in:], vn[n_in:], gs[n_in:]
    ba, la, lasta, taua = bias[n_in:], leak[n_in:], last[n_in:], tau[n_in:]
    if activation == 0:
        _primal_agents(zra, yra, voa, vna, gsa, ba, la, lasta, t, s, 0)
    elif activation == 1:
        _primal_agents(zra, yra, voa, vna, gsa, ba, la, lasta, t, s, 1)
    else:
        _primal_agents(zra, yra, voa, vna, gsa, ba, la, lasta, t, s, 2)
    for j in range(T.shape[0]):
        vd = Vdot[j, b]
        zd = work[j, b] if tangents else zeros
        c = zero
        if inhibition == 1:            # every neuron is live here (check_last)
            acc = zero
            for n in range(n_in, N):
                zz = zr[n]
                sg = one if zz > zero else (-one if zz < zero else zero)
                acc += sg * zd[n]
            c = z.dtype.type(kappa * s * s * acc / (N - n_in))
        for n in range(n_in):          # sensors: no injection; clamped ones have no tangent
            if last[n] >= t:
                if pulse:
                    ad = gs[n] * (s * zd[n] - c * zr[n])
                    vd[n] = (one - leak[n]) * vd[n] + leak[n] * ad
                else:
                    vd[n] = zero
        _tangent_agents(vd[n_in:], zd[n_in:], zra, gsa, T[j, b, n_in:], la, taua, lasta, t, s, c)


@cpu_jit(inline="always")
def _load_row(V0, u, n_inputs, pulse, b, Vc, Vdot):
    """Vc[0, b] = V0[b] with the sensor input applied; the tangents start at 0."""
    for n in range(V0.shape[1]):
        Vc[0, b, n] = V0[b, n]
    for i in range(n_inputs):
        Vc[0, b, i] = Vc[0, b, i] + u[b, i] if pulse else u[b, i]
    for j in range(Vdot.shape[0]):
        for n in range(V0.shape[1]):
            Vdot[j, b, n] = 0


@cpu_jit()
def first_injection(tau, n_inputs, ell):
    """τ₀ = min over agents of tau (ℓ without agents): the tangents are 0 through step τ₀."""
    t0 = ell
    for n in range(n_inputs, tau.shape[0]):
        t0 = min(t0, tau[n])
    return t0


@cpu_jit()
def last_is_valid(tau, last, ell, inhibition):
    """Whether ``tau ≤ last ≤ ℓ−1`` (``last = ℓ−1`` under divisive inhibition): check_last's
    condition without its NumPy calls (a few µs on every call)."""
    for n in range(tau.shape[0]):
        if tau[n] < 0 or tau[n] > last[n] or last[n] > ell - 1:
            return False
        if inhibition == 1 and last[n] != ell - 1:
            return False
    return True


def _tangent_cpu_body(V0, u, T, K, bias, leak, tau, last, col_lo, col_hi, n_inputs, activation,
                      inhibition, kappa, pulse, ell, Vc, z, y, scale, Vdot, work, row_block,
                      neuron_tasks, outer):
    k, B, N = T.shape
    Kp = np.empty((N // _GROUP if outer else 0, N, _GROUP), dtype=K.dtype)
    pack_k_panels(K, col_lo, col_hi, Kp)
    zeros = np.zeros(N, dtype=K.dtype)
    t0 = first_injection(tau, n_inputs, ell)
    if neuron_tasks == 0:   # schedule "rows" (and serial): a task owns rows for all ℓ steps
        for blk in prange((B + row_block - 1) // row_block):
            r0 = blk * row_block
            r1 = min(B, r0 + row_block)
            gs = np.empty(N, dtype=K.dtype)
            for b in range(r0, r1):
                _load_row(V0, u, n_inputs, pulse, b, Vc, Vdot)
            for t in range(ell):
                tangents = t > t0
                _products(Vc[t], Vdot, K, Kp, zeros, col_lo, col_hi, last, t,
                          1 + (k if tangents else 0), r0, r1, 0, N, z[t], work)
                for b in range(r0, r1):
                    _row_step(t, b, u, T, bias, leak, tau, last, n_inputs, activation, inhibition,
                              kappa, pulse, tangents, zeros, Vc, z, y, scale, Vdot, work, gs)
    else:                   # schedule "neurons": every step splits its neuron groups
        gs = np.empty(N, dtype=K.dtype)
        for b in range(B):
            _load_row(V0, u, n_inputs, pulse, b, Vc, Vdot)
        per_task = -(-N // neuron_tasks)
        per_task = -(-per_task // _GROUP) * _GROUP
        for t in range(ell):
            tangents = t > t0
            for task in prange(neuron_tasks):
                n0 = min(N, task * per_task)
                _products(Vc[t], Vdot, K, Kp, zeros, col_lo, col_hi, last, t,
                          1 + (k if tangents else 0), 0, B, n0, min(N, n0 + per_task), z[t], work)
            for b in range(B):
                _row_step(t, b, u, T, bias, leak, tau, last, n_inputs, activation, inhibition,
                          kappa, pulse, tangents, zeros, Vc, z, y, scale, Vdot, work, gs)


_tangent_cpu_serial = compiled(_tangent_cpu_body, "_tangent_cpu_serial", error_model="numpy")
_tangent_cpu_parallel = compiled(_tangent_cpu_body, "_tangent_cpu_parallel", error_model="numpy",
                                 parallel=True)


@cpu_jit()
def tangent_work(B, k, ell, t0, col_lo, col_hi, last):
    """Multiply-adds of one call: ``B·Σ_τ (1 + k·[τ > τ₀])·Σ_{n: τ ≤ last_n} (col_hi_n − col_lo_n)``
    (what the faces compute; the tiles may widen ranges a little)."""
    total = 0
    for t in range(ell):
        nnz = 0
        for n in range(col_lo.shape[0]):
            if last[n] >= t:
                nnz += max(0, col_hi[n] - col_lo[n])
        total += (1 + (k if t > t0 else 0)) * nnz
    return B * total


def tangent_schedule(B, k, work, schedule=None):
    """``(name, row_block, neuron_tasks)``: serial below ``PARALLEL_MIN_WORK`` multiply-adds or
    with one thread; else "rows" when every thread gets a block of rows, else "neurons".
    Row blocks are multiples of 8 holding at most ``_STACK_ROWS`` rows over the 1 + k sources."""
    cap = max(_ROWS, _STACK_ROWS // (1 + k) // _ROWS * _ROWS)
    if schedule is None:
        if work < PARALLEL_MIN_WORK:
            return "serial", cap, 0
        threads = get_num_threads()
        if threads < 2:
            return "serial", cap, 0
        schedule = "rows" if -(-B // cap) >= threads else "neurons"
    elif schedule not in SCHEDULES:
        raise ValueError(f"schedule: got {schedule!r}, expected one of {SCHEDULES}")
    if schedule == "serial":
        return "serial", cap, 0
    threads = get_num_threads()
    if schedule == "rows":
        return "rows", min(cap, -(-B // (threads * _ROWS)) * _ROWS), 0
    return "neurons", cap, threads


def tangent_step_cpu(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut, *,
                     schedule=None) -> TangentOut:
    """The tangent step on the CPU: float32 NumPy arrays, ``out`` written in place (``out.work``
    the tangents' scratch). ``schedule`` (optional) forces one of ``kernels.step.SCHEDULES``."""
    check_inputs(V0, u, T, net, flags, out)
    n_in, act, inhibition, kappa, pulse, ell = flags
    if not last_is_valid(net.tau, net.last, ell, inhibition):
        check_last(net.tau, net.last, ell, inhibition)     # raises with the message
    k, B, N = T.shape
    t0 = first_injection(net.tau, n_in, ell)
    work = tangent_work(B, k, ell, t0, net.col_lo, net.col_hi, net.last)
    name, row_block, neuron_tasks = tangent_schedule(B, k, work, schedule)
    rows_steps = B * (ell + k * max(0, ell - 1 - t0))
    outer = (OUTER and B >= _ROWS and N >= _GROUP
             and rows_steps >= outer_min_rows_steps(N))
    kernel = _tangent_cpu_serial if name == "serial" else _tangent_cpu_parallel
    kernel(V0, u, T, net.K, net.bias, net.leak, net.tau, net.last, net.col_lo, net.col_hi, int(n_in),
           int(act), int(inhibition), float(kappa), bool(pulse), int(ell), out.Vc, out.z, out.y,
           out.scale, out.Vdot, out.work, row_block, neuron_tasks, outer)
    return out
