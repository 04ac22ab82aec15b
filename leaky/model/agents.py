"""Every neuron an agent: the sub-environment ``T^n`` a single neuron acts in (paper §2.2).

Neuron n sees the network's voltages ``V`` (its state), takes the action
``α_n = σ(Θ(V Kᵀ + b))_n + ξ_n`` from its own row of K, and the rest of the world, the other
neurons (with their own exploration noise), the leak and, at the end of an environment step,
the environment through the sensors, moves the state to ``V'``. Theorem 2.2.1 in its checkable
form: stepping every neuron through its own ``T^n`` reproduces the network's trajectory, which
``tests/model/test_agents.py`` holds. Written per neuron, in float64, independently of the kernels.
"""

from __future__ import annotations

import numpy as np

from leaky.core.backend import to_numpy

# σ written again here on purpose, not taken from kernels/scalar.py: the theorem check shares no
# code with the kernels it checks.
_ACT = {"tanh": np.tanh, "relu": lambda y: np.maximum(y, 0.0), "identity": lambda y: y}


class NeuronView:
    """The fixed parts of the world shared by every neuron's sub-environment (float64 NumPy)."""

    def __init__(self, net):
        P = net.parameters()
        self.K, self.b, self.leak = P["K"].astype(np.float64), P["b"].astype(np.float64), P["leak"].astype(np.float64)
        cfg = net.config
        self.n_inputs = cfg.n_inputs
        self.pulse = cfg.input_mode == "pulse"
        self.sigma = _ACT[cfg.activation]
        self.divisive = cfg.inhibition == "divisive"
        self.kappa = cfg.kappa
        self.N = cfg.n_neurons

    def preactivation(self, V, n):
        """y_n = Θ(z)_n for every batch row, where z_n = K[n]·V + b_n."""
        z_n = V @ self.K[n] + self.b[n]
        if not self.divisive:
            return z_n
        z_all = V @ self.K.T + self.b
        return z_n / (1.0 + self.kappa * np.abs(z_all[:, self.n_inputs:]).mean(axis=1))

    def action(self, V, n, xi_n):
        """α_n: neuron n's action in state V with its exploration noise ξ_n (B,)."""
        a = self.sigma(self.preactivation(V, n))
        return a if n < self.n_inputs else a + xi_n


def sub_environment_step(view: NeuronView, n: int, V, alpha_n, xi, u=None, u_next=None):
    """``T^n``: next state of neuron n's sub-environment after it takes ``alpha_n``.

    Parameters
    ----------
    V : (B, N) the state (voltages at an internal step)
    alpha_n : (B,) neuron n's action
    xi : (B, N) the noise of the other neurons at this internal step (part of T^n's randomness)
    u : (B, n_inputs) the current encoded observation (re-clamped in clamp mode)
    u_next : (B, n_inputs), optional: when this is the last internal step of an environment
        step, the environment's next encoded observation, applied to the sensors as the
        network's next step begins.
    """
    V = np.asarray(V, dtype=np.float64)
    alpha = np.empty_like(V)
    for m in range(view.N):
        alpha[:, m] = alpha_n if m == n else view.action(V, m, xi[:, m])
    V_next = (1.0 - view.leak) * V + view.leak * alpha
    if not view.pulse and u is not None:
        V_next[:, :view.n_inputs] = u
    if u_next is not None:
        if view.pulse:
            V_next[:, :view.n_inputs] += u_next
        else:
            V_next[:, :view.n_inputs] = u_next
    return V_next


def agents(net) -> np.ndarray:
    """Indices of the neurons that are agents: every non-sensor neuron."""
    return np.arange(net.config.n_inputs, net.config.n_neurons)


__all__ = ["NeuronView", "agents", "sub_environment_step", "to_numpy"]
