"""Credit update: every neuron's estimate of its own effect on the critic, its row gradient and
its Adam step, in one call. No backpropagation through the network.

A shared critic ``Q(s, a)`` broadcasts ``g = ∂Q/∂a`` per sample (d_act numbers, a vector
dopamine). Each agent neuron n turns it into ``e[b, n] ≈ ∂Q/∂α_n``, the sensitivity of the critic
to its activity at its decision step ``t = tau[n]``, by one of three rules::

    perturb   e[b, n] = (1/k) Σ_j (g[b]·ȧ[j, b]) T[j, b, n]        activity tangents T, carried to
                                                                   the action by kernels/tangent.py
    feedback  F[n] ← (1−β) F[n] + β (1/(k·B)) Σ_{j,b} ȧ[j, b] T[j, b, n]    F[n] → E[∂a/∂α_n]
              e[b, n] = g[b]·F[n]                                  (with the updated F)
    dfa       e[b, n] = g[b]·F[n]                                  F fixed (random feedback)

An output neuron o (the last n_out) knows its own effect on the action exactly and uses it under
every rule: ``e[b, o] = g[b, o]·dadv[b, o]``, ``dadv = ∂a_o/∂α_o`` (decoder gain × clip × λ_o).
Then, with the divisive factor ``s`` of the row (1 without inhibition; its off-diagonal coupling
is dropped)::

    gz[b, n] = e[b, n] σ'(y[t, b, n]) s[t, b]
    G[n, m]  = (1/B) Σ_b gz[b, n] Vc[t, b, m] M[n, m]          G_b[n] = (1/B) Σ_b gz[b, n]

``G`` ascends ``mean_b Q``: for a layered network it is an estimate of the BPTT gradient
``∂/∂K mean_b Q(s_b, μ(s_b))`` (exact in expectation under perturb). If ``apply``, every row
then takes one Adam step on the loss ``−mean Q`` (bias corrections folded in, as in
:mod:`leaky.optim`)::

    m ← β₁m + (1−β₁)(−G),  v ← β₂v + (1−β₂)G²,  K[n, m] −= step_size·m / (√v + eps_hat)

for every m with ``M[n, m] ≠ 0``, and ``bias[n]`` likewise. Each neuron reads and writes only its
own row of K, its moments and its row of F: no atomics, no communication between neurons. Sensor
rows are never written (their G rows are 0).

Shapes: Vc (ℓ+1, B, N), y (ℓ, B, N), scale (ℓ, B), T (k, B, N), adot (k, B, n_out), g and dadv
(B, n_out); tau, col_lo, col_hi (N,) int32; mask, K, mK, vK, G (N, N); bias, mb, vb, Gb (N,);
F (N, n_out).

Cost per call: ``B·Σ_n (col_hi_n − col_lo_n)`` multiply-adds for G (``B·N²`` dense) plus
``k·B·N·n_out`` for the rules. Bytes: the voltage slice a neuron reads (shared by all neurons
through the cache), K and its moments read and written once.

Faces: ``credit_update_reference`` (NumPy float64, the definition), ``credit_update_cpu``
(numba.njit, tiles of neurons sharing a decision step) and ``credit_update_cuda`` (one launch,
a block per neuron); docs/kernels.md describes them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import float32, get_num_threads, njit, prange

try:  # the cuda face needs numba-cuda (the `cuda13`/`cuda12` extras); the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.scalar import FASTMATH, activate_grad_cuda, compiled, cuda_jit
from leaky.kernels.scalar import tanh32 as _tanh
from leaky.kernels.step import PARALLEL_MIN_WORK
from leaky.kernels.update_local import _outer_tn

RULES = {"perturb": 0, "feedback": 1, "dfa": 2}


class CreditBatch(NamedTuple):
    """The minibatch a credit update reads (see the module docstring for shapes)."""

    Vc: Any
    y: Any
    scale: Any
    T: Any
    adot: Any
    g: Any
    dadv: Any


class CreditParams(NamedTuple):
    """What a credit update changes in place: K, bias, F and Adam's moments of K and bias."""

    K: Any
    bias: Any
    F: Any
    mK: Any
    vK: Any
    mb: Any
    vb: Any


class CreditGrads(NamedTuple):
    """What a credit update writes: the ascent directions G (N, N) and Gb (N,)."""

    G: Any
    Gb: Any


