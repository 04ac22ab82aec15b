"""The cpu face: numba.njit, parallel over neurons; per neuron, its transitions as small matrix
products held in panels."""

from __future__ import annotations

import math

import numpy as np
from numba import carray, prange
from numba import types as nbtypes
from numba.extending import overload

from leaky.kernels.jit import FASTMATH as _FAST
from leaky.kernels.jit import cpu_jit as _cpu_jit
from leaky.kernels.jit import compiled as _compiled
from leaky.kernels.jit import fmuladd as _fma
from leaky.kernels.jit import stack_empty as _stack_empty
from leaky.kernels.scalar import adam_step as _adam_step
from leaky.kernels.scalar import tanh32 as _tanh32
from leaky.kernels.update_mlp.boundary import (ActorRows, CriticState, MLPScalars, Topology, Transitions, UpdateOut,
                                               mlp_hidden)

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
    kernels/update_local/cpu.py's outer tiles).
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
            m, v, d = _adam_step(am[p], av[p], -(grad[p] * inv), beta1, omb1, beta2, omb2, step_size,
                                 eps_hat)
            am[p] = m
            av[p] = v
            t = th[p] - d
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


def _scalars(theta, sc):
    """The float scalars every compiled face takes, in the parameters' float type."""
    ft = np.float32 if theta.dtype == np.float32 else np.float64
    return tuple(ft(v) for v in (sc.lr_critic, sc.lr_actor, sc.tau_soft, sc.beta1, sc.beta2,
                                 sc.step_size, sc.eps_hat))


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


def update_mlp_cpu(tr: Transitions, top: Topology, actor: ActorRows, critic: CriticState,
                   sc: MLPScalars, out: UpdateOut):
    """Fused MLP-critic update on the CPU (arrays stepped in place); returns ``out.diag``.

    Same arguments as :func:`update_mlp_reference`; float32 (the library's dtype) or float64
    arrays, all of one dtype. Adam moments None are allowed under SGD (a placeholder is passed,
    never read or written). Under the presynaptic view the features of neuron n are read from
    ``[col_lo[n], col_hi[n])``, which must hold its mask row (as for K's step). ``out.work`` is
    not read (the panels are made at every call).
    """
    T, B, N = tr.V.shape
    theta, theta_bar, adam_m, adam_v = critic
    tau = top.tau
    H = mlp_hidden(N, theta.shape[1])
    if adam_m is None or adam_v is None:
        adam_m = adam_v = theta
    dtype = theta.dtype
    X2 = _rows(tr.V, dtype, _round_up(N, FEATURES_CPU))
    Xn2 = _rows(tr.V_next, dtype)
    agents = np.asarray(tau)[int(sc.n_inputs):]
    causal, internal = bool((agents >= 0).any()), bool((agents < 0).any())
    XP = np.empty((_panel_blocks(B, T, internal), N, BLOCK_CPU), dtype=dtype)
    XnP = np.empty_like(XP)
    _pack_panels(X2, N, B, T, causal, internal, XP)
    _pack_panels(Xn2, N, B, T, causal, internal, XnP)
    y2, yn2 = _rows(tr.y, dtype), _rows(tr.y_next, dtype)
    MU, SG, MUN = (np.empty_like(y2) for _ in range(3))
    _actions_cpu(y2, yn2, int(sc.activation), MU, SG, MUN)
    per_neuron = (T if internal else 1) * B
    kernel = (_update_cpu_parallel if update_work(per_neuron, N, H) >= PARALLEL_MIN_WORK
              else _update_cpu_serial)
    kernel(X2, XP, XnP, _rows(tr.alpha, dtype), MU, SG, MUN,
           np.ascontiguousarray(tr.reward, dtype=dtype).reshape(-1),
           np.ascontiguousarray(tr.cont, dtype=dtype).reshape(-1), B, tau, top.mask, top.col_lo,
           top.col_hi, actor.K, actor.bias, theta, theta_bar, adam_m, adam_v, out.diag,
           int(sc.n_inputs), H, sc.view, sc.optimizer, bool(sc.actor), *_scalars(theta, sc))
    return out.diag
