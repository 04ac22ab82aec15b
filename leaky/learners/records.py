"""Per-neuron critic data a learner hands to the training loop for the trace.

The hook every learner has (``leaky.training.loop`` calls it once per environment step when a trace is
written; docs/trace-format.md, "Critic values and TD errors")::

    learner.record_critic = True       # set by the loop: compute the record (costs a little)
    rec = learner.critic_record()      # CriticRecord or None, and forget it
    rec.lag                            # 0: the transition observed at this env step,
                                       # 1: the previous step's (learned one step late)
    rec.q_local, rec.td_error          # (B, N): per environment, per neuron

A learner without such data returns None, and the trace keeps NaN there. A subclass inherits
the hook with the methods that compute it (``observe`` for DDPG, ``learn`` for the local and
perturbation learners).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CriticRecord:
    """Critic values and TD errors of one transition of every environment.

    Attributes
    ----------
    lag : int
        Which environment step the transition is: 0 the one just observed, 1 the one before.
    q_local : (B, N) backend array
        Per-neuron critic value (NaN for neurons without one, e.g. the sensors).
    td_error : (B, N) backend array
        Per-neuron TD error ``δ = target − value`` (NaN likewise).
    """

    lag: int
    q_local: Any
    td_error: Any


def broadcast_to_agents(values, n_inputs: int, n_neurons: int, xp):
    """``(B,)`` values of a critic every neuron shares, as ``(B, N)``: the same value in every
    agent column, NaN in the sensor columns (sensors are not agents)."""
    values = xp.asarray(values).reshape(-1)
    out = xp.full((values.shape[0], n_neurons), np.nan, dtype=values.dtype)
    out[:, n_inputs:] = values[:, None]
    return out