class CreditTopology(NamedTuple):
    """tau (N,) int32 decision steps; mask (N, N) 0/1; col_lo, col_hi (N,) int32 ranges."""

    tau: Any
    mask: Any
    col_lo: Any
    col_hi: Any


class CreditScalars(NamedTuple):
    """Scalars of one update.

    n_inputs, activation : sensors count and kernels/scalar.py activation code
    rule : code of :data:`RULES`;  feedback_rate : β of the feedback rule
    step_size, eps_hat, beta1, beta2 : Adam with the bias corrections of its step folded in
        (:func:`adam_scalars`);  apply : take the Adam step (False: only G, Gb and F)
    """

    n_inputs: int
    activation: int
    rule: int
    feedback_rate: float
    step_size: float
    eps_hat: float
    beta1: float
    beta2: float
    apply: bool


def adam_scalars(lr: float, step: int, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
    """``(step_size, eps_hat)`` of Adam step ``step`` ≥ 1: ``θ −= step_size·m/(√v + eps_hat)``
    equals ``θ −= lr·m̂/(√v̂ + ε)`` (Kingma & Ba's efficient form)."""
    if step < 1:
        raise ValueError(f"adam_scalars: step {step}, expected >= 1")
    return (lr * math.sqrt(1.0 - beta2 ** step) / (1.0 - beta1 ** step),
            eps * math.sqrt(1.0 - beta2 ** step))


# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------

_DACT_NP = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0).astype(np.float64),
            2: lambda y: np.ones_like(y)}


def _adam_descent(theta, m, v, grad, cols, sc):
    """One Adam step of ``theta[cols]`` down ``grad`` (views, changed in place)."""
    m[cols] = sc.beta1 * m[cols] + (1.0 - sc.beta1) * grad[cols]
    v[cols] = sc.beta2 * v[cols] + (1.0 - sc.beta2) * grad[cols] ** 2
    theta[cols] -= sc.step_size * m[cols] / (np.sqrt(v[cols]) + sc.eps_hat)


def credit_update_reference(batch: CreditBatch, params: CreditParams, top: CreditTopology,
                            sc: CreditScalars, out: CreditGrads) -> CreditGrads:
    """Definition of the credit update, in float64; changes ``params`` and writes ``out`` in place
    (``col_lo``/``col_hi`` are not read: the mask alone defines the rows)."""
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    Vc, y, scale, T, adot, g, dadv = map(f64, batch)
    K, bias, F, mK, vK, mb, vb = map(f64, params)
    tau = np.asarray(top.tau)
    M = np.asarray(top.mask) != 0
    k, B, N = T.shape
    n_out = g.shape[1]
    n_in = sc.n_inputs
    dact = _DACT_NP[sc.activation]
    if k == 0 and sc.rule != RULES["dfa"]:
        raise ValueError("credit update: the perturb and feedback rules need k >= 1 tangents")
    G = np.zeros((N, N))
    Gb = np.zeros(N)
    d = np.einsum("bo,jbo->jb", g, adot)                        # g·ȧ per tangent, (k, B)
    for n in range(n_in, N):
        if n >= N - n_out:
            o = n - (N - n_out)
            e = g[:, o] * dadv[:, o]
        elif sc.rule == RULES["perturb"]:
            e = (d * T[:, :, n]).mean(axis=0)
        else:
            if sc.rule == RULES["feedback"]:
                F[n] = (1.0 - sc.feedback_rate) * F[n] + sc.feedback_rate * np.einsum(
                    "jbo,jb->o", adot, T[:, :, n]) / (k * B)
            e = g @ F[n]
        t = tau[n]
        gz = e * dact(y[t, :, n]) * scale[t]
        G[n] = (gz @ Vc[t]) / B * M[n]
        Gb[n] = gz.mean()
        if sc.apply:
            _adam_descent(K[n], mK[n], vK[n], -G[n], M[n], sc)
            _adam_descent(bias[n:n + 1], mb[n:n + 1], vb[n:n + 1], -Gb[n:n + 1], np.ones(1, bool), sc)
    for dst, src in zip(params, (K, bias, F, mK, vK, mb, vb)):
        dst[...] = src
    out.G[...] = G
    out.Gb[...] = Gb
    return out

