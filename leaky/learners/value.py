"""The shared value function behind the dopamine signal
(docs/design.md#3-every-neuron-is-an-agent, ``baseline="dopamine"``).

One value function of the network's state, trained by TD(0); its TD error
``δ = r + cont·v(x') − v(x)`` is what every neuron receives (the "dopamine")::

    v(x) = w·φ(x) + c      φ(x) = x                        (features="voltages")
                           φ(x) = tanh(x R + r₀)            (features="random": a fixed random
                                                             projection, nonlinear but local:
                                                             nothing is backpropagated)

``x`` is every voltage (``inputs="all"``) or only the sensors (``inputs="sensors"``, i.e. the
encoded observation). The step is SGD or Adam on ½δ² with the target held fixed (semi-gradient
TD); the Adam is the library's one (``kernels.scalar.adam_scalars`` and ``adam_arrays``, as in
:mod:`leaky.learners.optim`). Runs on the backend's array module; it is one small GEMV per update, not a per-neuron kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaky.core.backend import to_numpy
from leaky.kernels.scalar import adam_arrays, adam_scalars
from leaky.learners.critics import dopamine_td
from leaky.core.errors import ConfigError
from leaky.core.validate import Choice, Int, Real, check_fields


FEATURES = ("voltages", "random")
INPUTS = ("all", "sensors")
VALUE_OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class ValueConfig:
    """The shared value function's options (see the module docstring)."""

    features: str = "voltages"
    inputs: str = "all"
    n_features: int = 256
    feature_scale: float = 1.5
    optimizer: str = "sgd"
    lr: float = 1e-3

    def __post_init__(self):
        check_fields(self, self.RULES)


VALUE_CONFIG_RULES = {"features": Choice(FEATURES), "inputs": Choice(INPUTS), "n_features": Int(low=1),
                      "feature_scale": Real(low=0.0), "optimizer": Choice(VALUE_OPTIMIZERS),
                      "lr": Real(low=0.0, low_open=True)}
ValueConfig.RULES = VALUE_CONFIG_RULES


@dataclass(frozen=True)
class ValueOptions:
    """The shared value's options as flat fields of a learner's config (``--set value_lr=…``)."""

    value_lr: float = 1e-3
    value_features: str = "voltages"
    value_input: str = "all"
    value_optimizer: str = "sgd"
    n_features: int = 256
    feature_scale: float = 1.5

    def __post_init__(self):
        check_fields(self, self.RULES)

    def value_config(self) -> ValueConfig:
        return ValueConfig(features=self.value_features, inputs=self.value_input, n_features=self.n_features,
                           feature_scale=self.feature_scale, optimizer=self.value_optimizer, lr=self.value_lr)


# the rules of ValueOptions' fields, which every config that inherits them includes in its own
VALUE_RULES = {"value_lr": Real(low=0.0, low_open=True), "value_features": Choice(FEATURES),
               "value_input": Choice(INPUTS), "value_optimizer": Choice(VALUE_OPTIMIZERS),
               "n_features": Int(low=1), "feature_scale": Real(low=0.0)}
ValueOptions.RULES = VALUE_RULES


class SharedValue:
    """``v(x) = w·φ(x) + c`` trained by TD(0); :meth:`td` returns the broadcast TD error."""

    def __init__(self, cfg: ValueConfig, net, seed: int):
        be = net.backend
        self.cfg, self.xp, self.be = cfg, net.xp, be
        N, n_in = net.n_neurons, net.config.n_inputs
        D = n_in if cfg.inputs == "sensors" else N
        if D == 0:
            raise ConfigError("value inputs='sensors': the network has no sensor neurons")
        self.cols = slice(0, D)
        F = D
        if cfg.features == "random":
            rng = np.random.default_rng(seed + 31)
            F = cfg.n_features
            self.R = be.asarray(rng.standard_normal((D, F)) * (cfg.feature_scale / np.sqrt(D)))
            self.r0 = be.asarray(rng.uniform(-np.pi, np.pi, F))
        self.theta = be.zeros(F + 1)   # [w | c]: one array for the one Adam
        self.m = be.zeros(F + 1)
        self.v = be.zeros(F + 1)
        self.t = 0

    @property
    def w(self):
        """The feature weights (F,): a view of ``theta``."""
        return self.theta[:-1]

    @property
    def c(self):
        """The bias, a 1-element view of ``theta``."""
        return self.theta[-1:]

    def features(self, V):
        x = V[..., self.cols]
        return x if self.cfg.features == "voltages" else self.xp.tanh(x @ self.R + self.r0)

    def __call__(self, V):
        return self.features(V) @ self.w + self.c[0]

    def td(self, x, x_next, reward, cont):
        """δ for every transition (any leading shape), then one step on ½·mean δ²."""
        cfg, xp = self.cfg, self.xp
        phi, phi_next = self.features(x), self.features(x_next)
        if cfg.optimizer == "sgd":
            return dopamine_td(self.w, self.c, phi, phi_next, reward, cont, cfg.lr)
        delta = reward + cont * (phi_next @ self.w + self.c[0]) - (phi @ self.w + self.c[0])
        F = phi.shape[-1]
        grad = -xp.concatenate([delta.reshape(-1) @ phi.reshape(-1, F), delta.sum().reshape(1)]) / delta.size
        self.t += 1
        step_size, eps_hat = adam_scalars(cfg.lr, self.t)   # Adam's defaults: β = (0.9, 0.999), ε = 1e-8
        adam_arrays(self.theta, self.m, self.v, grad, step_size, eps_hat)
        return delta

    def state_dict(self) -> dict:
        return {"w": self.w, "c": self.c, "m": self.m, "v": self.v, "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        for k in ("m", "v"):
            setattr(self, k, self.be.asarray(state[k]).copy())
        self.theta = self.be.asarray(np.concatenate([np.ravel(to_numpy(state["w"])), np.ravel(to_numpy(state["c"]))]))
        self.t = int(state["t"])
