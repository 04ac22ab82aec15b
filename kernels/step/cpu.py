"""The fused step's cpu face: ``numba.njit``, register-tiled, at most one parallel region per call.

The math is in the package docstring (kernels/step/__init__.py).
"""

import numpy as np
from numba import carray, get_num_threads, prange

from leaky.kernels.jit import compiled, cpu_jit, lane_sum, stack_empty
from leaky.kernels.scalar import activate
from leaky.kernels.scalar import tanh32 as _tanh
from leaky.kernels.step.boundary import StepFlags, StepNet, StepOut
from leaky.kernels.tiles import (DOT_LANES, OUTER, OUTER_COLS, OUTER_ROWS, TILE, dot_rows,
                                 group_range, outer8x32, outer_min_rows_steps, pack_k_panels)

# z = V Kᵀ + b, one internal step at a time, in the register tiles of kernels/tiles.py: outer-
# product tiles (8 rows × 32 neurons over packed panels of Kᵀ; AVX-512, B ≥ 8, B·ℓ large enough
# for the packing to pay) and dot tiles (4 × 4, or 2 × 4 on AVX2) for the rest. The activation
# pass runs per row right after its pre-activations, with a vectorisable tanh.
#
# Every batch row evolves independently through all ℓ internal steps (inhibition is per row),
# so the parallel schedule "rows" gives each task a block of rows and all ℓ steps: one parallel
# region per call, no barrier between internal steps. A batch too small to split (fewer than
# 4 rows per thread) uses "neurons" instead: each internal step splits its neurons, one region
# per step. All schedules run the same tiles over the same 8-aligned row blocks and 32-aligned
# neuron groups, so a result does not depend on the schedule or the thread count.

_ROW_BLOCK = 64   # rows per task: their V and z (64·N floats each) stay in L2 while K streams by


@cpu_jit()
def _preactivate(V, K, Kp, bias, col_lo, col_hi, r0, r1, n0, n1, z):
    """z[r0:r1, n0:n1] = V[r0:r1] Kᵀ[:, n0:n1] + bias[n0:n1], with n0 a multiple of 32.

    With panels ``Kp`` (``outer``): groups of 32 neurons, 8-row outer-product tiles, the rows
    left over by dot tiles. Then (or without panels) groups of 4 neurons with dot tiles.
    Neuron groups outside, row tiles inside: a group's weights stay in L1 (dot) or L2 (outer)
    while the rows' voltages stream from L2.
    """
    g = n0
    if Kp.shape[0] > 0:
        while g + OUTER_COLS <= n1:
            lo, hi = group_range(col_lo, col_hi, g, g + OUTER_COLS)
            b = r0
            while b + OUTER_ROWS <= r1:
                outer8x32(V, Kp[g // OUTER_COLS], bias, b, g, lo, hi, z)
                b += OUTER_ROWS
            if b < r1:
                for g4 in range(g, g + OUTER_COLS, TILE):
                    lo4, hi4 = group_range(col_lo, col_hi, g4, g4 + TILE)
                    dot_rows(V, K, bias, b, r1, g4, g4 + TILE, lo4, hi4, z)
            g += OUTER_COLS
    for g4 in range(g, n1, TILE):
        g1 = min(g4 + TILE, n1)
        lo, hi = group_range(col_lo, col_hi, g4, g1)
        dot_rows(V, K, bias, r0, r1, g4, g1, lo, hi, z)


@cpu_jit(inline="always")
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


@cpu_jit(inline="always")
def _abs_sum(x):
    """Σ|x| in DOT_LANES partial sums, then pairwise (``lane_sum``) plus the remainder."""
    zero = x.dtype.type(0)
    acc = carray(stack_empty(DOT_LANES, x), (1, DOT_LANES))
    for l in range(DOT_LANES):
        acc[0, l] = zero
    n = x.shape[0]
    whole = n - n % DOT_LANES
    for i0 in range(0, whole, DOT_LANES):
        for l in range(DOT_LANES):
            acc[0, l] += abs(x[i0 + l])
    rest = zero
    for i in range(whole, n):
        rest += abs(x[i])
    return lane_sum(acc, 0, DOT_LANES) + rest


@cpu_jit()
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


@cpu_jit(inline="always")
def _load_row(V0, u, n_inputs, pulse, b, Vc):
    """Vc[0, b] = V0[b] with the sensor input applied."""
    for n in range(V0.shape[1]):
        Vc[0, b, n] = V0[b, n]
    for i in range(n_inputs):
        Vc[0, b, i] = Vc[0, b, i] + u[b, i] if pulse else u[b, i]


def _step_cpu_body(V0, u, K, bias, leak, xi, col_lo, col_hi, n_inputs, activation, inhibition,
                   kappa, pulse, Vc, z, y, alpha, row_block, neuron_tasks, outer):
    ell, B, N = xi.shape
    Kp = np.empty((N // OUTER_COLS if outer else 0, N, OUTER_COLS), dtype=K.dtype)
    pack_k_panels(K, col_lo, col_hi, Kp)
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
        per_task = -(-per_task // OUTER_COLS) * OUTER_COLS   # whole 32-neuron groups
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


@cpu_jit()
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
        schedule = "serial" if threads < 2 else "rows" if B >= TILE * threads else "neurons"
    elif schedule not in SCHEDULES:
        raise ValueError(f"schedule: got {schedule!r}, expected one of {SCHEDULES}")
    if schedule == "serial":
        return "serial", _ROW_BLOCK, 0
    threads = get_num_threads()
    if schedule == "rows":  # blocks of whole 8-row tiles, at most _ROW_BLOCK rows, ≥ 1 per thread
        return "rows", min(_ROW_BLOCK, -(-B // (threads * OUTER_ROWS)) * OUTER_ROWS), 0
    return "neurons", _ROW_BLOCK, threads


def step_cpu(V0, u, xi, net: StepNet, flags: StepFlags, out: StepOut, *, schedule=None) -> StepOut:
    """Fused step on the CPU (float32 NumPy arrays), writing ``out``; returns ``out``.

    ``net.nnz`` (optional) is :func:`presynaptic_count` of the mask, computed once per network
    so the call does not recount it; ``schedule`` (optional) forces one of :data:`SCHEDULES`
    instead of the choice :func:`cpu_schedule` makes from the work (benchmarks, tests).
    """
    Vc, z, y, alpha = out
    n_inputs, activation, inhibition, kappa, pulse = flags
    col_lo, col_hi = net.col_lo, net.col_hi
    ell, B, N = xi.shape
    nnz = net.nnz
    if nnz is None:
        nnz = presynaptic_count(col_lo, col_hi)
    # The small calls this library makes per env step cost a few µs in all: the common case
    # (serial) skips cpu_schedule.
    if schedule is None and ell * B * nnz < PARALLEL_MIN_WORK:
        kernel, row_block, neuron_tasks = _step_cpu_serial, _ROW_BLOCK, 0
    else:
        name, row_block, neuron_tasks = cpu_schedule(B, ell, nnz, schedule)
        kernel = _step_cpu_serial if name == "serial" else _step_cpu_parallel
    outer = (OUTER and B >= OUTER_ROWS and N >= OUTER_COLS
             and B * ell >= outer_min_rows_steps(N))
    kernel(V0, u, net.K, net.bias, net.leak, xi, col_lo, col_hi, int(n_inputs), int(activation),
           int(inhibition), float(kappa), bool(pulse), Vc, z, y, alpha, row_block, neuron_tasks,
           outer)
    return out
