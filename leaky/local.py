"""The backprop-free learner: every non-sensor neuron an agent with its own critic (DESIGN.md §3).

Each environment step the network acts with per-neuron Gaussian noise ξ; one step later the
step's cache becomes a batch of transitions (``build_transitions``: the ``causal`` or
``internal`` clock) and ONE fused kernel call (``kernels/update_local.py``, or
``kernels/update_mlp.py`` for the ``mlp`` family) updates every neuron's critic, its row of K
and its bias. With ``baseline="dopamine"`` a shared value function of the voltages is trained
by TD first and its TD error is broadcast to every neuron.

Options (:class:`LocalConfig`; defaults are DESIGN.md's, the paper's literal rule is
``family="linear", clock="internal", view="presynaptic"``):

``family``      ``advantage`` (centred, COPDAC-Q) | ``linear`` (the paper's §4) | ``mlp``
``clock``       ``causal`` | ``internal``
``view``        ``all`` | ``presynaptic``
``baseline``    ``own`` | ``dopamine``
``data``        ``online`` (each step's cache once, one step late) | ``replay`` (a device buffer)
``value_features``  the shared value's features under ``dopamine``: ``voltages`` (linear in
                the voltages, DESIGN.md's) | ``random`` (``tanh`` of a fixed random projection
                of the voltages, ``n_features`` wide: nonlinear but local, nothing is
                backpropagated; an option DESIGN.md §3 lists as untested)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaky.errors import ConfigError
from leaky.kernels import update_local as ul
from leaky.kernels.scalar import ACTIVATIONS
from leaky.network import Network
from leaky.online import OnlineLearner, Transition

FAMILIES = ("advantage", "linear", "mlp")
DATA = ("online", "replay")
VALUE_FEATURES = ("voltages", "random")


@dataclass(frozen=True)
class LocalConfig:
    """Hyperparameters of the local learner (see the module docstring for the options)."""

    family: str = "advantage"
    clock: str = "causal"
    view: str = "all"
    baseline: str = "own"
    data: str = "online"
    optimizer: str = "adam"
    lr_critic: float = 1e-3
    lr_actor: float = 1e-4
    tau_soft: float = 0.005
    gamma: float = 0.99
    noise_std: float = 0.1
    value_lr: float = 1e-3
    value_features: str = "voltages"
    value_input: str = "all"
    value_optimizer: str = "sgd"
    n_features: int = 256
    feature_scale: float = 1.5
    reward_scale: float = 1.0
    mlp_hidden: int = 16
    replay_size: int = 100_000
    batch_size: int = 256
    learning_starts: int = 1_000
    seed: int = 0

    def __post_init__(self):
        choices = {"family": FAMILIES, "clock": ul.CLOCKS, "data": DATA, "value_features": VALUE_FEATURES,
                   "value_input": ("all", "sensors"), "value_optimizer": ("sgd", "adam"),
                   "view": tuple(ul.VIEWS), "baseline": tuple(ul.BASELINES), "optimizer": tuple(ul.OPTIMIZERS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"LocalConfig.{name}: got {getattr(self, name)!r}, expected one of {list(allowed)}")
        for name in ("noise_std", "value_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"LocalConfig.{name}: got {getattr(self, name)!r}, expected > 0")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"LocalConfig.gamma: got {self.gamma!r}, expected in [0, 1]")
        for name in ("n_features", "mlp_hidden", "replay_size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"LocalConfig.{name}: got {getattr(self, name)!r}, expected a positive int")

    def update_config(self) -> ul.UpdateConfig:
        return ul.UpdateConfig(family="advantage" if self.family == "mlp" else self.family, view=self.view,
                               baseline=self.baseline, optimizer=self.optimizer, lr_critic=self.lr_critic,
                               lr_actor=self.lr_actor, tau_soft=self.tau_soft)


class LocalLearner(OnlineLearner):
    """Every neuron learns from its own critic; one fused update per environment step."""

    def __init__(self, net: Network, cfg: LocalConfig):
        super().__init__(net, cfg.noise_std, cfg.seed)
        self.cfg = cfg
        be, N = net.backend, net.n_neurons
        self.ucfg = cfg.update_config()
        self.tau = be.asarray(ul.neuron_slices(net.decision_step, cfg.clock), dtype=np.int32)
        self.col_lo = be.asarray(net.col_lo, dtype=np.int32)
        self.col_hi = be.asarray(net.col_hi, dtype=np.int32)
        self.activation = ACTIVATIONS[net.config.activation]
        self.adam_step = 0
        if cfg.family == "mlp":
            from leaky.kernels import update_mlp as um

            self._mlp = um
            self.critic = um.init_mlp_critics(N, cfg.mlp_hidden, cfg.seed, backend=be)
        else:
            width = ul.critic_layout(N).width
            self.theta = be.zeros((N, width))
            self.theta_bar = be.zeros((N, width))
            self.adam_m = be.zeros((N, width))
            self.adam_v = be.zeros((N, width))
        self.diag = be.zeros((N, 3))
        self.face = ul.FACES[be.name]
        if cfg.baseline == "dopamine":
            rng = np.random.default_rng(cfg.seed + 31)
            self._value_cols = slice(0, net.config.n_inputs) if cfg.value_input == "sensors" else slice(0, N)
            D = net.config.n_inputs if cfg.value_input == "sensors" else N
            F = D if cfg.value_features == "voltages" else cfg.n_features
            if cfg.value_features == "random":
                self.R = be.asarray(rng.standard_normal((D, F)) * (cfg.feature_scale / np.sqrt(D)))
                self.R0 = be.asarray(rng.uniform(-np.pi, np.pi, F))
            self.w_v = be.zeros(F)
            self.c_v = be.zeros(1)
            self._value_adam = [be.zeros(F + 1), be.zeros(F + 1), 0]
        self.buffer = _TransitionBuffer(cfg.replay_size, net) if cfg.data == "replay" else None

    # -- features of the shared value -------------------------------------------------------

    def _value_features(self, V):
        V = V[..., self._value_cols]
        if self.cfg.value_features == "voltages":
            return V
        return self.xp.tanh(V @ self.R + self.R0)

    def _shared_td(self, tr: ul.Transitions, reward):
        """TD error of the shared value (then one SGD or Adam step on it): the dopamine."""
        cfg, xp = self.cfg, self.xp
        phi, phi_next = self._value_features(tr.V), self._value_features(tr.V_next)
        if cfg.value_optimizer == "sgd":
            return ul.dopamine_td(self.w_v, self.c_v, phi, phi_next, reward, tr.cont, cfg.value_lr)
        delta = reward + tr.cont * (phi_next @ self.w_v + self.c_v[0]) - (phi @ self.w_v + self.c_v[0])
        F = phi.shape[-1]
        grad = -xp.concatenate([delta.reshape(-1) @ phi.reshape(-1, F), delta.sum().reshape(1)]) / delta.size
        m, v, t = self._value_adam
        t += 1
        m *= 0.9
        m += 0.1 * grad
        v *= 0.999
        v += 0.001 * grad * grad
        step = cfg.value_lr * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        upd = step * m / (xp.sqrt(v) + 1e-8)
        self.w_v -= upd[:F]
        self.c_v -= upd[F:]
        self._value_adam[2] = t
        return delta

    # -- one update -------------------------------------------------------------------------

    def learn(self, tr: Transition) -> dict:
        cfg = self.cfg
        batch = ul.build_transitions(tr.cache, tr.next_cache, tr.reward, tr.terminated, cfg.gamma,
                                     cfg.clock, self.xp)
        if self.buffer is not None:
            self.buffer.add(batch)
            if len(self.buffer) < max(cfg.learning_starts, cfg.batch_size):
                return {}
            batch = self.buffer.sample(cfg.batch_size, self.rng)
        return self._update(batch)

    def _update(self, tr: ul.Transitions) -> dict:
        cfg, net = self.cfg, self.net
        delta = None
        reward = tr.reward if cfg.reward_scale == 1.0 else tr.reward * cfg.reward_scale
        if cfg.reward_scale != 1.0:
            tr = tr._replace(reward=reward)
        if cfg.baseline == "dopamine":
            delta = self._shared_td(tr, reward)
        self.adam_step += 1
        if cfg.family == "mlp":
            self._mlp.update_mlp(self.net, self.critic, tr, delta, self.tau, self.ucfg, self.adam_step, self.diag)
        else:
            self.face(tr.V, tr.y, tr.alpha, tr.V_next, tr.y_next, tr.reward, tr.cont, delta, self.tau,
                      net.mask, self.col_lo, self.col_hi, net.K, net.b, self.theta, self.theta_bar,
                      self.adam_m, self.adam_v, self.diag, net.config.n_inputs, self.activation,
                      self.ucfg, self.adam_step)
        agents = slice(net.config.n_inputs, net.n_neurons)
        d = self.diag[agents]
        return {"td_error": float(d[:, 1].mean()), "slope": float(self.xp.abs(d[:, 2]).mean())}

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "adam_step": self.adam_step}
        if self.cfg.family == "mlp":
            state["critic"] = {k: v for k, v in vars(self.critic).items()} if hasattr(self.critic, "__dict__") \
                else dict(self.critic)
        else:
            state.update(theta=self.theta, theta_bar=self.theta_bar, adam_m=self.adam_m, adam_v=self.adam_v)
        if self.cfg.baseline == "dopamine":
            state.update(w_v=self.w_v, c_v=self.c_v)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        be = self.net.backend
        self.adam_step = int(state["adam_step"])
        if self.cfg.family == "mlp":
            for k, v in state["critic"].items():
                _set(self.critic, k, be.asarray(v))
        else:
            for k in ("theta", "theta_bar", "adam_m", "adam_v"):
                setattr(self, k, be.asarray(state[k]))
        if self.cfg.baseline == "dopamine":
            self.w_v, self.c_v = be.asarray(state["w_v"]), be.asarray(state["c_v"])


def _set(obj, key, value):
    if isinstance(obj, dict):
        obj[key] = value
    else:
        setattr(obj, key, value)


class _TransitionBuffer:
    """Ring buffer of per-environment transitions on the backend (the paper's cache replay).

    Row i holds one environment's transition of one step: ``V, y, alpha, V_next, y_next``
    (T, N) and ``reward, cont`` (T,). Sampling returns ``Transitions`` shaped (T, batch, N).
    """

    FIELDS = ("V", "y", "alpha", "V_next", "y_next", "reward", "cont")

    def __init__(self, capacity: int, net: Network):
        self.capacity, self.pos, self.size = int(capacity), 0, 0
        self.xp = net.xp
        self.be = net.backend
        self.data = None

    def __len__(self):
        return self.size

    def add(self, tr: ul.Transitions) -> None:
        xp = self.xp
        rows = [xp.moveaxis(getattr(tr, f), 1, 0) for f in self.FIELDS]   # (B, T, …)
        B = rows[0].shape[0]
        if self.data is None:
            self.data = [self.be.zeros((self.capacity,) + r.shape[1:], dtype=r.dtype) for r in rows]
        idx = (self.pos + np.arange(B)) % self.capacity
        idx_dev = self.be.asarray(idx, dtype=np.int64)
        for store, r in zip(self.data, rows):
            store[idx_dev] = r
        self.pos = int((self.pos + B) % self.capacity)
        self.size = min(self.capacity, self.size + B)

    def sample(self, batch: int, rng) -> ul.Transitions:
        xp = self.xp
        idx = rng.integers(self.size, batch)
        return ul.Transitions(*(xp.ascontiguousarray(xp.moveaxis(store[idx], 0, 1)) for store in self.data))
