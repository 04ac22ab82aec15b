"""Fused update of per-neuron MLP critics: the ``mlp`` critic family (the paper's Experiment 1).

Every non-sensor neuron n owns a critic, a three-layer perceptron of ``[x, α]``::

    x   = f_n ⊙ V                    (N,)  features: f_n = 1 (view "all") or the mask row M[n] ≠ 0
    h1  = tanh(W1 [x; α] + b1)       W1 (H, N+1), b1 (H,)
    h2  = tanh(W2 h1 + b2)           W2 (H, H),   b2 (H,)
    Q_n(x, α) = w3·h2 + b3           w3 (H,),     b3 scalar           (hidden units: tanh)

From a batch of transitions it takes one critic step, then (optionally) one actor step with the
updated critic, then a soft target update::

    δ      = r + cont·Q̄_n(x', μ_n(x')) − Q_n(x, α),   μ_n(x') = σ(y'_n)     (target θ̄ held fixed)
    critic   θ ← θ + lr_critic · mean[δ ∂Q_n/∂θ]     SGD on ½δ²; or Adam on g = −mean[δ ∂Q_n/∂θ]
    actor    g = ∂Q_n/∂α at α = μ_n(x) = σ(y_n), through the updated critic
             K[n, m] += lr_actor · mean[g σ'(y_n) V_m]  for every m with M[n, m] ≠ 0
             b_n     += lr_actor · mean[g σ'(y_n)]      (skipped when cfg.actor is False)
    target   θ̄ ← (1 − τ_soft) θ̄ + τ_soft θ

The means run over the batch b and the neuron's slices t: ``t = tau[n]`` only (``causal`` clock)
or every t (``internal`` clock: ``tau[n] = -1``). Sensor neurons ``n < n_inputs`` are not agents:
nothing of theirs is read or written (their diagnostics are 0).

Parameters are packed, one row per neuron (:func:`mlp_layout`), ``theta (N, P)``,
``P = H(N+1) + H + H² + H + H + 1``::

    [ W1 (H×(N+1), row k = unit k's weights, last column = α) | b1 (H) | W2 (H×H, row k = unit k
      of layer 2) | b2 (H) | w3 (H) | b3 ]

and :func:`unpack_mlp` gives the views ``W1 (N, H, N+1), b1 (N, H), W2 (N, H, H), b2 (N, H),
w3 (N, H), b3 (N,)``. The target ``theta_bar`` and the Adam moments ``adam_m``, ``adam_v`` have
the same layout. Every parameter is stepped; under the ``presynaptic`` view the W1 columns of
masked-out features get an exactly zero gradient (so under SGD, or Adam from zero moments, they
never move, and they multiply zero features anyway).

Transitions (the convention of ``update_local``): ``Vs, ys, alphas, Vn, yn (T, B, N)`` state
voltages, y after inhibition at the state, actions as taken, next-state voltages, y at the next
state; ``r, cont (T, B)`` reward and discount·(1 − terminated); ``tau (N,) int32``;
``mask (N, N)``; ``col_lo, col_hi (N,) int32`` the presynaptic column range of each row of K;
``K (N, N)``, ``bias (N,)``; ``diag (N, 3)`` written: mean δ, mean |δ|, mean slope g (the slope
is computed with the updated critic whether or not the actor step runs).

Cost per call, per transition and neuron (S transitions per neuron: B causal, T·B internal):
forward at (x, α) and target forward at (x', μ') ``2·(H(N+1) + H²)``, backward ``H²``, gradient
``H(N+1) + H²``, slope pass ``H(N+1) + 2H²``, row of K ``N`` multiply-adds: about
``S·N·(4H(N+1) + 6H² + N)`` in all, plus ``O(N·P)`` for the optimizer and the target.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import carray, float32, int32, njit, prange
from numba import types as nbtypes
from numba.extending import overload

try:  # the cuda face needs numba-cuda; the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.data import array_module
from leaky.kernels.jit import FASTMATH as _FAST
from leaky.kernels.jit import compiled as _compiled
from leaky.kernels.jit import cuda_jit as _cuda_jit
from leaky.kernels.jit import fmuladd as _fma
from leaky.kernels.jit import shared
from leaky.kernels.jit import stack_empty as _stack_empty
from leaky.kernels.scalar import activate_cuda, activate_grad_cuda, sigma, sigma_grad
from leaky.kernels.scalar import step_param_cuda as _step_param_cuda
from leaky.kernels.scalar import tanh32 as _tanh32

def _cuda_device(fn):
    return cuda.jit(device=True, inline="always")(fn) if cuda is not None else None


VIEWS = {"all": 0, "presynaptic": 1}
OPTIMIZERS = {"sgd": 0, "adam": 1}
CLOCKS = ("causal", "internal")

# The cuda face keeps one value per hidden unit and transition of a tile in shared memory, with
# one thread per hidden unit: H ≤ MAX_HIDDEN (the cpu and reference faces have no bound).
MAX_HIDDEN = 64
TILE_S = 4                          # transitions per tile: threadIdx.y
NTHREADS = MAX_HIDDEN * TILE_S      # 256 threads per block, one block per neuron
HS_SHAPE = (TILE_S, MAX_HIDDEN)     # per transition of the tile and hidden unit
RED_SHAPE = (2, TILE_S, MAX_HIDDEN)  # two tree sums over hidden units per transition
SC_SHAPE = (3, TILE_S)              # per transition: δ (or s = g σ'(y)), α, slope g
IX_SHAPE = (2, TILE_S)              # per transition: slice t, batch row b


# ---------------------------------------------------------------------------------------------
# configuration, layout, initialisation
# ---------------------------------------------------------------------------------------------

class MLPLayout(NamedTuple):
    """Offsets of the parameter blocks in a packed critic row, and its width ``P``."""

    W1: int
    b1: int
    W2: int
    b2: int
    w3: int
    b3: int
    width: int


def mlp_layout(N: int, H: int) -> MLPLayout:
    """Where each parameter block lives in a row of ``theta (N, P)``."""
    b1 = H * (N + 1)
    W2 = b1 + H
    b2 = W2 + H * H
    w3 = b2 + H
    b3 = w3 + H
    return MLPLayout(0, b1, W2, b2, w3, b3, b3 + 1)


def mlp_hidden(N: int, width: int) -> int:
    """The hidden size H of packed rows of ``width`` parameters for N neurons (checked)."""
    # width = H² + (N + 4) H + 1
    c = N + 4
    H = int(round((-c + math.sqrt(c * c + 4.0 * (width - 1))) / 2)) if width >= 1 else 0
    if H < 1 or mlp_layout(N, H).width != width:
        raise ValueError(f"update_mlp: a critic row of {width} parameters fits no hidden size for "
                          f"N = {N}; expected H² + (N+4)·H + 1 for some H ≥ 1 (mlp_layout)")
    return H


def unpack_mlp(theta, H: int) -> dict[str, Any]:
    """Views ``W1 (R, H, N+1), b1 (R, H), W2 (R, H, H), b2 (R, H), w3 (R, H), b3 (R,)`` of
    packed rows ``theta (R, P)`` (R = N for all critics; N is read from P and H). NumPy or
    CuPy; writing through a view writes ``theta``."""
    R, width = theta.shape
    N = (width - 1 - H * H - 3 * H) // H - 1 if H >= 1 else -1
    if N < 1 or mlp_layout(N, H).width != width:
        raise ValueError(f"unpack_mlp: rows of {width} parameters do not fit H = {H}; expected "
                          "H·(N+1) + H² + 3H + 1 for some N >= 1 (mlp_layout)")
    lay = mlp_layout(N, H)
    return {
        "W1": theta[:, lay.W1:lay.b1].reshape(R, H, N + 1),
        "b1": theta[:, lay.b1:lay.W2],
        "W2": theta[:, lay.W2:lay.b2].reshape(R, H, H),
        "b2": theta[:, lay.b2:lay.w3],
        "w3": theta[:, lay.w3:lay.b3],
        "b3": theta[:, lay.b3],
    }


# ---------------------------------------------------------------------------------------------
# reference: NumPy float64, the definition
# ---------------------------------------------------------------------------------------------



def _row_views(row, N, H):
    lay = mlp_layout(N, H)
    return (row[:lay.b1].reshape(H, N + 1), row[lay.b1:lay.W2], row[lay.W2:lay.b2].reshape(H, H),
            row[lay.b2:lay.w3], row[lay.w3:lay.b3], row[lay.b3])


def mlp_forward_reference(row, inp, H):
    """One critic on inputs ``inp (S, N+1)`` = ``[x, α]``: returns ``Q (S,), h1, h2 (S, H)``."""
    N = inp.shape[1] - 1
    W1, b1, W2, b2, w3, b3 = _row_views(row, N, H)
    h1 = np.tanh(inp @ W1.T + b1)
    h2 = np.tanh(h1 @ W2.T + b2)
    return h2 @ w3 + b3, h1, h2


def _backward_np(row, h1, h2, N, H):
    """``∂Q/∂a2 = w3 (1 − h2²)`` and ``∂Q/∂a1 = (1 − h1²) ⊙ W2ᵀ ∂Q/∂a2``, per transition (S, H)."""
    _, _, W2, _, w3, _ = _row_views(row, N, H)
    g2 = w3 * (1.0 - h2 * h2)
    g1 = (g2 @ W2) * (1.0 - h1 * h1)
    return g1, g2


def critic_values(tr, tau, mask, theta, theta_bar, n_inputs, activation, view, xp):
    """Every neuron's critic value ``Q_n(x, α)`` and TD error ``δ = r + cont·Q̄_n(x', μ_n(x'))
    − Q_n(x, α)`` on its transition of each batch row, with the critics before the update
    (the record of ``leaky.learners.local``; the slice of neuron n is ``update_local.record_slices``).

    Parameters
    ----------
    tr : ``update_local.Transitions`` (T, B, N)
    tau, mask, theta, theta_bar, n_inputs, activation : as :func:`update_mlp_reference`
    view : {"all", "presynaptic"}
    xp : the arrays' module (NumPy or CuPy)

    Returns
    -------
    q, td : (B, N) arrays of the transitions' dtype; NaN in the sensor columns.
    """
    from leaky.kernels.update_local import record_slices

    T, B, N = tr.V.shape
    H = mlp_hidden(N, theta.shape[1])
    dt = tr.V.dtype
    q = xp.full((B, N), np.nan, dtype=dt)
    td = xp.full((B, N), np.nan, dtype=dt)
    act = lambda v: sigma(v, int(activation), xp)  # noqa: E731
    slices = record_slices(tau, T)
    agents = np.arange(int(n_inputs), N)

    def forward(rows, X, a, feat):
        """Q of critics ``rows`` (k, P) at features X (B, N) masked per critic, actions a (B, k)."""
        p = unpack_mlp(rows, H)
        W1 = p["W1"]
        h1 = xp.tanh(xp.einsum("bj,khj->bkh", X, W1[:, :, :N] * feat[:, None, :])
                     + W1[:, :, N][None] * a[:, :, None] + p["b1"][None])
        h2 = xp.tanh(xp.einsum("bkj,khj->bkh", h1, p["W2"]) + p["b2"][None])
        return xp.einsum("bkh,kh->bk", h2, p["w3"]) + p["b3"][None]

    for t in np.unique(slices[agents]):
        idx_np = agents[slices[agents] == t]
        idx = xp.asarray(idx_np)
        feat = ((mask[idx] != 0) if view == "presynaptic" else xp.ones((idx_np.size, N), bool)).astype(dt)
        Q = forward(theta[idx].astype(dt), tr.V[t], tr.alpha[t][:, idx], feat)
        Qbar = forward(theta_bar[idx].astype(dt), tr.V_next[t], act(tr.y_next[t][:, idx]), feat)
        q[:, idx] = Q
        td[:, idx] = tr.reward[t][:, None] + tr.cont[t][:, None] * Qbar - Q
    return q, td


def update_mlp_reference(Vs, ys, alphas, Vn, yn, r, cont, tau, mask, col_lo, col_hi, K, bias,
                         theta, theta_bar, adam_m, adam_v, diag, n_inputs, activation, cfg, step):
    """Definition of the fused MLP-critic update, in float64; updates the arrays in place.

    See the module docstring for the math and shapes. ``adam_m``/``adam_v`` are read only under
    Adam (may be None under SGD); ``col_lo``/``col_hi`` are not read (the mask alone defines the
    presynaptic sets). ``step`` is the Adam step ≥ 1 of this update. Returns ``diag``.
    """
    view, optimizer = cfg.codes
    f64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    Vs, ys, alphas, Vn, yn, r, cont = map(f64, (Vs, ys, alphas, Vn, yn, r, cont))
    T, B, N = Vs.shape
    H = mlp_hidden(N, theta.shape[1])
    lay = mlp_layout(N, H)
    act, dact = (lambda y: sigma(y, activation)), (lambda y: sigma_grad(y, activation))
    M = np.asarray(mask) != 0
    th, thb, Kf, bf = f64(theta), f64(theta_bar), f64(K), f64(bias)
    am = f64(adam_m) if optimizer == 1 else None
    av = f64(adam_v) if optimizer == 1 else None
    step_size, eps_hat = cfg.adam_scalars(step)
    out = np.zeros((N, 3))

    for n in range(n_inputs, N):
        ts = np.arange(T) if tau[n] < 0 else np.array([tau[n]])
        feat = M[n] if view == 1 else np.ones(N, dtype=bool)
        X = Vs[ts].reshape(-1, N) * feat                       # (S, N) critic features
        Xn = Vn[ts].reshape(-1, N) * feat
        y = ys[ts, :, n].reshape(-1)
        a = alphas[ts, :, n].reshape(-1)
        mu_next = act(yn[ts, :, n].reshape(-1))

        # critic: semi-gradient of ½δ² (the target is a constant)
        Q, h1, h2 = mlp_forward_reference(th[n], np.column_stack([X, a]), H)
        Qbar, _, _ = mlp_forward_reference(thb[n], np.column_stack([Xn, mu_next]), H)
        delta = r[ts].reshape(-1) + cont[ts].reshape(-1) * Qbar - Q
        g1, g2 = _backward_np(th[n], h1, h2, N, H)
        e1, e2 = delta[:, None] * g1, delta[:, None] * g2        # δ ∂Q/∂a1, δ ∂Q/∂a2
        S = X.shape[0]
        ascent = np.empty(lay.width)                              # mean[δ ∂Q/∂θ], packed
        ascent[:lay.b1] = (e1.T @ np.column_stack([X, a])).reshape(-1) / S
        ascent[lay.b1:lay.W2] = e1.mean(axis=0)
        ascent[lay.W2:lay.b2] = (e2.T @ h1).reshape(-1) / S
        ascent[lay.b2:lay.w3] = e2.mean(axis=0)
        ascent[lay.w3:lay.b3] = (delta[:, None] * h2).mean(axis=0)
        ascent[lay.b3] = delta.mean()
        if optimizer == 0:
            th[n] += cfg.lr_critic * ascent
        else:
            g = -ascent                                           # gradient of the loss
            am[n] = cfg.beta1 * am[n] + (1.0 - cfg.beta1) * g
            av[n] = cfg.beta2 * av[n] + (1.0 - cfg.beta2) * g * g
            th[n] -= step_size * am[n] / (np.sqrt(av[n]) + eps_hat)

        # actor, with the updated critic: slope ∂Q/∂α at α = μ = σ(y)
        slope = slopes_one_reference(th[n], X, act(y), H)
        if cfg.actor:
            s = slope * dact(y)
            Vpre = Vs[ts].reshape(-1, N)                          # the inputs of the weights
            Kf[n, M[n]] += cfg.lr_actor * (s[:, None] * Vpre).mean(axis=0)[M[n]]
            bf[n] += cfg.lr_actor * s.mean()

        thb[n] = (1.0 - cfg.tau_soft) * thb[n] + cfg.tau_soft * th[n]
        out[n] = delta.mean(), np.abs(delta).mean(), slope.mean()

    theta[...] = th
    theta_bar[...] = thb
    K[...] = Kf
    bias[...] = bf
    if optimizer == 1:
        adam_m[...] = am
        adam_v[...] = av
    diag[...] = out
    return diag


def slopes_one_reference(row, X, mu, H):
    """``∂Q/∂α`` at ``α = mu`` of one critic (packed ``row``) for features ``X (S, N)``: (S,)."""
    N = X.shape[1]
    _, h1, h2 = mlp_forward_reference(row, np.column_stack([X, mu]), H)
    g1, _ = _backward_np(row, h1, h2, N, H)
    W1 = _row_views(row, N, H)[0]
    return g1 @ W1[:, N]


def slopes_mlp_reference(V, y, mask, theta, n_inputs, activation, view, out=None):
    """``∂Q_n/∂α`` at ``α = μ_n = σ(y_n)`` for every batch row and neuron, in float64.

    Nothing is updated. ``V, y (B, N)`` the states' voltages and y after inhibition;
    ``theta (N, P)`` packed critics; ``view`` "all" or "presynaptic". Returns ``(B, N)``
    (written into ``out`` when given), 0 on sensor columns.
    """
    V = np.asarray(V, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    th = np.asarray(theta, dtype=np.float64)
    B, N = V.shape
    H = mlp_hidden(N, th.shape[1])
    M = np.asarray(mask) != 0
    res = np.zeros((B, N))
    for n in range(n_inputs, N):
        feat = M[n] if VIEWS[view] == 1 else np.ones(N, dtype=bool)
        res[:, n] = slopes_one_reference(th[n], V * feat, sigma(y[:, n], activation), H)
    if out is not None:
        out[...] = res
        return out
    return res


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
# cpu: numba.njit, parallel over neurons; per neuron, its S transitions as small matrix products
# ---------------------------------------------------------------------------------------------
#
# Each neuron touches only its own rows, so neurons run in a prange. Per neuron, the S
# transitions go through the critic together, 16 at a time, and every pass is a small matrix
# product held in "panels": blocks of 16 transitions stored feature-major, (features, 16), so
# that one vector holds one feature (or hidden unit) of 16 transitions:
#   0. per call: σ(y), σ'(y), σ(y') over every (t, b, m) (vectorised); the voltages V and V'
#      packed into panels, once for all neurons (a set of blocks per slice t, and one over
#      all T·B rows for neurons on the internal clock);
#   1. per neuron, a critic row packed: W1ᵀ (L, Hp) over the neuron's features (Hp: H padded
#      to 16 with zero units; masked features zeroed under the presynaptic view), W2ᵀ and W2
#      (Hp, Hp), the vectors b1, W1's α column, b2, w3 (Hp,);
#   2. forward, target at (x', μ') then critic at (x, α): a1 = W1ᵀ·x and a2 = W2·h1 as 16-unit
#      × 16-transition register tiles (:func:`_panel_tile`), each followed by a vectorised
#      tanh; Q along the transitions;
#   3. δ, then backward: δ ∂Q/∂a2, and (δ ∂Q/∂a2)·W2 with the same tiles;
#   4. gradient of W1, Σ_j e1[j, :] ⊗ x[j, :], as 8-unit × 32-feature register tiles over the
#      rows of V (:func:`_grad_tile`); of W2, b1, b2, w3 and the α column by vector
#      accumulators over the panels (H² per transition);
#   5. critic step and soft target update in one vectorised pass over the packed row;
#   6. slope pass with the updated critic (steps 1–3 at α = μ, scale 1), row of K.
# Hidden units past H stay exactly zero (zero weights in, zero weights out); transitions past
# S in the last block are zero voltages with δ = 0, and nothing of theirs is kept. Every loop
# indexes from 0 and the functions compile with error_model="numpy": no zero-division checks,
# which stop LLVM vectorising. Loops over the 16 transitions of a block in memory take their
# trip count from the array's shape (R), not the constant: with a constant 16 LLVM unrolled
# them into scalar code (it cannot prove the arrays apart; the loop vectoriser checks that at
# run time), which made the forward pass 2× slower. Register tiles called from the long
# per-neuron body sit in small functions of their own (inlined there, a tile ran 4× slower).
# float32 uses :func:`tanh32` (vectorisable); float64 libm's tanh, so that the float64
# compilation stays the reference's algorithm to roundoff.

BLOCK_CPU = 16      # transitions per panel block (one vector of float32)
UNITS_CPU = 16      # hidden units per register tile: H is padded to a multiple
FEATURES_CPU = 32   # features per gradient tile: the rows of V are padded to a multiple


def _cpu_jit(**flags):
    return njit(cache=True, fastmath=_FAST, error_model="numpy", **flags)


def _tanh(x):
    """tanh in the argument's precision: :func:`tanh32` for float32, libm for float64 (chosen
    at compile time by the overload below)."""
    return math.tanh(x)


@overload(_tanh, jit_options={"fastmath": _FAST})
def _tanh_typed(x):
    if x == nbtypes.float32:
        return lambda x: _tanh32(x)
    return lambda x: math.tanh(x)


def _round_up(n, block):
    return (n + block - 1) // block * block


_round_up_cpu = _cpu_jit(inline="always")(_round_up)


@_cpu_jit()
def _actions_cpu(ys2, yn2, activation, MU, SG, MUN):
    """``MU = σ(y)``, ``SG = σ'(y)``, ``MUN = σ(y')`` over every row (t·B + b) and neuron;
    vectorised loops, the activation chosen outside them."""
    TB, N = ys2.shape
    one = MU.dtype.type(1.0)
    zero = MU.dtype.type(0.0)
    for s in range(TB):
        y, yy = ys2[s], yn2[s]
        mu, sg, mun = MU[s], SG[s], MUN[s]
        if activation == 0:
            for m in range(N):
                th = _tanh(y[m])
                mu[m] = th
                sg[m] = one - th * th
                mun[m] = _tanh(yy[m])
        elif activation == 1:
            for m in range(N):
                mu[m] = y[m] if y[m] > zero else zero
                sg[m] = one if y[m] > zero else zero
                mun[m] = yy[m] if yy[m] > zero else zero
        else:
            for m in range(N):
                mu[m] = y[m]
                sg[m] = one
                mun[m] = yy[m]


@_cpu_jit()
def _pack_set(X2, s0, S, N, XP, blk0):
    """Rows ``s0 … s0+S`` of ``X2`` (first N columns) into panels ``XP[blk0 + b] (N, 16)``,
    transitions past S zero."""
    zero = XP.dtype.type(0)
    for b in range((S + BLOCK_CPU - 1) // BLOCK_CPU):
        dst = XP[blk0 + b]
        for r in range(BLOCK_CPU):
            s = b * BLOCK_CPU + r
            if s < S:
                src = X2[s0 + s]
                for i in range(N):
                    dst[i, r] = src[i]
            else:
                for i in range(N):
                    dst[i, r] = zero


@_cpu_jit()
def _pack_panels(X2, N, B, T, causal, internal, XP):
    """The panels of every slice t (blocks ``t·⌈B/16⌉ …``, when ``causal``) and of all T·B
    rows (blocks ``T·⌈B/16⌉ …``, when ``internal``); :func:`_panel_block` says which."""
    nb = (B + BLOCK_CPU - 1) // BLOCK_CPU
    if causal:
        for t in range(T):
            _pack_set(X2, t * B, B, N, XP, t * nb)
    if internal:
        _pack_set(X2, 0, T * B, N, XP, T * nb)


def _panel_blocks(B, T, internal):
    nb = (B + BLOCK_CPU - 1) // BLOCK_CPU
    return T * nb + ((T * B + BLOCK_CPU - 1) // BLOCK_CPU if internal else 0)


@_cpu_jit(inline="always")
def _panel_tile(XP, xb, lo, P, L, kb, OP, ob):
    """``OP[ob, kb+j, :] = Σ_{i<L} P[i, kb+j] · XP[xb, lo+i, :]`` for j < 16: 16 hidden units'
    inputs for the 16 transitions of a block.

    Per feature i, one vector of 16 transitions times 16 broadcast weights into 16 vector
    accumulators, which live in a stack array that LLVM keeps in registers (the pattern of
    kernels/update_local.py's outer tiles).
    """
    acc = carray(_stack_empty(256, OP), (16, 16))
    zero = OP.dtype.type(0)
    for r in range(16):
        acc[0, r] = acc[1, r] = acc[2, r] = acc[3, r] = zero
        acc[4, r] = acc[5, r] = acc[6, r] = acc[7, r] = zero
        acc[8, r] = acc[9, r] = acc[10, r] = acc[11, r] = zero
        acc[12, r] = acc[13, r] = acc[14, r] = acc[15, r] = zero
    xp = XP[xb, lo:lo + L]
    for i in range(L):
        x = xp[i]
        w = P[i, kb:kb + 16]
        w0, w1, w2, w3, w4, w5, w6, w7 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
        w8, w9, w10, w11 = w[8], w[9], w[10], w[11]
        w12, w13, w14, w15 = w[12], w[13], w[14], w[15]
        for r in range(16):
            v = x[r]
            acc[0, r] = _fma(w0, v, acc[0, r])
            acc[1, r] = _fma(w1, v, acc[1, r])
            acc[2, r] = _fma(w2, v, acc[2, r])
            acc[3, r] = _fma(w3, v, acc[3, r])
            acc[4, r] = _fma(w4, v, acc[4, r])
            acc[5, r] = _fma(w5, v, acc[5, r])
            acc[6, r] = _fma(w6, v, acc[6, r])
            acc[7, r] = _fma(w7, v, acc[7, r])
            acc[8, r] = _fma(w8, v, acc[8, r])
            acc[9, r] = _fma(w9, v, acc[9, r])
            acc[10, r] = _fma(w10, v, acc[10, r])
            acc[11, r] = _fma(w11, v, acc[11, r])
            acc[12, r] = _fma(w12, v, acc[12, r])
            acc[13, r] = _fma(w13, v, acc[13, r])
            acc[14, r] = _fma(w14, v, acc[14, r])
            acc[15, r] = _fma(w15, v, acc[15, r])
    op = OP[ob]
    for j in range(16):
        o = op[kb + j]
        for r in range(16):
            o[r] = acc[j, r]


@_cpu_jit(inline="always")
def _grad_tile(E, k0, X, x0, c0, S, out, i0):
    """``out[k0:k0+8, i0:i0+32] = Σ_{j<S} e_j[k0:k0+8] ⊗ X[x0+j, c0:c0+32]`` where ``e_j`` is
    transition j of the panels ``E (blocks, Hp, 16)``: eight hidden units' gradient rows over
    32 features; per transition eight broadcast errors times two vectors of features."""
    acc = carray(_stack_empty(256, out), (8, 32))
    zero = out.dtype.type(0)
    for j in range(32):
        acc[0, j] = acc[1, j] = acc[2, j] = acc[3, j] = zero
        acc[4, j] = acc[5, j] = acc[6, j] = acc[7, j] = zero
    for s in range(S):
        e = E[s // 16, k0:k0 + 8]
        r = s % 16
        e0, e1, e2, e3 = e[0, r], e[1, r], e[2, r], e[3, r]
        e4, e5, e6, e7 = e[4, r], e[5, r], e[6, r], e[7, r]
        x = X[x0 + s, c0:c0 + 32]
        for j in range(32):
            k = x[j]
            acc[0, j] = _fma(e0, k, acc[0, j])
            acc[1, j] = _fma(e1, k, acc[1, j])
            acc[2, j] = _fma(e2, k, acc[2, j])
            acc[3, j] = _fma(e3, k, acc[3, j])
            acc[4, j] = _fma(e4, k, acc[4, j])
            acc[5, j] = _fma(e5, k, acc[5, j])
            acc[6, j] = _fma(e6, k, acc[6, j])
            acc[7, j] = _fma(e7, k, acc[7, j])
    for r in range(8):
        o = out[k0 + r, i0:i0 + 32]
        for j in range(32):
            o[j] = acc[r, j]


@_cpu_jit(inline="always")
def _row_tile(q, X, x0, S, c0, out, o0):
    """``out[o0:o0+32] = Σ_{j<S} q[j] · X[x0+j, c0:c0+32]``: four transitions at a time into
    four pairs of vector accumulators (independent chains), summed at the end."""
    acc = carray(_stack_empty(128, out), (4, 32))
    zero = out.dtype.type(0)
    for c in range(32):
        acc[0, c] = acc[1, c] = acc[2, c] = acc[3, c] = zero
    S4 = S - S % 4
    for j in range(0, S4, 4):
        q0, q1, q2, q3 = q[j], q[j + 1], q[j + 2], q[j + 3]
        x0r, x1r = X[x0 + j, c0:c0 + 32], X[x0 + j + 1, c0:c0 + 32]
        x2r, x3r = X[x0 + j + 2, c0:c0 + 32], X[x0 + j + 3, c0:c0 + 32]
        for c in range(32):
            acc[0, c] = _fma(q0, x0r[c], acc[0, c])
            acc[1, c] = _fma(q1, x1r[c], acc[1, c])
            acc[2, c] = _fma(q2, x2r[c], acc[2, c])
            acc[3, c] = _fma(q3, x3r[c], acc[3, c])
    for j in range(S4, S):
        qj = q[j]
        xr = X[x0 + j, c0:c0 + 32]
        for c in range(32):
            acc[0, c] = _fma(qj, xr[c], acc[0, c])
    o = out[o0:o0 + 32]
    for c in range(32):
        o[c] = (acc[0, c] + acc[1, c]) + (acc[2, c] + acc[3, c])


@_cpu_jit()
def _row_sum(q, X2, x0, S, lo, Lp, out):
    """``out[:Lp] = Σ_{j<S} q[j] · X2[x0+j, lo:lo+Lp]`` by :func:`_row_tile`."""
    for c in range(0, Lp, FEATURES_CPU):
        _row_tile(q, X2, x0, S, lo + c, out, c)


@_cpu_jit()
def _grad_w1(G1P, X2, x0, S, lo, Lp, GW):
    """``GW[:, :Lp] = Σ_{j<S} e1_j ⊗ X2[x0+j, lo:lo+Lp]`` by :func:`_grad_tile`."""
    for k0 in range(0, G1P.shape[1], 8):
        for i0 in range(0, Lp, FEATURES_CPU):
            _grad_tile(G1P, k0, X2, x0, lo + i0, S, GW, i0)


@_cpu_jit()
def _pack_critic(row, N, H, lo, L, mrow, view, WT, W2s, vec):
    """One packed critic row into panels; returns b3.

    ``WT[i, k] = f_{lo+i} W1[k, lo+i]`` (L, Hp); ``W2s[0] = W2ᵀ`` (forward), ``W2s[1] = W2``
    (backward) (Hp, Hp); ``vec`` rows b1, W1[:, N] (the α column), b2, w3 (4, Hp); zeros past H.
    """
    Hp = WT.shape[1]
    zero = row.dtype.type(0)
    b1, w2 = H * (N + 1), H * (N + 2)
    b2 = w2 + H * H
    w3 = b2 + H
    for i in range(L):
        wt = WT[i]
        for k in range(Hp):
            wt[k] = zero
    fm = mrow[lo:lo + L]
    for k in range(H):
        src = row[k * (N + 1) + lo:k * (N + 1) + lo + L]
        if view == 0:
            for i in range(L):
                WT[i, k] = src[i]
        else:
            for i in range(L):
                WT[i, k] = src[i] if fm[i] != 0 else zero
    W2s[:, :, :] = zero
    vec[:, :] = zero
    for k in range(H):
        src = row[w2 + k * H:w2 + k * H + H]
        for j in range(H):
            W2s[0, j, k] = src[j]
            W2s[1, k, j] = src[j]
        vec[0, k] = row[b1 + k]
        vec[1, k] = row[k * (N + 1) + N]
        vec[2, k] = row[b2 + k]
        vec[3, k] = row[w3 + k]
    return row[w3 + H]


@_cpu_jit()
def _forward_cpu(XP, blk0, lo, L, a, WT, W2s, vec, b3, H, AP, H1P, H2P, q):
    """Q of one packed critic (:func:`_pack_critic`) at ``[x_j, a[j]]`` into ``q[j]``, where
    ``x_j`` is transition j of the panels ``XP[blk0 …, lo:lo+L]``; the hidden activations into
    the panels ``H1P``, ``H2P`` (blocks, Hp, 16); ``AP`` scratch of their shape."""
    nb, Hp, R = H1P.shape             # R = BLOCK_CPU, read at run time (module note)
    b1v, wa, b2v, w3v = vec[0], vec[1], vec[2], vec[3]
    for b in range(nb):
        for kb in range(0, Hp, UNITS_CPU):
            _panel_tile(XP, blk0 + b, lo, WT, L, kb, AP, b)
        ab = a[b * BLOCK_CPU:(b + 1) * BLOCK_CPU]
        for k in range(H):
            z, h = AP[b, k], H1P[b, k]
            c, w = b1v[k], wa[k]
            for r in range(R):
                h[r] = _tanh(z[r] + c + w * ab[r])
        for kb in range(0, Hp, UNITS_CPU):
            _panel_tile(H1P, b, 0, W2s[0], H, kb, AP, b)
        qb = q[b * BLOCK_CPU:(b + 1) * BLOCK_CPU]
        for r in range(R):
            qb[r] = b3
        for k in range(H):
            z, h = AP[b, k], H2P[b, k]
            c, w = b2v[k], w3v[k]
            for r in range(R):
                v = _tanh(z[r] + c)
                h[r] = v
                qb[r] += w * v


@_cpu_jit()
def _backward_cpu(H1P, H2P, scale, W2s, vec, H, G2P, G1P):
    """``G2 = scale ⊙ ∂Q/∂a2 = scale·w3 (1 − h2²)`` and ``G1 = scale ⊙ ∂Q/∂a1 =
    (1 − h1²) ⊙ (W2ᵀ G2)``, per transition, after :func:`_forward_cpu` (panels)."""
    nb, Hp, R = H1P.shape             # R = BLOCK_CPU, read at run time (module note)
    w3v = vec[3]
    for b in range(nb):
        sb = scale[b * BLOCK_CPU:(b + 1) * BLOCK_CPU]
        for k in range(H):
            h2, g2 = H2P[b, k], G2P[b, k]
            w = w3v[k]
            for r in range(R):
                g = sb[r] * w
                g2[r] = g - h2[r] * h2[r] * g
        for kb in range(0, Hp, UNITS_CPU):
            _panel_tile(G2P, b, 0, W2s[1], H, kb, G1P, b)
        for k in range(H):
            h1, g1 = H1P[b, k], G1P[b, k]
            for r in range(R):
                g = g1[r]
                g1[r] = g - h1[r] * h1[r] * g


@_cpu_jit()
def _slope_pass(XP, blk0, lo, L, mu, row, N, H, mrow, view, WT, W2s, vec, AP, H1P, H2P, G1P,
                G2P, ones, slope):
    """``slope[j] = ∂Q/∂α`` at ``α = mu[j]`` of one critic row, for the panels' transitions."""
    nb, R = H1P.shape[0], H1P.shape[2]
    b3 = _pack_critic(row, N, H, lo, L, mrow, view, WT, W2s, vec)
    _forward_cpu(XP, blk0, lo, L, mu, WT, W2s, vec, b3, H, AP, H1P, H2P, slope)
    _backward_cpu(H1P, H2P, ones, W2s, vec, H, G2P, G1P)
    wa = vec[1]
    zero = slope.dtype.type(0)
    for b in range(nb):
        sb = slope[b * BLOCK_CPU:(b + 1) * BLOCK_CPU]
        for r in range(R):
            sb[r] = zero
        for k in range(H):
            g1 = G1P[b, k]
            w = wa[k]
            for r in range(R):
                sb[r] += w * g1[r]


@_cpu_jit(inline="always")
def _lane_tile(Y, mb, G, k, w, nb, out):
    """``out[m] = Σ_j Y_j[mb+m] · G_j[k] · w_j`` for m < 16, over the transitions j of the
    panels ``Y``, ``G`` (blocks, Hp, 16) and the weights ``w`` (blocks·16,): 16 vector
    accumulators along the transitions, summed across at the end."""
    acc = carray(_stack_empty(256, out), (16, 16))
    zero = out.dtype.type(0)
    for r in range(16):
        acc[0, r] = acc[1, r] = acc[2, r] = acc[3, r] = zero
        acc[4, r] = acc[5, r] = acc[6, r] = acc[7, r] = zero
        acc[8, r] = acc[9, r] = acc[10, r] = acc[11, r] = zero
        acc[12, r] = acc[13, r] = acc[14, r] = acc[15, r] = zero
    for b in range(nb):
        g = G[b, k]
        y = Y[b, mb:mb + 16]
        wb = w[b * 16:b * 16 + 16]
        for r in range(16):
            v = g[r] * wb[r]
            acc[0, r] += v * y[0, r]
            acc[1, r] += v * y[1, r]
            acc[2, r] += v * y[2, r]
            acc[3, r] += v * y[3, r]
            acc[4, r] += v * y[4, r]
            acc[5, r] += v * y[5, r]
            acc[6, r] += v * y[6, r]
            acc[7, r] += v * y[7, r]
            acc[8, r] += v * y[8, r]
            acc[9, r] += v * y[9, r]
            acc[10, r] += v * y[10, r]
            acc[11, r] += v * y[11, r]
            acc[12, r] += v * y[12, r]
            acc[13, r] += v * y[13, r]
            acc[14, r] += v * y[14, r]
            acc[15, r] += v * y[15, r]
    for m in range(16):
        t = acc[m, 0]
        for r in range(1, 16):
            t += acc[m, r]
        out[m] = t


@_cpu_jit()
def _small_grads(H1P, H2P, G1P, G2P, ones, a, delta, H, grad, N):
    """Σ_j of δ ∂Q/∂θ for W2, b1, b2, w3 and W1's α column into the packed ``grad``, by
    :func:`_lane_tile` (``ones`` (blocks·16,); padded transitions carry δ = 0)."""
    nb, Hp = H1P.shape[0], H1P.shape[1]
    ONES = ones.reshape((nb, 1, BLOCK_CPU))
    b1, w2 = H * (N + 1), H * (N + 2)
    b2 = w2 + H * H
    w3 = b2 + H
    out = np.empty(16, dtype=grad.dtype)
    for mb in range(0, Hp, 16):
        M = min(16, H - mb)
        for k in range(H):                               # W2[k, m] = Σ_j e2_j[k] h1_j[m]
            _lane_tile(H1P, mb, G2P, k, ones, nb, out)
            for m in range(M):
                grad[w2 + k * H + mb + m] = out[m]
        for c in range(4):                               # α column, b1, b2, w3
            if c == 0:
                _lane_tile(G1P, mb, ONES, 0, a, nb, out)
            elif c == 1:
                _lane_tile(G1P, mb, ONES, 0, ones, nb, out)
            elif c == 2:
                _lane_tile(G2P, mb, ONES, 0, ones, nb, out)
            else:
                _lane_tile(H2P, mb, ONES, 0, delta, nb, out)
            for m in range(M):
                k = mb + m
                if c == 0:
                    grad[k * (N + 1) + N] = out[m]
                elif c == 1:
                    grad[b1 + k] = out[m]
                elif c == 2:
                    grad[b2 + k] = out[m]
                else:
                    grad[w3 + k] = out[m]


@_cpu_jit()
def _step_row(th, am, av, tb, grad, inv, optimizer, lr, beta1, omb1, beta2, omb2, step_size,
              eps_hat, keep, tau_soft):
    """``scalar.step_param`` over a whole packed row (``grad``: the summed ascent, times ``inv``
    to a mean), vectorised, fused with the soft target update ``tb ← keep·tb + τ·th`` (θ does
    not change between the critic step and the target update)."""
    if optimizer == 0:
        for p in range(th.shape[0]):
            t = th[p] + lr * (grad[p] * inv)
            th[p] = t
            tb[p] = keep * tb[p] + tau_soft * t
    else:
        for p in range(th.shape[0]):
            g = -(grad[p] * inv)
            m = beta1 * am[p] + omb1 * g
            v = beta2 * av[p] + omb2 * g * g
            am[p] = m
            av[p] = v
            t = th[p] - step_size * m / (math.sqrt(v) + eps_hat)
            th[p] = t
            tb[p] = keep * tb[p] + tau_soft * t


@_cpu_jit()
def _panel_block(tau_n, B, T):
    """The first panel block of a neuron's transitions (see :func:`_pack_panels`)."""
    nb = (B + BLOCK_CPU - 1) // BLOCK_CPU
    return tau_n * nb if tau_n >= 0 else T * nb


@_cpu_jit()
def _update_neuron_cpu(n, X2, XP, XnP, A2, MU, SG, MUN, r2, cont2, B, tau, mask, col_lo,
                       col_hi, K, bias, theta, theta_bar, adam_m, adam_v, diag, H, view,
                       optimizer, actor, lr_critic, lr_actor, tau_soft, beta1, beta2, step_size,
                       eps_hat):
    N = K.shape[0]
    T = A2.shape[0] // B
    dt = theta.dtype.type
    zero = dt(0.0)
    one = dt(1.0)
    t0, t1 = 0, T
    if tau[n] >= 0:
        t0 = tau[n]
        t1 = t0 + 1
    s0 = t0 * B
    S = (t1 - t0) * B
    nb = (S + BLOCK_CPU - 1) // BLOCK_CPU
    Spad = nb * BLOCK_CPU
    blk0 = _panel_block(tau[n], B, T)
    Hp = _round_up_cpu(H, UNITS_CPU)
    inv = one / dt(S)
    mrow = mask[n]
    lo, hi = 0, N
    if view == 1:
        lo, hi = col_lo[n], max(col_lo[n], col_hi[n])
    L = hi - lo
    Lp = _round_up_cpu(L, FEATURES_CPU)

    a = np.zeros(Spad, dtype=theta.dtype)
    mu = np.zeros(Spad, dtype=theta.dtype)
    mun = np.zeros(Spad, dtype=theta.dtype)
    for j in range(S):
        a[j] = A2[s0 + j, n]
        mu[j] = MU[s0 + j, n]
        mun[j] = MUN[s0 + j, n]
    WT = np.empty((max(L, 1), Hp), dtype=theta.dtype)
    W2s = np.empty((2, Hp, Hp), dtype=theta.dtype)
    vec = np.empty((4, Hp), dtype=theta.dtype)
    AP = np.empty((nb, Hp, BLOCK_CPU), dtype=theta.dtype)
    H1P = np.empty((nb, Hp, BLOCK_CPU), dtype=theta.dtype)
    H2P = np.empty((nb, Hp, BLOCK_CPU), dtype=theta.dtype)
    G1P = np.empty((nb, Hp, BLOCK_CPU), dtype=theta.dtype)
    G2P = np.empty((nb, Hp, BLOCK_CPU), dtype=theta.dtype)
    q = np.empty(Spad, dtype=theta.dtype)
    qbar = np.empty(Spad, dtype=theta.dtype)
    delta = np.zeros(Spad, dtype=theta.dtype)

    # -- critic: TD errors and the semi-gradient ---------------------------------------------
    rowb = theta_bar[n]
    bb3 = _pack_critic(rowb, N, H, lo, L, mrow, view, WT, W2s, vec)
    _forward_cpu(XnP, blk0, lo, L, mun, WT, W2s, vec, bb3, H, AP, H1P, H2P, qbar)
    row = theta[n]
    c3 = _pack_critic(row, N, H, lo, L, mrow, view, WT, W2s, vec)
    _forward_cpu(XP, blk0, lo, L, a, WT, W2s, vec, c3, H, AP, H1P, H2P, q)
    sum_e = zero
    sum_abs = zero
    for j in range(S):
        e = r2[s0 + j] + cont2[s0 + j] * qbar[j] - q[j]
        delta[j] = e
        sum_e += e
        sum_abs += abs(e)
    _backward_cpu(H1P, H2P, delta, W2s, vec, H, G2P, G1P)   # δ ∂Q/∂a2, δ ∂Q/∂a1

    grad = np.zeros(theta.shape[1], dtype=theta.dtype)      # Σ δ ∂Q/∂θ, packed
    # W1's features [lo, hi) from a window of Lp columns of the padded rows X2 (shifted left
    # where it would run past them); masked features get an exact zero
    wlo = min(lo, X2.shape[1] - Lp)
    GW = np.empty((Hp, max(Lp, 1)), dtype=theta.dtype)
    _grad_w1(G1P, X2, s0, S, wlo, Lp, GW)
    fm = mrow[lo:hi]
    for k in range(H):
        dst = grad[k * (N + 1) + lo:k * (N + 1) + hi]
        src = GW[k, lo - wlo:lo - wlo + L]
        if view == 0:
            for i in range(L):
                dst[i] = src[i]
        else:
            for i in range(L):
                dst[i] = src[i] if fm[i] != 0 else zero
    ones = np.ones(Spad, dtype=theta.dtype)
    _small_grads(H1P, H2P, G1P, G2P, ones, a, delta, H, grad, N)
    grad[grad.shape[0] - 1] = sum_e                          # b3
    _step_row(row, adam_m[n], adam_v[n], rowb, grad, inv, optimizer, lr_critic, beta1,
              one - beta1, beta2, one - beta2, step_size, eps_hat, one - tau_soft, tau_soft)

    # -- actor, with the updated critic -----------------------------------------------------
    slope = np.empty(Spad, dtype=theta.dtype)
    _slope_pass(XP, blk0, lo, L, mu, row, N, H, mrow, view, WT, W2s, vec, AP, H1P, H2P, G1P,
                G2P, ones, slope)
    sum_slope = zero
    sum_s = zero
    for j in range(S):
        s = slope[j] * SG[s0 + j, n]
        sum_slope += slope[j]
        sum_s += s
        q[j] = s                                            # reused: s = g σ'(y)
    if actor:
        klo, khi = col_lo[n], max(col_lo[n], col_hi[n])
        KL = khi - klo
        KLp = _round_up_cpu(KL, FEATURES_CPU)
        wlo = min(klo, X2.shape[1] - KLp)                  # a window of whole tiles, as for W1
        acc = np.empty(max(KLp, 1), dtype=theta.dtype)     # Σ s V[m], the row of K's step
        _row_sum(q, X2, s0, S, wlo, KLp, acc)
        krow = K[n, klo:khi]
        fk = mrow[klo:khi]
        src = acc[klo - wlo:klo - wlo + KL]
        for m in range(KL):
            step = lr_actor * (src[m] * inv)
            krow[m] += step if fk[m] != 0 else zero
        bias[n] += lr_actor * (sum_s * inv)
    diag[n, 0] = sum_e * inv
    diag[n, 1] = sum_abs * inv
    diag[n, 2] = sum_slope * inv


def _update_cpu_body(X2, XP, XnP, A2, MU, SG, MUN, r2, cont2, B, tau, mask, col_lo, col_hi, K,
                     bias, theta, theta_bar, adam_m, adam_v, diag, n_inputs, H, view, optimizer,
                     actor, lr_critic, lr_actor, tau_soft, beta1, beta2, step_size, eps_hat):
    N = K.shape[0]
    for n in prange(N):
        if n < n_inputs:
            diag[n, 0] = 0.0
            diag[n, 1] = 0.0
            diag[n, 2] = 0.0
        else:
            _update_neuron_cpu(n, X2, XP, XnP, A2, MU, SG, MUN, r2, cont2, B, tau, mask, col_lo,
                               col_hi, K, bias, theta, theta_bar, adam_m, adam_v, diag, H, view,
                               optimizer, actor, lr_critic, lr_actor, tau_soft, beta1, beta2,
                               step_size, eps_hat)


_update_cpu_serial = _compiled(_update_cpu_body, "_update_mlp_cpu_serial")
_update_cpu_parallel = _compiled(_update_cpu_body, "_update_mlp_cpu_parallel", parallel=True)


# Below this many multiply-adds per call (a few ms of serial work) the parallel region's start,
# join and imbalance over N neurons cost more than the split saves: measured on a 2-core machine,
# 16 × 4 × 16 (causal, 1e5 multiply-adds) took 0.17 ms serial and 11 ms parallel, and parallel
# did not pay off up to 5e8 there; with more idle cores the split pays earlier.
PARALLEL_MIN_WORK = 1 << 22


def _scalars(theta, cfg, step):
    """The float scalars every compiled face takes, in the parameters' float type."""
    step_size, eps_hat = cfg.adam_scalars(step)
    ft = np.float32 if theta.dtype == np.float32 else np.float64
    return tuple(ft(v) for v in (cfg.lr_critic, cfg.lr_actor, cfg.tau_soft, cfg.beta1, cfg.beta2,
                                 step_size, eps_hat))


def update_work(S, N, H):
    """Multiply-adds of one update with S transitions per neuron (the module docstring's count)."""
    return S * N * (4 * H * (N + 1) + 6 * H * H + N)


def _rows(a, dtype, width=None):
    """``(T, B, N)`` as C-contiguous ``(T·B, N)`` rows of ``dtype``; with ``width``, zero
    columns appended up to it (the gradient tiles read whole blocks of FEATURES_CPU features)."""
    rows = np.ascontiguousarray(a.reshape(-1, a.shape[-1]), dtype=dtype)
    if width is None or width == rows.shape[1]:
        return rows
    padded = np.zeros((rows.shape[0], width), dtype=dtype)
    padded[:, :rows.shape[1]] = rows
    return padded


def update_mlp_cpu(Vs, ys, alphas, Vn, yn, r, cont, tau, mask, col_lo, col_hi, K, bias, theta,
                   theta_bar, adam_m, adam_v, diag, n_inputs, activation, cfg, step):
    """Fused MLP-critic update on the CPU (arrays updated in place); returns ``diag``.

    Same arguments as :func:`update_mlp_reference`; float32 (the library's dtype) or float64
    arrays, all of one dtype. ``adam_m``/``adam_v`` None are allowed under SGD (a placeholder is
    passed, never read or written). Under the presynaptic view the features of neuron n are
    read from ``[col_lo[n], col_hi[n])``, which must hold its mask row (as for K's step).
    """
    T, B, N = Vs.shape
    H = mlp_hidden(N, theta.shape[1])
    if adam_m is None or adam_v is None:
        adam_m = adam_v = theta
    view, optimizer = cfg.codes
    dtype = theta.dtype
    X2 = _rows(Vs, dtype, _round_up(N, FEATURES_CPU))
    Xn2 = _rows(Vn, dtype)
    agents = np.asarray(tau)[int(n_inputs):]
    causal, internal = bool((agents >= 0).any()), bool((agents < 0).any())
    XP = np.empty((_panel_blocks(B, T, internal), N, BLOCK_CPU), dtype=dtype)
    XnP = np.empty_like(XP)
    _pack_panels(X2, N, B, T, causal, internal, XP)
    _pack_panels(Xn2, N, B, T, causal, internal, XnP)
    y2, yn2 = _rows(ys, dtype), _rows(yn, dtype)
    MU, SG, MUN = (np.empty_like(y2) for _ in range(3))
    _actions_cpu(y2, yn2, int(activation), MU, SG, MUN)
    per_neuron = (T if internal else 1) * B
    kernel = (_update_cpu_parallel if update_work(per_neuron, N, H) >= PARALLEL_MIN_WORK
              else _update_cpu_serial)
    kernel(X2, XP, XnP, _rows(alphas, dtype), MU, SG, MUN,
           np.ascontiguousarray(r, dtype=dtype).reshape(-1),
           np.ascontiguousarray(cont, dtype=dtype).reshape(-1), B, tau, mask, col_lo, col_hi, K,
           bias, theta, theta_bar, adam_m, adam_v, diag, int(n_inputs), H, view, optimizer,
           bool(cfg.actor), *_scalars(theta, cfg, step))
    return diag


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


def update_mlp_cuda(Vs, ys, alphas, Vn, yn, r, cont, tau, mask, col_lo, col_hi, K, bias, theta,
                    theta_bar, adam_m, adam_v, diag, n_inputs, activation, cfg, step, work=None,
                    stream=0):
    """Fused MLP-critic update on the GPU (CuPy arrays; NumPy arrays in the simulator), float32.

    Same arguments as :func:`update_mlp_reference`, all on the device (``tau``, ``col_lo``,
    ``col_hi`` too). One launch of N blocks × (MAX_HIDDEN × TILE_S) threads; needs
    H ≤ MAX_HIDDEN. ``work``: an optional float32 scratch ``(N, P)`` (allocated here when None;
    pass one to keep the call free of allocations, e.g. under CUDA-graph capture). Its content
    on entry does not matter.
    """
    T, B, N = Vs.shape
    H = mlp_hidden(N, theta.shape[1])
    _check_hidden_cuda(H)
    if adam_m is None or adam_v is None:
        adam_m = adam_v = theta
    if work is None:
        work = array_module(theta).empty(theta.shape, dtype=np.float32)
    elif tuple(work.shape) != tuple(theta.shape):
        raise ValueError(f"update_mlp_cuda: work has shape {tuple(work.shape)}, expected "
                          f"{tuple(theta.shape)} (the shape of theta)")
    view, optimizer = cfg.codes
    _update_kernel[(max(1, N),), (MAX_HIDDEN, TILE_S), stream](
        Vs, ys, alphas, Vn, yn, r, cont, tau, mask, col_lo, col_hi, K, bias, theta, theta_bar,
        adam_m, adam_v, diag, work, np.int32(n_inputs), np.int32(activation), np.int32(H),
        np.int32(view), np.int32(optimizer), bool(cfg.actor), *_scalars(theta, cfg, step))
    return diag


FACES = {"numpy": update_mlp_reference, "cpu": update_mlp_cpu, "cuda": update_mlp_cuda}
"""The update face each backend runs (:mod:`leaky.core.backend` names)."""

# Signatures the PTX test compiles for sm_80 and sm_90 (tests/kernels/test_ptx.py): (kernel, [sig, …]).
_F1, _F2, _F3, _I1 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]", "int32[::1]"
CUDA_KERNELS = [
    (_update_kernel, [f"void({_F3}, {_F3}, {_F3}, {_F3}, {_F3}, {_F2}, {_F2}, {_I1}, {_F2}, "
                      f"{_I1}, {_I1}, {_F2}, {_F1}, {_F2}, {_F2}, {_F2}, {_F2}, {_F2}, {_F2}, "
                      f"int32, int32, int32, int32, int32, boolean, float32, float32, float32, "
                      f"float32, float32, float32, float32)"]),
]
