"""Tangent step: one greedy environment step of the network carrying k activity tangents per row.

A forward-mode derivative (a JVP) of the action with respect to every neuron's activity at its
decision step, computed with the same weights as the step itself: no backward pass. For every
batch row b, from the carried voltages ``V0[b]`` and the encoded sensor input ``u[b]`` (clamp:
``V[I] = u``; pulse: ``V[I] += u``, once), τ = 0 … ℓ-1, for every neuron n with τ ≤ last[n]::

    z = V Kᵀ + bias,  y = Θ(z) = s·z,  α = σ(y),  V ← (1-λ)⊙V + λ⊙α        the primal (ξ = 0)
    ż = V̇ Kᵀ,  ẏ = s·ż − κ s² z · mean_{j∉I}(sign(z_j) ż_j)  (divisive; ẏ = ż without)
    α̇ = σ'(y)·ẏ + T[j, b, n]·1[τ = tau[n], n ∉ I],   V̇ ← (1-λ)⊙V̇ + λ⊙α̇         each tangent j

with ``V̇ = 0`` at τ = 0 and the sensors re-clamped (clamp: ``V[I] = u``, ``V̇[I] = 0``). A
neuron past its last step holds its voltage and tangents, and its ``z``, ``y`` are 0 there.

Why ``last``: what learning reads of one step is the action ``V_ℓ[O]`` and, for every neuron n,
``y_{tau[n]}[n]`` and the voltages ``V_{tau[n]}`` of its presynaptic neurons. With the decision
steps ``tau[n] = max(0, ℓ-1-d_n)`` (``d_n`` hops to the outputs) a presynaptic neuron m of n has
``d_m ≤ d_n + 1``, so ``tau[m] ≥ tau[n] − 1``: computing each neuron only up to its own decision
step (``last = tau``) leaves everything learning reads exact and skips the rest. A layered
network then costs one pass of its MLP instead of ℓ passes of the whole mask. Divisive inhibition
couples every neuron of a row through the mean, so there the caller passes ``last = ℓ-1``
(every neuron at every step; the tests hold that this equals ``kernels/step.py`` exactly).

The tangents are standard normal inputs (the caller draws them), so ``E[(g·ȧ) T_n]`` is the
sensitivity ``g·∂a/∂α_n`` of a scalar of the action to neuron n's activity at its decision step:
the activity-perturbation (forward-gradient) estimate of ``kernels/credit.py``.

Shapes: V0 (B, N), u (B, n_in), T (k, B, N); K (N, N) masked, bias, leak (N,); tau, last,
col_lo, col_hi (N,) int32. Outputs: Vc (ℓ+1, B, N) voltages before every internal step and
after the last, z, y (ℓ, B, N), scale (ℓ, B) the divisive factor s (1 without inhibition),
Vdot (k, B, N) the tangents of the voltages after the last step.

Cost per call: ``(1 + k)·B·Σ_τ Σ_{n: τ ≤ last_n} (col_hi_n − col_lo_n)`` multiply-adds (dense,
``last = ℓ−1``: ``(1+k)·ℓ·B·N²``). Bytes: K once from DRAM, then from cache; Vc, z, y written once;
T read once and Vdot written once.

Faces: ``tangent_step_reference`` (NumPy float64, the definition), ``tangent_step_cpu``
(numba.njit, kernels/step.py's register tiles over the primal and the tangents) and
``tangent_step_cuda`` (one launch for all ℓ steps); docs/kernels.md describes them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import float32, get_num_threads, int32, njit, prange

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels import step as _step
from leaky.kernels.scalar import FASTMATH, activate_cuda, activate_grad_cuda, compiled, cuda_jit
from leaky.kernels.scalar import sigma as _sigma
from leaky.kernels.scalar import sigma_grad as _sigma_grad
from leaky.kernels.scalar import tanh32 as _tanh
from leaky.kernels.step import PARALLEL_MIN_WORK


class TangentNet(NamedTuple):
    """What the tangent step reads of the network (arrays of the face's module).

    K : (N, N) weights, stored masked;  bias, leak : (N,)
    tau : (N,) int32 decision steps (tangents are injected there; sensors never)
    last : (N,) int32 the last internal step each neuron is computed at (``tau``, or ℓ−1)
    col_lo, col_hi : (N,) int32 half-open presynaptic column range of each row of K
    tile_lo, tile_hi : (⌈N/32⌉,) int32 the union of those ranges per 32-neuron tile
        (``kernels/step.py``'s ``tile_ranges``); read by the cuda face only
    """

    K: Any
    bias: Any
    leak: Any
    tau: Any
    last: Any
    col_lo: Any
    col_hi: Any
    tile_lo: Any = None
    tile_hi: Any = None


class TangentFlags(NamedTuple):
    """Scalars of the step: ``n_inputs``, the activation and inhibition codes of
    kernels/scalar.py, ``kappa``, ``pulse`` (input mode) and ``ell`` (internal steps ℓ)."""

    n_inputs: int
    activation: int
    inhibition: int
    kappa: float
    pulse: bool
    ell: int


class TangentOut(NamedTuple):
    """Vc (ℓ+1, B, N), z, y (ℓ, B, N), scale (ℓ, B), Vdot (k, B, N); ``work`` (k, B, N) the
    compiled faces' scratch for the tangents' pre-activations (contents undefined after a call;
    the reference does not need it)."""

    Vc: Any
    z: Any
    y: Any
    scale: Any
    Vdot: Any
    work: Any = None


def decision_last(tau, ell: int, inhibition: int) -> np.ndarray:
    """``last (N,) int32``: the decision steps ``tau``, or ℓ−1 everywhere under divisive inhibition."""
    tau = np.asarray(tau, dtype=np.int32)
    return np.full_like(tau, ell - 1) if inhibition == 1 else tau.copy()


def check_last(tau, last, ell: int, inhibition: int) -> None:
    """ValueError unless ``tau ≤ last ≤ ℓ−1`` (and ``last = ℓ−1`` under divisive inhibition)."""
    tau, last = np.asarray(tau), np.asarray(last)
    if tau.shape != last.shape:
        raise ValueError(f"tangent step: tau has shape {tau.shape} and last {last.shape}, expected equal")
    if ((tau < 0) | (tau > last) | (last > ell - 1)).any():
        raise ValueError(f"tangent step: expected 0 <= tau <= last <= ell - 1 = {ell - 1}, got tau in "
                         f"[{tau.min()}, {tau.max()}] and last in [{last.min()}, {last.max()}]")
    if inhibition == 1 and (last != ell - 1).any():
        raise ValueError("tangent step: divisive inhibition couples a row's neurons through its mean; "
                         "expected last = ell - 1 for every neuron")


# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------

_ACT_NP = {0: np.tanh, 1: lambda y: np.maximum(y, 0.0), 2: lambda y: y}
_DACT_NP = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0).astype(np.float64),
            2: lambda y: np.ones_like(y)}


def tangent_step_reference(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut | None = None
                           ) -> TangentOut:
    """Definition of the tangent step, in float64 (``col_lo``/``col_hi`` are not read: the masked
    K alone defines the products, so the faces that skip outside the ranges must agree)."""
    n_in, act_code, inhibition, kappa, pulse, ell = flags
    check_last(net.tau, net.last, ell, inhibition)
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    V, u, T = f64(V0), f64(u), f64(T)
    K, bias, leak = f64(net.K), f64(net.bias), f64(net.leak)
    tau, last = np.asarray(net.tau), np.asarray(net.last)
    k, B, N = T.shape
    T[:, :, :n_in] = 0.0                          # sensors are not agents
    act, dact = _ACT_NP[act_code], _DACT_NP[act_code]
    if pulse:
        V[:, :n_in] += u
    else:
        V[:, :n_in] = u
    Vd = np.zeros((k, B, N))
    Vc = np.empty((ell + 1, B, N))
    z = np.zeros((ell, B, N))
    y = np.zeros((ell, B, N))
    scale = np.ones((ell, B))
    Vc[0] = V
    for t in range(ell):
        live = t <= last                                          # (N,)
        zt = V @ K.T + bias
        zd = Vd @ K.T
        if inhibition == 1:
            n_agents = N - n_in
            s = 1.0 / (1.0 + kappa * np.abs(zt[:, n_in:]).mean(axis=1, keepdims=True))   # (B, 1)
            yt = zt * s
            coupling = (np.sign(zt[:, n_in:]) * zd[:, :, n_in:]).sum(axis=-1, keepdims=True) / n_agents
            yd = s * zd - kappa * s * s * zt * coupling
            scale[t] = s[:, 0]
        else:
            yt, yd = zt, zd
        inject = (tau == t) & (np.arange(N) >= n_in)
        V_new = (1.0 - leak) * V + leak * act(yt)
        Vd_new = (1.0 - leak) * Vd + leak * (dact(yt) * yd + T * inject)
        if not pulse:
            V_new[:, :n_in] = u
            Vd_new[:, :, :n_in] = 0.0
        V = np.where(live, V_new, V)
        Vd = np.where(live, Vd_new, Vd)
        z[t] = np.where(live, zt, 0.0)
        y[t] = np.where(live, yt, 0.0)
        Vc[t + 1] = V
    result = TangentOut(Vc, z, y, scale, Vd)
    if out is None:
        return result
    for dst, src in zip(out, result):
        dst[...] = src
    return out



# ---------------------------------------------------------------------------------------------
# input checks shared by the compiled faces
# ---------------------------------------------------------------------------------------------

def _shape_error(what, got, want):
    raise ValueError(f"tangent step: {what} has shape {tuple(got)}, expected {tuple(want)}")


def check_inputs(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut) -> None:
    """ValueError unless every array has the shape, dtype and layout the compiled faces take
    (float32, C-contiguous; int32 index arrays) and the flags are in range. Reads no values."""
    n_in, act, inhibition, kappa, pulse, ell = flags
    if not (isinstance(ell, (int, np.integer)) and ell >= 1):
        raise ValueError(f"tangent step: ell = {ell!r}, expected an int >= 1")
    if act not in (0, 1, 2) or inhibition not in (0, 1):
        raise ValueError(f"tangent step: activation {act!r} / inhibition {inhibition!r}, expected "
                         "0, 1, 2 / 0, 1 (kernels/scalar.py's codes)")
    if T.ndim != 3:
        raise ValueError(f"tangent step: T has {T.ndim} dimensions, expected 3 (k, B, N)")
    k, B, N = T.shape
    if not 0 <= n_in < N:
        raise ValueError(f"tangent step: n_inputs = {n_in}, expected 0 <= n_inputs < N = {N}")
    want = {"V0": (V0, (B, N)), "u": (u, (B, n_in)), "K": (net.K, (N, N)), "bias": (net.bias, (N,)),
            "leak": (net.leak, (N,)), "Vc": (out.Vc, (ell + 1, B, N)), "z": (out.z, (ell, B, N)),
            "y": (out.y, (ell, B, N)), "scale": (out.scale, (ell, B)), "Vdot": (out.Vdot, (k, B, N)),
            "work": (out.work, (k, B, N))}
    for name, (a, shape) in want.items():
        if a is None:
            raise ValueError(f"tangent step: {name} is None, expected a float32 array of shape {shape}"
                             + (" (TangentOut.work: the compiled faces' scratch)" if name == "work" else ""))
        if tuple(a.shape) != shape:
            _shape_error(name, a.shape, shape)
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"tangent step: {name} is {a.dtype}"
                             f"{'' if a.flags.c_contiguous else ', not C-contiguous'}; expected a "
                             "C-contiguous float32 array")
    if T.dtype != np.float32 or not T.flags.c_contiguous:
        raise ValueError(f"tangent step: T is {T.dtype}, expected a C-contiguous float32 array")
    for name in ("tau", "last", "col_lo", "col_hi"):
        a = getattr(net, name)
        if tuple(a.shape) != (N,) or a.dtype != np.int32:
            raise ValueError(f"tangent step: {name} is {a.dtype} of shape {tuple(a.shape)}, "
                             f"expected int32 of shape ({N},)")


# ---------------------------------------------------------------------------------------------
# cpu: numba.njit; the primal and the k tangents as sources of one tiled product per step
# ---------------------------------------------------------------------------------------------
#
# Per internal step τ the products z = V Kᵀ (primal, rows of Vc[τ]) and ż_j = V̇_j Kᵀ (tangent j,
# rows of Vdot[j]) are register tiles of kernels/step.py (8 rows × 32 neurons outer-product tiles
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
# Schedules as in kernels/step.py: "rows" (a task owns a block of batch rows for all ℓ steps, one
# parallel region), "neurons" (each step splits its 32-neuron groups over tasks; for batches too
# small to split) or serial below PARALLEL_MIN_WORK. Row blocks are multiples of 8, so every
# 8-row tile sits at the same rows under every schedule and thread count: the result is the same
# bit for bit.

_GROUP = _step._OUTER_COLS          # 32 neurons: a panel of Kᵀ and an outer-product tile
_ROWS = _step._OUTER_ROWS           # 8 rows of an outer-product tile
_TILE4 = _step._TILE                # 4 neurons of a dot tile
_STACK_ROWS = 128                   # (1 + k)·row block at most: the block's rows stay in L2


def _cpu_jit(**flags):
    return njit(cache=True, fastmath=FASTMATH, error_model="numpy", **flags)


@_cpu_jit(inline="always")
def _any_live(last, t, n0, n1):
    for n in range(n0, n1):
        if last[n] >= t:
            return True
    return False


@_cpu_jit()
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
            lo, hi = _step._group_range(col_lo, col_hi, g, g + _GROUP)
            panel = Kp[g // _GROUP]
            for src in range(n_src):
                V = Vt if src == 0 else Vdot[src - 1]
                out = zt if src == 0 else work[src - 1]
                for b in range(r0, b_rest, _ROWS):
                    _step._outer8x32(V, panel, zero, b, g, lo, hi, out)
        if b_rest < r1:
            for g4 in range(g, g1, _TILE4):
                e4 = min(g4 + _TILE4, g1)
                if not _any_live(last, t, g4, e4):
                    continue
                lo4, hi4 = _step._group_range(col_lo, col_hi, g4, e4)
                for src in range(n_src):
                    V = Vt if src == 0 else Vdot[src - 1]
                    out = zt if src == 0 else work[src - 1]
                    _step._dot_rows(V, K, zero, b_rest, r1, g4, e4, lo4, hi4, out)


@_cpu_jit(inline="always")
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


@_cpu_jit(inline="always")
def _tangent_agents(vd, zd, zr, gs, Tr, leak, tau, last, t, s, c):
    """One tangent's row over the agent neurons: ẏ = s·ż − c·z, α̇ = σ'·ẏ (+ T at tau), leak."""
    one = vd.dtype.type(1)
    for i in range(vd.shape[0]):
        ad = gs[i] * (s * zd[i] - c * zr[i])
        ad = ad + Tr[i] if tau[i] == t else ad
        v = (one - leak[i]) * vd[i] + leak[i] * ad
        vd[i] = v if last[i] >= t else vd[i]


@_cpu_jit()
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
        a = _sigma(yy, activation)
        gs[n] = _sigma_grad(yy, activation)
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


@_cpu_jit(inline="always")
def _load_row(V0, u, n_inputs, pulse, b, Vc, Vdot):
    """Vc[0, b] = V0[b] with the sensor input applied; the tangents start at 0."""
    for n in range(V0.shape[1]):
        Vc[0, b, n] = V0[b, n]
    for i in range(n_inputs):
        Vc[0, b, i] = Vc[0, b, i] + u[b, i] if pulse else u[b, i]
    for j in range(Vdot.shape[0]):
        for n in range(V0.shape[1]):
            Vdot[j, b, n] = 0


@_cpu_jit()
def first_injection(tau, n_inputs, ell):
    """τ₀ = min over agents of tau (ℓ without agents): the tangents are 0 through step τ₀."""
    t0 = ell
    for n in range(n_inputs, tau.shape[0]):
        t0 = min(t0, tau[n])
    return t0


@_cpu_jit()
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
    _step._pack_panels(K, col_lo, col_hi, Kp)
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


@_cpu_jit()
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
    elif schedule not in _step.SCHEDULES:
        raise ValueError(f"schedule: got {schedule!r}, expected one of {_step.SCHEDULES}")
    if schedule == "serial":
        return "serial", cap, 0
    threads = get_num_threads()
    if schedule == "rows":
        return "rows", min(cap, -(-B // (threads * _ROWS)) * _ROWS), 0
    return "neurons", cap, threads


def tangent_step_cpu(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut,
                     schedule=None) -> TangentOut:
    """The tangent step on the CPU: float32 NumPy arrays, ``out`` written in place (``out.work``
    the tangents' scratch). ``schedule`` (optional) forces one of kernels/step.py's SCHEDULES."""
    check_inputs(V0, u, T, net, flags, out)
    n_in, act, inhibition, kappa, pulse, ell = flags
    if not last_is_valid(net.tau, net.last, ell, inhibition):
        check_last(net.tau, net.last, ell, inhibition)     # raises with the message
    k, B, N = T.shape
    t0 = first_injection(net.tau, n_in, ell)
    work = tangent_work(B, k, ell, t0, net.col_lo, net.col_hi, net.last)
    name, row_block, neuron_tasks = tangent_schedule(B, k, work, schedule)
    rows_steps = B * (ell + k * max(0, ell - 1 - t0))
    outer = (_step._OUTER and B >= _ROWS and N >= _GROUP
             and rows_steps >= _step.outer_min_rows_steps(N))
    kernel = _tangent_cpu_serial if name == "serial" else _tangent_cpu_parallel
    kernel(V0, u, T, net.K, net.bias, net.leak, net.tau, net.last, net.col_lo, net.col_hi, int(n_in),
           int(act), int(inhibition), float(kappa), bool(pulse), int(ell), out.Vc, out.z, out.y,
           out.scale, out.Vdot, out.work, row_block, neuron_tasks, outer)
    return out


# ---------------------------------------------------------------------------------------------
# cuda: numba.cuda.jit; one launch runs all ℓ internal steps, primal and tangents, for a few rows
# ---------------------------------------------------------------------------------------------
#
# Block = 32 neurons (tx) × 8 stacked rows (ty), 256 threads; it owns ``rb`` batch rows for the
# whole call, so __syncthreads() is the only synchronisation (no grid sync, no atomics). Its
# stacked rows are the rb primal rows followed by the rb rows of each tangent, s = src·rb + i
# (src 0 the primal, 1 + j tangent j); rb = max(1, 8 // (1 + k)) fills a chunk of 8 stacked
# rows where k is small, and k ≥ 7 walks ⌈(1 + k)/8⌉ chunks of one batch row. Per step:
#   1. products: per 32-neuron tile with a live neuron (syncthreads_or), per chunk, the tile's
#      presynaptic range (tile_lo/tile_hi) in 32 × 32 tiles of K (padded to 33 columns: no bank
#      conflicts) and 8 × 32 tiles of the chunk's voltages in shared memory; raw sums to z[τ]
#      (primal) and out.work (tangents). Tangent chunks only after the first injection step;
#   2. the primal rows: Σ|z| by a shared-memory reduction (divisive), then bias, σ, leak and the
#      live selects, each thread its neurons;
#   3. each tangent chunk: Σ sign(z)·ż (divisive), then ẏ, α̇ (σ' recomputed from z), injection
#      at tau, leak, in place in Vdot (every product of the step is done by then).
# ceil(B / rb) blocks: B = 256, k = 1 gives 64 blocks (about half an H100 or H200).

TILE_N = 32          # neurons per tile (tx)
TILE_ROWS = 8        # stacked rows per chunk (ty)
KS_SHAPE = (TILE_N, TILE_N + 1)


@cuda_jit
def _tangent_kernel(V0, u, T, K, bias, leak, tau, last, tile_lo, tile_hi, n_inputs, activation,
                    inhibition, kappa, pulse, rb, Vc, z, y, scale, Vdot, work):
    Ks = cuda.shared.array(KS_SHAPE, float32)
    Xs = cuda.shared.array((TILE_ROWS, TILE_N), float32)
    red = cuda.shared.array((TILE_ROWS, TILE_N), float32)
    s_row = cuda.shared.array(TILE_ROWS, float32)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    k = T.shape[0]
    B = T.shape[1]
    N = T.shape[2]
    ell = z.shape[0]
    b0 = cuda.blockIdx.x * rb
    S = rb * (1 + k)                          # stacked rows of the block
    n_agents = float32(N - n_inputs)
    t0 = ell                                  # the first injection step: tangents are 0 to it
    for n in range(n_inputs, N):
        t0 = min(t0, tau[n])

    for c0 in range(0, S, TILE_ROWS):         # Vc[0] with the sensor input; tangents 0
        s = c0 + ty
        b = b0 + s % rb
        if s < S and b < B:
            src = s // rb
            for n in range(tx, N, TILE_N):
                if src == 0:
                    v = V0[b, n]
                    if n < n_inputs:
                        v = v + u[b, n] if pulse else u[b, n]
                    Vc[0, b, n] = v
                else:
                    Vdot[src - 1, b, n] = float32(0.0)
    cuda.syncthreads()

    for t in range(ell):
        rows = S if t > t0 else rb
        # 1. products
        for n0 in range(0, N, TILE_N):
            n = n0 + tx
            live = n < N and last[n] >= t
            if cuda.syncthreads_or(int32(1) if live else int32(0)):
                ti = n0 // TILE_N
                for c0 in range(0, rows, TILE_ROWS):
                    s = c0 + ty
                    b = b0 + s % rb
                    valid = s < rows and b < B
                    src = s // rb
                    acc = float32(0.0)
                    for m0 in range(tile_lo[ti], tile_hi[ti], TILE_N):
                        m = m0 + tx
                        for i in range(ty, TILE_N, TILE_ROWS):
                            Ks[i, tx] = K[n0 + i, m] if (n0 + i < N and m < N) else float32(0.0)
                        x = float32(0.0)
                        if valid and m < N:
                            x = Vc[t, b, m] if src == 0 else Vdot[src - 1, b, m]
                        Xs[ty, tx] = x
                        cuda.syncthreads()
                        for kk in range(TILE_N):
                            acc += Ks[tx, kk] * Xs[ty, kk]
                        cuda.syncthreads()
                    if valid and n < N:
                        if src == 0:
                            z[t, b, n] = acc
                        else:
                            work[src - 1, b, n] = acc
        cuda.syncthreads()
        # 2. the primal rows (all in the first chunk: rb ≤ 8)
        b = b0 + ty
        primal = ty < rb and b < B
        part = float32(0.0)
        if primal and inhibition == 1:
            for n in range(n_inputs + tx, N, TILE_N):
                part += abs(z[t, b, n] + bias[n])
        red[ty, tx] = part
        cuda.syncthreads()
        if tx == 0:
            sc = float32(1.0)
            if inhibition == 1:
                total = float32(0.0)
                for i in range(TILE_N):
                    total += red[ty, i]
                sc = float32(1.0) / (float32(1.0) + kappa * total / n_agents)
            s_row[ty] = sc
            if primal:
                scale[t, b] = sc
        cuda.syncthreads()
        if primal:
            sc = s_row[ty]
            for n in range(tx, N, TILE_N):
                if last[n] >= t:
                    zz = z[t, b, n] + bias[n]
                    yy = zz * sc
                    a = activate_cuda(yy, activation)
                    v = (float32(1.0) - leak[n]) * Vc[t, b, n] + leak[n] * a
                    if n < n_inputs and not pulse:
                        v = u[b, n]
                    Vc[t + 1, b, n] = v
                    z[t, b, n] = zz
                    y[t, b, n] = yy
                else:
                    Vc[t + 1, b, n] = Vc[t, b, n]
                    z[t, b, n] = float32(0.0)
                    y[t, b, n] = float32(0.0)
        cuda.syncthreads()
        # 3. the tangent rows, a chunk at a time
        tangents = t > t0
        for c0 in range(rb, S, TILE_ROWS):
            s = c0 + ty
            i = s % rb
            b = b0 + i
            valid = s < S and b < B
            j = s // rb - 1
            part = float32(0.0)
            if valid and tangents and inhibition == 1:
                for n in range(n_inputs + tx, N, TILE_N):
                    zz = z[t, b, n]
                    sg = float32(1.0) if zz > 0 else (float32(-1.0) if zz < 0 else float32(0.0))
                    part += sg * work[j, b, n]
            red[ty, tx] = part
            cuda.syncthreads()
            if valid:
                sc = s_row[i]
                c = float32(0.0)
                if inhibition == 1:
                    total = float32(0.0)
                    for q in range(TILE_N):
                        total += red[ty, q]
                    c = kappa * sc * sc * total / n_agents
                for n in range(tx, N, TILE_N):
                    if last[n] >= t:
                        if n < n_inputs and not pulse:
                            Vdot[j, b, n] = float32(0.0)
                        else:
                            zz = z[t, b, n]
                            zd = work[j, b, n] if tangents else float32(0.0)
                            ad = activate_grad_cuda(zz * sc, activation) * (sc * zd - c * zz)
                            if n >= n_inputs and tau[n] == t:
                                ad += T[j, b, n]
                            Vdot[j, b, n] = (float32(1.0) - leak[n]) * Vdot[j, b, n] + leak[n] * ad
            cuda.syncthreads()


def rows_per_block(k: int) -> int:
    """Batch rows a block of the cuda face owns: its 1 + k stacked rows fill chunks of 8."""
    return max(1, TILE_ROWS // (1 + k))


def tangent_step_cuda(V0, u, T, net: TangentNet, flags: TangentFlags, out: TangentOut,
                      stream=0) -> TangentOut:
    """The tangent step on the GPU (CuPy arrays; NumPy arrays in the simulator), float32, one
    launch of ``ceil(B / rows_per_block(k))`` blocks of 32 × 8 threads.

    Needs ``net.tile_lo``/``net.tile_hi`` (kernels/step.py's ``tile_ranges``) and ``out.work``.
    The values of tau/last are checked against ℓ only for host (NumPy) arrays: reading device
    arrays back would synchronise every call; :func:`decision_last` makes valid ones.
    """
    check_inputs(V0, u, T, net, flags, out)
    n_in, act, inhibition, kappa, pulse, ell = flags
    k, B, N = T.shape
    n_tiles = -(-N // TILE_N)
    for name in ("tile_lo", "tile_hi"):
        a = getattr(net, name)
        if a is None or tuple(a.shape) != (n_tiles,) or a.dtype != np.int32:
            raise ValueError(f"tangent step: {name} is {None if a is None else (a.dtype, tuple(a.shape))}, "
                             f"expected int32 of shape ({n_tiles},) (kernels/step.py's tile_ranges)")
    if isinstance(net.tau, np.ndarray) and isinstance(net.last, np.ndarray):
        check_last(net.tau, net.last, ell, inhibition)
    rb = rows_per_block(k)
    grid = (max(1, -(-B // rb)),)
    _tangent_kernel[grid, (TILE_N, TILE_ROWS), stream](
        V0, u, T, net.K, net.bias, net.leak, net.tau, net.last, net.tile_lo, net.tile_hi,
        np.int32(n_in), np.int32(act), np.int32(inhibition), np.float32(kappa), bool(pulse),
        np.int32(rb), out.Vc, out.z, out.y, out.scale, out.Vdot, out.work)
    return out


# Signatures the PTX test compiles for sm_80 and sm_90 (tests/test_ptx.py): (kernel, [sig, …]).
_F1, _F2, _F3, _I1 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "int32[::1]"
CUDA_KERNELS = [
    (_tangent_kernel, [f"void({_F2}, {_F2}, {_F3}, {_F2}, {_F1}, {_F1}, {_I1}, {_I1}, {_I1}, {_I1}, "
                       f"int32, int32, int32, float32, boolean, int32, {_F3}, {_F3}, {_F3}, {_F2}, "
                       f"{_F3}, {_F3})"]),
]

# Faces by backend name.
FACES = {"numpy": tangent_step_reference, "cpu": tangent_step_cpu, "cuda": tangent_step_cuda}