def credit_update_composed(xp, batch: CreditBatch, params: CreditParams, top: CreditTopology,
                           sc: CreditScalars, out: CreditGrads) -> CreditGrads:
    """The same update composed from library calls on ``xp`` (NumPy or CuPy), in the arrays'
    dtype: every neuron at once, one GEMM per distinct decision step, Adam over whole arrays.

    Not a face: the alternative the faces are benchmarked against. Off the mask and on sensor
    rows G is 0, so Adam's moments stay 0 there and K does not move (as in the reference,
    provided the moments start at 0 there).
    """
    Vc, y, scale, T, adot, g, dadv = batch
    K, bias, F, mK, vK, mb, vb = params
    k, B, N = T.shape
    n_out = g.shape[1]
    n_in = sc.n_inputs
    hidden = slice(n_in, N - n_out)
    E = xp.zeros((B, N), dtype=K.dtype)
    if sc.rule == RULES["perturb"]:
        d = xp.einsum("bo,jbo->jb", g, adot)
        E[:, hidden] = (d[:, :, None] * T[:, :, hidden]).mean(axis=0)
    else:
        if sc.rule == RULES["feedback"]:
            F[hidden] *= 1.0 - sc.feedback_rate
            F[hidden] += (sc.feedback_rate / (k * B)) * xp.einsum("jbo,jbn->no", adot, T[:, :, hidden])
        E[:, hidden] = g @ F[hidden].T
    E[:, N - n_out:] = g * dadv
    tau = xp.asarray(top.tau)
    cols = xp.arange(N)
    y_tau = y[tau, :, cols]                                     # (N, B): y[tau[n], :, n]
    if sc.activation == 0:
        dact = 1.0 - xp.tanh(y_tau) ** 2
    elif sc.activation == 1:
        dact = (y_tau > 0).astype(K.dtype)
    else:
        dact = xp.ones_like(y_tau)
    gz = E.T * dact * scale[tau]
    gz[:n_in] = 0.0
    G, Gb = out
    G[...] = 0.0
    tau_host = np.asarray(top.tau.get() if hasattr(top.tau, "get") else top.tau)
    for t in np.unique(tau_host[n_in:]):
        rows = xp.asarray(np.flatnonzero(tau_host == t))
        G[rows] = gz[rows] @ Vc[int(t)]
    G *= top.mask * (1.0 / B)
    Gb[...] = gz.mean(axis=1)
    if sc.apply:
        for theta, m, v, grad in ((K, mK, vK, G), (bias, mb, vb, Gb)):
            m *= sc.beta1
            m -= (1.0 - sc.beta1) * grad
            v *= sc.beta2
            v += (1.0 - sc.beta2) * grad * grad
            theta -= sc.step_size * m / (v ** 0.5 + sc.eps_hat)
    return out


# ---------------------------------------------------------------------------------------------
# input checks shared by the compiled faces
# ---------------------------------------------------------------------------------------------

def check_inputs(batch: CreditBatch, params: CreditParams, top: CreditTopology, sc: CreditScalars,
                 out: CreditGrads) -> None:
    """ValueError unless every array has the shape, dtype and layout the compiled faces take
    (float32, C-contiguous; int32 index arrays), the codes are known and the rule has the
    tangents it needs. Reads no array values."""
    if sc.rule not in RULES.values():
        raise ValueError(f"credit update: rule {sc.rule!r}, expected one of {RULES}")
    if sc.activation not in (0, 1, 2):
        raise ValueError(f"credit update: activation {sc.activation!r}, expected 0, 1 or 2")
    Vc, y, scale, T, adot, g, dadv = batch
    if T.ndim != 3 or Vc.ndim != 3 or g.ndim != 2:
        raise ValueError(f"credit update: T, Vc, g have {T.ndim}, {Vc.ndim}, {g.ndim} dimensions, "
                         "expected 3, 3, 2")
    k, B, N = T.shape
    ell = Vc.shape[0] - 1
    n_out = g.shape[1]
    n_in = sc.n_inputs
    if ell < 1 or not (0 <= n_in and 1 <= n_out <= N - n_in):
        raise ValueError(f"credit update: ell = {ell}, n_inputs = {n_in}, n_out = {n_out} for N = {N}; "
                         "expected ell >= 1 and 1 <= n_out <= N - n_inputs")
    if k == 0 and sc.rule != RULES["dfa"]:
        raise ValueError("credit update: the perturb and feedback rules need k >= 1 tangents")
    want = {"Vc": (Vc, (ell + 1, B, N)), "y": (y, (ell, B, N)), "scale": (scale, (ell, B)),
            "T": (T, (k, B, N)), "adot": (adot, (k, B, n_out)), "g": (g, (B, n_out)),
            "dadv": (dadv, (B, n_out)), "K": (params.K, (N, N)), "bias": (params.bias, (N,)),
            "F": (params.F, (N, n_out)), "mK": (params.mK, (N, N)), "vK": (params.vK, (N, N)),
            "mb": (params.mb, (N,)), "vb": (params.vb, (N,)), "G": (out.G, (N, N)),
            "Gb": (out.Gb, (N,))}
    for name, (a, shape) in want.items():
        if tuple(a.shape) != shape:
            raise ValueError(f"credit update: {name} has shape {tuple(a.shape)}, expected {shape}")
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"credit update: {name} is {a.dtype}"
                             f"{'' if a.flags.c_contiguous else ', not C-contiguous'}; expected a "
                             "C-contiguous float32 array")
    if tuple(top.mask.shape) != (N, N) or not top.mask.flags.c_contiguous:
        raise ValueError(f"credit update: mask has shape {tuple(top.mask.shape)}, expected a "
                         f"C-contiguous ({N}, {N}) array")
    for name in ("tau", "col_lo", "col_hi"):
        a = getattr(top, name)
        if tuple(a.shape) != (N,) or a.dtype != np.int32:
            raise ValueError(f"credit update: {name} is {a.dtype} of shape {tuple(a.shape)}, "
                             f"expected int32 of shape ({N},)")


