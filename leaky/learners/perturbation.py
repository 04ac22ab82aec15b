"""Per-neuron node perturbation against a shared dopamine TD error (the classic baseline).

Every neuron n perturbs its action with its own noise ξ_n at its decision step τ_n
(docs/design.md#3-every-neuron-is-an-agent, causal clock). One shared value of the state,
:class:`leaky.learners.value.SharedValue` (linear in
the voltages by default) at ``x = V_t[0]`` (the voltages as the environment step begins,
sensors applied), is trained by TD(0); its TD error is broadcast to every neuron::

    δ_b = r_b + γ(1 − terminated_b)·v(x'_b) − v(x_b)
    ΔK[n, m] = η · mean_b[ δ_b · ξ_n,b / σ² · σ'(y_n,b) · V_m,b ]       (V at τ_n, on the mask)
    Δb_n     = η · mean_b[ δ_b · ξ_n,b / σ² · σ'(y_n,b) ]

``ξ/σ²`` is the score of the Gaussian perturbation, so ``δ·ξ/σ²`` estimates ``∂J/∂α_n``, and
the chain to the weights is the neuron's own (no backpropagation through the network). Written
with GEMMs on the backend's array module: neurons sharing a decision step form one
``(n, B) × (B, N)`` product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaky.kernels.scalar import ACTIVATIONS, sigma_grad
from leaky.model.network import Network
from leaky.learners.base import OnlineLearner, Transition
from leaky.learners.records import broadcast_to_agents
from leaky.core.validate import Int, Real, check_fields
from leaky.learners.value import VALUE_RULES, SharedValue, ValueOptions


@dataclass(frozen=True)
class PerturbationConfig(ValueOptions):
    """Node perturbation: actor step ``lr``, value step ``value_lr``, noise ``noise_std``."""

    lr: float = 1e-3
    value_lr: float = 1e-2
    gamma: float = 0.99
    noise_std: float = 0.1
    max_grad_norm: float = 0.0   # clip of each neuron's row update (0: no clip)
    seed: int = 0

    def __post_init__(self):
        check_fields(self, self.RULES)


# One rule per field of PerturbationConfig (leaky/core/validate.py).
PERTURBATION_RULES = {
    **VALUE_RULES,
    "lr": Real(low=0.0, low_open=True), "value_lr": Real(low=0.0, low_open=True),
    "gamma": Real(0.0, 1.0), "noise_std": Real(low=0.0, low_open=True),
    "max_grad_norm": Real(low=0.0), "seed": Int(low=0),
}
PerturbationConfig.RULES = PERTURBATION_RULES   # a subclass with more fields extends them


class PerturbationLearner(OnlineLearner):
    def __init__(self, net: Network, cfg: PerturbationConfig):
        super().__init__(net, cfg.noise_std, cfg.seed)
        self.cfg = cfg
        N = net.n_neurons
        self.value = SharedValue(cfg.value_config(), net, cfg.seed)
        self.agents = np.arange(net.config.n_inputs, N)
        steps = net.decision_step[self.agents]
        # neurons grouped by decision step: one GEMM per group
        self.groups = [(int(t), net.backend.asarray(self.agents[steps == t], dtype=np.int64))
                       for t in np.unique(steps)]

    def learn(self, tr: Transition) -> dict:
        xp, cfg, net = self.xp, self.cfg, self.net
        x, x_next = tr.cache.V[0], tr.next_cache.V[0]
        value = self.value(x) if self.record_critic else None
        delta = self.value.td(x, x_next, tr.reward, cfg.gamma * (1.0 - tr.terminated))
        if value is not None:   # one shared value: every agent neuron gets v(x) and δ
            n_in, N = net.config.n_inputs, net.n_neurons
            self._record(broadcast_to_agents(value, n_in, N, xp), broadcast_to_agents(delta, n_in, N, xp))
        B = x.shape[0]
        scale = cfg.lr / (B * cfg.noise_std ** 2)
        for tau, idx in self.groups:
            y = tr.cache.y[tau][:, idx]
            grad_act = sigma_grad(y, ACTIVATIONS[net.config.activation], xp)
            g = delta[:, None] * tr.noise[tau][:, idx] * grad_act        # (B, n)
            dK = scale * (g.T @ tr.cache.V[tau]) * net.mask[idx]
            db = scale * g.sum(axis=0)
            if cfg.max_grad_norm > 0:
                norm = xp.sqrt((dK ** 2).sum(axis=1) + db ** 2)
                f = xp.minimum(1.0, cfg.max_grad_norm / xp.maximum(norm, 1e-12))
                dK, db = dK * f[:, None], db * f
            net.K[idx] += dK
            net.b[idx] += db
        return {"td_error": float(xp.abs(delta).mean())}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "value": self.value.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.value.load_state_dict(state["value"])
