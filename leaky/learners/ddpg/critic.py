"""The DDPG critic: an MLP ``Q(s, a)`` with ReLU hidden layers, forward and backward by hand, and
the soft target update."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from leaky.core.backend import Backend, get_backend


# ---------------------------------------------------------------------------------------------
# Critic: an MLP Q(s, a) with ReLU hidden layers, forward and backward by hand
# ---------------------------------------------------------------------------------------------


class Critic:
    """``Q(s, a) = W_L ᵀ relu(… relu(W_1ᵀ [s, a] + c_1) …) + c_L``, a scalar per row.

    Parameters
    ----------
    n_obs, n_act : int
        d_obs and d_act; the input is the concatenation ``[s, a]`` (raw observation, action in
        the environment's units).
    hidden : sequence of int
        Hidden widths (default DDPG: 400, 300).
    backend : Backend or str
    seed : int or numpy.random.SeedSequence
        Initialisation as PyTorch's ``nn.Linear`` (CleanRL): ``W, c ~ U(±1/√fan_in)``, drawn on
        the host so every backend starts from the same numbers.

    Attributes
    ----------
    params : list of arrays ``[W_1 (in, h_1), c_1 (h_1,), …, W_L (h_{L-1}, 1), c_L (1,)]``
    """

    def __init__(self, n_obs: int, n_act: int, hidden: Sequence[int] = (400, 300),
                 backend: Backend | str = "numpy", seed=0):
        self.backend = be = get_backend(backend)
        self.n_obs, self.n_act = int(n_obs), int(n_act)
        self.hidden = tuple(int(h) for h in hidden)
        rng = np.random.default_rng(seed)
        sizes = (self.n_obs + self.n_act,) + self.hidden + (1,)
        self.params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / np.sqrt(fan_in)
            self.params.append(be.asarray(rng.uniform(-bound, bound, (fan_in, fan_out))))
            self.params.append(be.asarray(rng.uniform(-bound, bound, fan_out)))

    @property
    def xp(self):
        return self.backend.xp

    def copy(self) -> "Critic":
        """A deep copy (a target network)."""
        other = object.__new__(Critic)
        other.backend, other.n_obs, other.n_act, other.hidden = (self.backend, self.n_obs,
                                                                 self.n_act, self.hidden)
        other.params = [p.copy() for p in self.params]
        return other

    def forward(self, obs, action):
        """Q for every row.

        Parameters
        ----------
        obs : (B, d_obs);  action : (B, d_act)

        Returns
        -------
        q : (B,) values;  cache : the layer inputs, for :meth:`backward`
        """
        h = self.xp.concatenate([obs, action], axis=1)
        inputs = []
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            inputs.append(h)
            h = h @ self.params[2 * i] + self.params[2 * i + 1]
            if i < n_layers - 1:
                h = self.xp.maximum(h, 0.0)
        return h[:, 0], inputs

    def backward(self, cache, g_q, param_grads: bool = True):
        """Gradients of ``L`` given ``g_q = ∂L/∂q`` (B,).

        Returns
        -------
        grads : list like ``params`` (None when ``param_grads`` is False)
        g_action : (B, d_act) ∂L/∂a
        """
        g = g_q[:, None]
        n_layers = len(self.params) // 2
        grads = [None] * len(self.params)
        for i in range(n_layers - 1, -1, -1):
            x = cache[i]
            if param_grads:
                grads[2 * i] = x.T @ g
                grads[2 * i + 1] = g.sum(axis=0)
            g = g @ self.params[2 * i].T
            if i > 0:
                g = g * (x > 0)  # x is the ReLU output of the layer below
        return (grads if param_grads else None), g[:, self.n_obs:]

    def soft_update_from(self, source: "Critic", tau: float) -> None:
        """Polyak averaging: ``θ' ← τ θ + (1 - τ) θ'`` (in place)."""
        soft_update(self.params, source.params, tau)


def soft_update(target: Sequence[Any], source: Sequence[Any], tau: float) -> None:
    """``target ← τ·source + (1 - τ)·target``, element-wise and in place."""
    for t, s in zip(target, source):
        t *= 1.0 - tau
        t += tau * s