@njit(cache=True)
def tau_is_valid(tau, ell):
    """Whether every decision step is in ``[0, ℓ)`` (what indexes ``y[tau]`` and ``Vc[tau]``)."""
    for n in range(tau.shape[0]):
        if tau[n] < 0 or tau[n] >= ell:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# cpu: numba.njit; tiles of ≤ 32 neurons sharing a decision step, one task each
# ---------------------------------------------------------------------------------------------
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
#      (kernels/update_local.py's _outer_tn: per batch row, eight broadcast gz times two vectors
#      of voltages into 16 vector accumulators), summed over b in order;
#   3. per neuron, G's row written whole (0 off the mask), then Adam over col_lo…col_hi with
#      the mask as a select (vectorised), and the bias.
# Networks narrower than 32 neurons take plain loops for step 2.

_TILE_N = 32


def _cpu_jit(**flags):
    return njit(cache=True, fastmath=FASTMATH, error_model="numpy", **flags)


@_cpu_jit()
def credit_tiles(tau, n_inputs, N):
    """``(order, starts)``: the agents sorted by decision step (stable), tile ``j`` =
    ``order[starts[j]:starts[j + 1]]``, at most 32 neurons with one decision step."""
    order = n_inputs + np.argsort(tau[n_inputs:N], kind="mergesort").astype(np.int64)
    A = N - n_inputs
    starts = np.empty(A + 1, dtype=np.int64)
    j = 0
    i = 0
    while i < A:
        starts[j] = i
        j += 1
        e = i + 1
        while e < A and e - i < _TILE_N and tau[order[e]] == tau[order[i]]:
            e += 1
        i = e
    starts[j] = A
    return order, starts[:j + 1]


@_cpu_jit(inline="always")
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


@_cpu_jit()
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


@_cpu_jit()
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
        gg = -grad_ascent[i]
        mm = b1 * m[i] + omb1 * gg
        vv = b2 * v[i] + omb2 * gg * gg
        keep = mrow[i] == 0
        m[i] = m[i] if keep else mm
        v[i] = v[i] if keep else vv
        theta[i] = theta[i] if keep else theta[i] - ss * mm / (math.sqrt(vv) + eh)


@_cpu_jit()
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
                _outer_tn(E, c0, Vt, 0, m, B, GT, m)
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


def credit_update_cpu(batch: CreditBatch, params: CreditParams, top: CreditTopology,
                      sc: CreditScalars, out: CreditGrads) -> CreditGrads:
    """The credit update on the CPU: float32 NumPy arrays, ``params`` and ``out`` in place."""
    check_inputs(batch, params, top, sc, out)
    ell = batch.Vc.shape[0] - 1
    if not tau_is_valid(top.tau, ell):
        raise ValueError(f"credit update: decision steps tau in [{int(np.min(top.tau))}, "
                         f"{int(np.max(top.tau))}], expected 0 <= tau < ell = {ell}")
    k, B, N = batch.T.shape
    nnz = int(_nnz(top.col_lo, top.col_hi))
    work = credit_work(B, k, N, batch.g.shape[1], nnz)
    kernel = (_credit_cpu_parallel if work >= PARALLEL_MIN_WORK and get_num_threads() > 1
              else _credit_cpu_serial)
    kernel(*batch, *params, top.tau, top.mask, top.col_lo, top.col_hi, int(sc.n_inputs),
           int(sc.activation), int(sc.rule), float(sc.feedback_rate), float(sc.step_size),
           float(sc.eps_hat), float(sc.beta1), float(sc.beta2), bool(sc.apply), out.G, out.Gb)
    return out


