"""The call boundary of the fused local update: what every face takes and writes.

Every face is ``update_local_<face>(tr, top, actor, critic, sc, out)``: the
``kernels.data`` named tuples :class:`Transitions` (``delta`` read under the ``dopamine``
baseline only), :class:`Topology`, :class:`ActorRows` and :class:`CriticState` (the two it
steps in place), :class:`LocalScalars` below and the :class:`UpdateOut` it writes. A face's own
options are keyword-only (``sched`` and ``stream`` of the cuda face). Here too: the option
codes, the critic layout and the helpers on them (record slices, critic values, masks).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from leaky.kernels.data import ActorRows, CriticState, Topology, Transitions, UpdateOut
from leaky.kernels.scalar import sigma

__all__ = ["ActorRows", "BASELINES", "CLOCKS", "CriticLayout", "CriticState", "FAMILIES", "LocalScalars",
           "OPTIMIZERS", "Topology", "Transitions", "UpdateOut", "VIEWS", "critic_layout", "critic_values",
           "record_slices"]


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


class LocalScalars(NamedTuple):
    """Scalars of one local update.

    n_inputs, activation : the sensor count and the kernels/scalar.py activation code
    family, view, baseline, optimizer : codes of :data:`FAMILIES`, :data:`VIEWS`,
        :data:`BASELINES`, :data:`OPTIMIZERS`
    lr_critic, lr_actor, tau_soft : step sizes and the soft target rate
    beta1, beta2 : Adam's moment decay rates
    step_size, eps_hat : Adam with the bias corrections of this step folded in
        (``kernels.scalar.adam_scalars``); under SGD ``(lr_critic, 0)``
    """

    n_inputs: int
    activation: int
    family: int
    view: int
    baseline: int
    optimizer: int
    lr_critic: float
    lr_actor: float
    tau_soft: float
    beta1: float
    beta2: float
    step_size: float
    eps_hat: float


def record_slices(tau, T: int) -> np.ndarray:
    """The slice whose transition :func:`critic_values` reports for each neuron: ``tau[n]``
    (``causal``), or the last one, ``T - 1``, the internal step that receives the reward
    (``internal``: ``tau[n] = -1``)."""
    tau = tau.get() if hasattr(tau, "get") else np.asarray(tau)   # CuPy: to the host
    return np.where(tau < 0, T - 1, tau)


def critic_values(tr: Transitions, top: Topology, critic: CriticState, sc: LocalScalars, xp):
    """Every neuron's critic value and TD error on its transition of each batch row, as the
    update about to learn from them computes them (the critic before the step).

    ``baseline="own"``: ``q = Q_n(x, α)`` and ``δ = r + cont·Q̄_n(x', μ_n(x')) − Q_n(x, α)``
    (the advantage or linear family of the package docstring). ``baseline="dopamine"``: ``q``
    is the neuron's advantage ``A_n(x, α)`` and ``δ`` its residual ``tr.delta − A_n``, what it
    regresses. The transition of neuron n is that of slice :func:`record_slices`. Arguments as
    the faces take them (only ``tau`` and ``mask`` of ``top``, ``theta`` and ``theta_bar`` of
    ``critic`` are read); ``xp`` is the arrays' module (NumPy or CuPy).

    Returns
    -------
    q, td : (B, N) arrays of the transitions' dtype; NaN in the sensor columns.
    """
    family, view, baseline = sc.family, sc.view, sc.baseline
    tau, mask, theta, theta_bar = top.tau, top.mask, critic.theta, critic.theta_bar
    n_inputs, activation = sc.n_inputs, sc.activation
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
            Q, e = A, xp.asarray(tr.delta, dtype=dt)[t][:, None] - A
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
