"""The call boundary of the MLP-critic update: what every face takes and writes.

Every face is ``update_mlp_<face>(tr, top, actor, critic, sc, out)``: the ``kernels.data``
named tuples :class:`Transitions` (``delta`` is not read), :class:`Topology`,
:class:`ActorRows` and :class:`CriticState` (the two it steps in place), :class:`MLPScalars`
below and the :class:`UpdateOut` it writes; the cuda face takes ``stream`` too (keyword-only).
Here too: the option codes, the cuda face's bounds and the critic layout (:class:`MLPLayout`).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from leaky.kernels.data import ActorRows, CriticState, Topology, Transitions, UpdateOut

__all__ = ["ActorRows", "CLOCKS", "CriticState", "MAX_HIDDEN", "MLPLayout", "MLPScalars", "NTHREADS",
           "OPTIMIZERS", "TILE_S", "Topology", "Transitions", "UpdateOut", "VIEWS", "mlp_hidden",
           "mlp_layout", "unpack_mlp"]


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

class MLPScalars(NamedTuple):
    """Scalars of one MLP-critic update.

    n_inputs, activation : the sensor count and the kernels/scalar.py activation code
    view, optimizer : codes of :data:`VIEWS` and :data:`OPTIMIZERS`
    actor : take the actor step (False: the critics learn, the rows of K and the biases stay)
    lr_critic, lr_actor, tau_soft : step sizes and the soft target rate
    beta1, beta2 : Adam's moment decay rates
    step_size, eps_hat : Adam with the bias corrections of this step folded in
        (``kernels.scalar.adam_scalars``); under SGD ``(lr_critic, 0)``
    """

    n_inputs: int
    activation: int
    view: int
    optimizer: int
    actor: bool
    lr_critic: float
    lr_actor: float
    tau_soft: float
    beta1: float
    beta2: float
    step_size: float
    eps_hat: float


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