@njit(cache=True)
def _nnz(col_lo, col_hi):
    total = 0
    for n in range(col_lo.shape[0]):
        total += max(0, col_hi[n] - col_lo[n])
    return total


# ---------------------------------------------------------------------------------------------
# cuda: numba.cuda.jit; one launch, one block per neuron
# ---------------------------------------------------------------------------------------------
#
# Block n owns neuron n's rows of K, G, F and the moments, and its bias: no other block touches
# them, so __syncthreads() is the only synchronisation (no atomics). Sensor blocks write their
# zero rows and return. Otherwise:
#   1. feedback (hidden n): per output p, Σ_{j,b} ȧ[j, b, p]·T[j, b, n] by a shared-memory tree
#      over the BLOCK threads; thread 0 steps F[n, p];
#   2. the row gradient, BLOCK columns at a time (coalesced along m): the batch in tiles of
#      BLOCK rows, each thread computing one row's gz = e·σ'(y)·s into shared memory (e by the
#      neuron's rule), then every thread sums gz·Vc[t, b, m] over the tile for its column;
#      columns outside col_lo…col_hi are written 0 without a sum. G = sum/B on the mask, and
#      the thread's Adam step of K[n, m] right after;
#   3. Gb = Σ gz / B by a tree (the first column pass accumulates it), thread 0 steps the bias.
# gz is recomputed for every column pass (⌈N / BLOCK⌉ of them): k·n_out multiply-adds per row,
# against BLOCK per row for the sums it feeds.

BLOCK = 128      # threads per block (a power of two: the tree sums)


def _gz_one(b, n, o, t, y, scale, T, adot, g, dadv, F, n_out, activation, rule, inv_k):
    """gz[b] of neuron n (``o`` ≥ 0: output o) by the neuron's rule."""
    k = T.shape[0]
    e = float32(0.0)
    if o >= 0:
        e = g[b, o] * dadv[b, o]
    elif rule == 0:
        for j in range(k):
            d = float32(0.0)
            for p in range(n_out):
                d += g[b, p] * adot[j, b, p]
            e += d * T[j, b, n]
        e *= inv_k
    else:
        for p in range(n_out):
            e += g[b, p] * F[n, p]
    return e * activate_grad_cuda(y[t, b, n], activation) * scale[t, b]


def _device(fn):
    """A cuda device function (inlined), or None without numba-cuda."""
    return cuda.jit(device=True, inline="always")(fn) if cuda is not None else None


_gz_one_cuda = _device(_gz_one)


def _tree_sum(red, tid):
    """Σ red[0:BLOCK] into red[0] (every thread calls it; red[tid] written before)."""
    cuda.syncthreads()
    half = BLOCK // 2
    while half > 0:
        if tid < half:
            red[tid] += red[tid + half]
        cuda.syncthreads()
        half //= 2


_tree_sum_cuda = _device(_tree_sum)


