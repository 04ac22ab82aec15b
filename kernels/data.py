"""The named tuples several kernel families take: transitions, topology, the actor's rows and the
per-neuron critics' state. Their fields are arrays of the face's module (NumPy for the reference
and cpu faces, CuPy, or NumPy in the simulator, for the cuda faces); a face reads them, and
changes in place only what its docstring says.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Transitions(NamedTuple):
    """A batch of transitions of every neuron: what the per-neuron critic updates read.

    V, y, alpha : (T, B, N)   state voltages, pre-activations after inhibition, actions taken
    V_next, y_next : (T, B, N)  next-state voltages and pre-activations (μ(x') = σ(y_next))
    reward, cont : (T, B)      reward, and discount × continuation γ'·(1 − terminated)
    delta : (T, B) or None     the shared TD error (the ``dopamine`` baseline of
                               kernels/update_local; None otherwise, and for kernels/update_mlp)
    """

    V: Any
    y: Any
    alpha: Any
    V_next: Any
    y_next: Any
    reward: Any
    cont: Any
    delta: Any = None


class Topology(NamedTuple):
    """What a per-neuron update reads of the network's wiring.

    tau : (N,) int32   each neuron's slice: its decision step (``causal`` clock), or −1 for all
                       slices (``internal`` clock; the credit update needs decision steps)
    mask : (N, N)      0/1, ``mask[n, m]``: connection from m to n
    col_lo, col_hi : (N,) int32  the half-open range of presynaptic columns that can be non-zero
                       in each row of K (the references read the mask only)
    """

    tau: Any
    mask: Any
    col_lo: Any
    col_hi: Any


class ActorRows(NamedTuple):
    """The network's parameters a per-neuron update steps in place: K (N, N), stored masked, and
    bias (N,). Neuron n writes only row n and ``bias[n]``."""

    K: Any
    bias: Any


class CriticState(NamedTuple):
    """Every neuron's critic, one packed row per neuron, all of one shape ``(N, P)``: the critic
    ``theta``, its soft-updated target ``theta_bar`` and Adam's moments (None under SGD, where
    they are never read). The row layout is the family's (``critic_layout``, ``mlp_layout``)."""

    theta: Any
    theta_bar: Any
    adam_m: Any = None
    adam_v: Any = None


class UpdateOut(NamedTuple):
    """What a per-neuron update writes besides the state it steps: ``diag (N, 3)``, per neuron the
    mean TD error (or residual), its mean absolute value and the mean slope ``∂Q_n/∂α`` (zeros on
    sensors); ``work``, the compiled faces' scratch (None: made at the call; the reference
    needs none). A scratch is made by the family's ``workspace`` and may be reused between calls
    of one shape; its contents on entry do not matter."""

    diag: Any
    work: Any = None


def array_module(a):
    """The array module of ``a``: NumPy, or the module of a device array (CuPy), found from the
    array's type, so that no kernel module imports CuPy itself."""
    import sys

    import numpy as np

    if isinstance(a, np.ndarray):
        return np
    return sys.modules[type(a).__module__.split(".")[0]]
