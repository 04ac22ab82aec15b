"""The call boundary of the fused local update: the option codes, the critic layout, the transitions
the faces read, and the learner-side helpers on them (record slices, critic values, masks)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

try:  # the cuda face needs numba-cuda; the others do not
    from numba import cuda
except ImportError:  # pragma: no cover
    cuda = None

from leaky.kernels.scalar import sigma


FAMILIES = {"linear": 0, "advantage": 1}
VIEWS = {"all": 0, "presynaptic": 1}
BASELINES = {"own": 0, "dopamine": 1}
OPTIMIZERS = {"sgd": 0, "adam": 1}
CLOCKS = ("causal", "internal")

# ---------------------------------------------------------------------------------------------
# configuration, layout and the learner-side helpers
# ---------------------------------------------------------------------------------------------

class CriticLayout(NamedTuple):
    """Columns of the packed critic row ``[w (N) | p (N) | c | u | h]``."""

    w: slice
    p: slice
    c: int
    u: int
    h: int
    width: int


def critic_layout(N: int) -> CriticLayout:
    """Where each critic parameter lives in a row of ``theta`` (N, 2N+3)."""
    return CriticLayout(slice(0, N), slice(N, 2 * N), 2 * N, 2 * N + 1, 2 * N + 2, 2 * N + 3)


class Transitions(NamedTuple):
    """The arguments :func:`update_local_reference` and its faces take about the data.

    V, y, alpha : (T, B, N)   state voltages, pre-activations after inhibition, actions taken
    V_next, y_next : (T, B, N)  next-state voltages and pre-activations (μ(x') = σ(y_next))
    reward, cont : (T, B)      reward, and discount × continuation γ'·(1 − terminated)
    """

    V: Any
    y: Any
    alpha: Any
    V_next: Any
    y_next: Any
    reward: Any
    cont: Any


def record_slices(tau, T: int) -> np.ndarray:
    """The slice whose transition :func:`critic_values` reports for each neuron: ``tau[n]``
    (``causal``), or the last one, ``T - 1``, the internal step that receives the reward
    (``internal``: ``tau[n] = -1``)."""
    tau = tau.get() if hasattr(tau, "get") else np.asarray(tau)   # CuPy: to the host
    return np.where(tau < 0, T - 1, tau)


def critic_values(tr: Transitions, delta, tau, mask, theta, theta_bar, n_inputs, activation,
                  cfg, xp):
    """Every neuron's critic value and TD error on its transition of each batch row, as the
    update about to learn from them computes them (the critic before the step).

    ``baseline="own"``: ``q = Q_n(x, α)`` and ``δ = r + cont·Q̄_n(x', μ_n(x')) − Q_n(x, α)``
    (the advantage or linear family of the module docstring). ``baseline="dopamine"``: ``q`` is
    the neuron's advantage ``A_n(x, α)`` and ``δ`` its residual ``δ_shared − A_n``, what it
    regresses. The transition of neuron n is that of slice :func:`record_slices`.

    Parameters
    ----------
    tr : Transitions (T, B, N), as the update takes them
    delta : (T, B) the shared TD error (``dopamine``; else unused, may be None)
    tau, mask, theta, theta_bar, n_inputs, activation : as :func:`update_local_reference`
    cfg : UpdateConfig (family, view, baseline)
    xp : the arrays' module (NumPy or CuPy)

    Returns
    -------
    q, td : (B, N) arrays of the transitions' dtype; NaN in the sensor columns.
    """
    family, view, baseline, _ = cfg.codes
    T, B, N = tr.V.shape
    lay = critic_layout(N)
    dt = tr.V.dtype
    q = xp.full((B, N), np.nan, dtype=dt)
    td = xp.full((B, N), np.nan, dtype=dt)
    act = lambda v: sigma(v, int(activation), xp)  # noqa: E731
    slices = record_slices(tau, T)
    agents = np.arange(int(n_inputs), N)
    for t in np.unique(slices[agents]):
        idx_np = agents[slices[agents] == t]
        idx = xp.asarray(idx_np)
        feat = (mask[idx] != 0).astype(dt) if view == 1 else xp.ones((idx_np.size, N), dtype=dt)
        th, thb = theta[idx].astype(dt), theta_bar[idx].astype(dt)
        X, Xn = tr.V[t], tr.V_next[t]
        a = tr.alpha[t][:, idx]
        d = a - act(tr.y[t][:, idx])
        c, u, h = th[:, lay.c], th[:, lay.u], th[:, lay.h]
        px = X @ (th[:, lay.p] * feat).T
        if family == 1:
            A = d * (u + px) + 0.5 * h * d * d
        else:
            A = u * d
        if baseline == 1:
            Q, e = A, xp.asarray(delta, dtype=dt)[t][:, None] - A
        else:
            wx = X @ (th[:, lay.w] * feat).T
            wbx = Xn @ (thb[:, lay.w] * feat).T
            cont = tr.cont[t][:, None]
            if family == 1:
                Q = wx + c + A
                boot = wbx + thb[:, lay.c]
            else:
                Q = wx + u * a + c
                boot = wbx + thb[:, lay.u] * act(tr.y_next[t][:, idx]) + thb[:, lay.c]
            e = tr.reward[t][:, None] + cont * boot - Q
        q[:, idx] = Q
        td[:, idx] = e
    return q, td


def _masks(family, view, baseline, mask_row):
    """Per column of a critic row: (trained, owned) booleans; the reference's bookkeeping."""
    N = mask_row.shape[0]
    lay = critic_layout(N)
    feat = mask_row if view == 1 else np.ones(N, dtype=bool)
    owned = np.zeros(lay.width, dtype=bool)
    owned[lay.w] = feat
    owned[[lay.c, lay.u]] = True
    if family == 1:
        owned[lay.p] = feat
        owned[lay.h] = True
    trained = owned.copy()
    if baseline == 1:
        trained[lay.w] = False
        trained[lay.c] = False
    return trained, owned