@cuda_jit
def _credit_kernel(Vc, y, scale, T, adot, g, dadv, K, bias, F, mK, vK, mb, vb, tau, mask, col_lo,
                   col_hi, n_inputs, activation, rule, feedback_rate, step_size, eps_hat, beta1,
                   beta2, apply, G, Gb):
    red = cuda.shared.array(BLOCK, float32)
    gzs = cuda.shared.array(BLOCK, float32)
    tid = cuda.threadIdx.x
    n = cuda.blockIdx.x
    k = T.shape[0]
    B = T.shape[1]
    N = T.shape[2]
    n_out = g.shape[1]
    if n < n_inputs:                          # sensors: zero rows, nothing stepped
        for m in range(tid, N, BLOCK):
            G[n, m] = float32(0.0)
        if tid == 0:
            Gb[n] = float32(0.0)
        return
    o = n - (N - n_out)
    inv_b = float32(1.0) / float32(B)
    inv_k = float32(1.0) / float32(k) if k > 0 else float32(0.0)
    if o < 0 and rule == 1:                   # 1. feedback: the F row before its e
        for p in range(n_out):
            part = float32(0.0)
            for q in range(tid, k * B, BLOCK):
                j = q // B
                b = q - j * B
                part += adot[j, b, p] * T[j, b, n]
            red[tid] = part
            _tree_sum_cuda(red, tid)
            if tid == 0:
                F[n, p] = (float32(1.0) - feedback_rate) * F[n, p] + feedback_rate * (
                    red[0] / float32(k * B))
            cuda.syncthreads()
    t = tau[n]
    lo = col_lo[n]
    hi = col_hi[n]
    gsum = float32(0.0)
    for m0 in range(0, N, BLOCK):            # 2. the row gradient, BLOCK columns at a time
        m = m0 + tid
        inside = m >= lo and m < hi
        acc = float32(0.0)
        for b0 in range(0, B, BLOCK):
            b = b0 + tid
            gz = float32(0.0)
            if b < B:
                gz = _gz_one_cuda(b, n, o, t, y, scale, T, adot, g, dadv, F, n_out, activation,
                                  rule, inv_k)
                if m0 == 0:
                    gsum += gz
            gzs[tid] = gz
            cuda.syncthreads()
            if inside:
                for bb in range(min(BLOCK, B - b0)):
                    acc += gzs[bb] * Vc[t, b0 + bb, m]
            cuda.syncthreads()
        if m < N:
            on = inside and mask[n, m] != 0
            grad = acc * inv_b if on else float32(0.0)
            G[n, m] = grad
            if apply and on:
                gg = -grad
                mm = beta1 * mK[n, m] + (float32(1.0) - beta1) * gg
                vv = beta2 * vK[n, m] + (float32(1.0) - beta2) * gg * gg
                mK[n, m] = mm
                vK[n, m] = vv
                K[n, m] -= step_size * mm / (math.sqrt(vv) + eps_hat)
    red[tid] = gsum                           # 3. Gb and the bias
    _tree_sum_cuda(red, tid)
    if tid == 0:
        gb = red[0] * inv_b
        Gb[n] = gb
        if apply:
            gg = -gb
            mm = beta1 * mb[n] + (float32(1.0) - beta1) * gg
            vv = beta2 * vb[n] + (float32(1.0) - beta2) * gg * gg
            mb[n] = mm
            vb[n] = vv
            bias[n] -= step_size * mm / (math.sqrt(vv) + eps_hat)


def credit_update_cuda(batch: CreditBatch, params: CreditParams, top: CreditTopology,
                       sc: CreditScalars, out: CreditGrads, stream=0) -> CreditGrads:
    """The credit update on the GPU (CuPy arrays; NumPy arrays in the simulator), float32, one
    launch of N blocks of BLOCK threads. The decision steps are checked against ℓ only for
    host (NumPy) arrays (reading device arrays back would synchronise every call)."""
    check_inputs(batch, params, top, sc, out)
    ell = batch.Vc.shape[0] - 1
    if isinstance(top.tau, np.ndarray) and not tau_is_valid(top.tau, ell):
        raise ValueError(f"credit update: decision steps tau in [{int(np.min(top.tau))}, "
                         f"{int(np.max(top.tau))}], expected 0 <= tau < ell = {ell}")
    N = batch.T.shape[2]
    f = np.float32
    _credit_kernel[(N,), (BLOCK,), stream](
        *batch, *params, top.tau, top.mask, top.col_lo, top.col_hi, np.int32(sc.n_inputs),
        np.int32(sc.activation), np.int32(sc.rule), f(sc.feedback_rate), f(sc.step_size),
        f(sc.eps_hat), f(sc.beta1), f(sc.beta2), bool(sc.apply), out.G, out.Gb)
    return out


# Signatures the PTX test compiles for sm_80 and sm_90 (tests/test_ptx.py): (kernel, [sig, …]).
_F1, _F2, _F3, _I1 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "int32[::1]"
CUDA_KERNELS = [
    (_credit_kernel, [f"void({_F3}, {_F3}, {_F2}, {_F3}, {_F3}, {_F2}, {_F2}, {_F2}, {_F1}, {_F2}, "
                      f"{_F2}, {_F2}, {_F1}, {_F1}, {_I1}, {_F2}, {_I1}, {_I1}, int32, int32, int32, "
                      f"float32, float32, float32, float32, float32, boolean, {_F2}, {_F1})"]),
]

# Faces by backend name.
FACES = {"numpy": credit_update_reference, "cpu": credit_update_cpu, "cuda": credit_update_cuda}
