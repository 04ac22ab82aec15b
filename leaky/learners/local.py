"""The backprop-free learner: every non-sensor neuron an agent with its own critic
(docs/design.md#3-every-neuron-is-an-agent).

Each environment step the network acts with per-neuron Gaussian noise ξ; one step later the
step's cache becomes a batch of transitions (``build_transitions``: the ``causal`` or
``internal`` clock) and ONE fused kernel call (``kernels/update_local/``, or
``kernels/update_mlp/`` for the ``mlp`` family) updates every neuron's critic, its row of K
and its bias. With ``baseline="dopamine"`` a shared value function of the voltages is trained
by TD first and its TD error is broadcast to every neuron.

Options (:class:`LocalConfig`; defaults are those of docs/design.md#3-every-neuron-is-an-agent,
the paper's literal rule is
``family="linear", clock="internal", view="presynaptic"``):

``family``      ``advantage`` (centred, COPDAC-Q) | ``linear`` (the paper's §4) | ``mlp``
``clock``       ``causal`` | ``internal``
``view``        ``all`` | ``presynaptic``
``baseline``    ``own`` | ``dopamine``
``data``        ``online`` (each step's cache once, one step late) | ``replay`` (a device buffer,
                ``updates_per_step`` minibatches of ``batch_size`` per environment step)
``hidden_noise_scale``  exploration noise of the hidden neurons relative to the outputs' (0:
                only the outputs explore, so only they learn; their critics see no hidden noise)
``graph``       capture each environment step's device work into CUDA graphs (``cuda`` backend;
                :mod:`leaky.learners.graph`)
``actor_neurons``  ``all`` | ``outputs`` (a diagnostic: hidden neurons keep their weights, so the
                network is a fixed random feature map under a learning output layer)
``value_*``     the shared value behind ``dopamine`` (:mod:`leaky.learners.value`): features ``voltages``
                (linear, docs/design.md#3-every-neuron-is-an-agent) or ``random`` (``tanh`` of a
                fixed random projection,
                ``n_features`` wide: nonlinear but local); inputs ``all`` voltages or the
                ``sensors`` only; SGD or Adam
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaky.learners.critics import MLPUpdateConfig, UpdateConfig, build_transitions, init_mlp_critics, neuron_slices
from leaky.core.errors import ConfigError
from leaky.kernels import update_local as ul
from leaky.kernels.scalar import ACTIVATIONS
from leaky.model.network import Network
from leaky.learners.base import OnlineLearner, Transition
from leaky.learners.replay import RingBuffer
from leaky.core.validate import Bool, Choice, Int, Ints, Real, check_fields
from leaky.learners.value import VALUE_RULES, SharedValue, ValueOptions

FAMILIES = ("advantage", "linear", "mlp")
DATA = ("online", "replay")


RULES = ("feedback", "perturb", "dfa", "critic", "literal")
SHARED_RULES = ("feedback", "perturb", "dfa")   # scored by one shared critic Q(s, a)
# Per rule, the value of every option left at None (the shared-critic rules take DDPG's
# settings of docs/results.md; "critic" the best per-neuron-critic settings found there;
# "literal" the paper's rule, fixed).
RULE_DEFAULTS = {
    "shared": {"lr_actor": 1e-3, "data": "replay", "updates_per_step": 4, "replay_size": 1_000_000,
               "family": "advantage", "clock": "causal", "view": "all"},
    "critic": {"lr_actor": 1e-4, "data": "online", "updates_per_step": 1, "replay_size": 100_000,
               "family": "advantage", "clock": "causal", "view": "all"},
    "literal": {"lr_actor": 1e-3, "data": "online", "updates_per_step": 1, "replay_size": 100_000,
                "family": "linear", "clock": "internal", "view": "presynaptic"},
}
LITERAL_FIXED = ("family", "clock", "view")
TANGENT_DISTS = ("normal", "rademacher")   # the tangents' distribution: both have E[ξξᵀ] = I


@dataclass(frozen=True)
class LocalConfig(ValueOptions):
    """Hyperparameters of the local learner (see the module docstring for the options).

    Options left at None take their value from ``rule`` (:data:`RULE_DEFAULTS`); the resolved
    value is what the config holds after construction.
    """

    family: str | None = None
    clock: str | None = None
    view: str | None = None
    baseline: str = "own"
    data: str | None = None
    optimizer: str = "adam"
    lr_critic: float = 1e-3
    lr_actor: float | None = None
    tau_soft: float = 0.005
    gamma: float = 0.99
    noise_std: float = 0.1
    hidden_noise_scale: float = 1.0
    reward_scale: float = 1.0
    mlp_hidden: int = 16
    replay_size: int | None = None
    batch_size: int = 256
    learning_starts: int = 1_000
    updates_per_step: int | None = None
    actor_neurons: str = "all"
    graph: bool = False
    seed: int = 0
    rule: str = "feedback"
    tangents: int = 1
    feedback_rate: float = 0.01
    critic_hidden: tuple = (128, 128)
    shuffle_credit: bool = False
    align_every: int = 0
    tangent_dist: str = "normal"

    def __post_init__(self):
        if self.rule not in RULES:
            raise ConfigError(f"LocalConfig.rule: got {self.rule!r}, expected one of {list(RULES)}")
        kind = "shared" if self.rule in SHARED_RULES else self.rule
        if self.rule == "literal":
            for name in LITERAL_FIXED:
                value = getattr(self, name)
                if value is not None and value != RULE_DEFAULTS["literal"][name]:
                    raise ConfigError(f"LocalConfig.{name}: got {value!r}, but rule='literal' fixes "
                                      f"{name}={RULE_DEFAULTS['literal'][name]!r}; expected it unset "
                                      "(or use rule='critic' to vary it)")
        for name, value in RULE_DEFAULTS[kind].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        check_fields(self, self.RULES)
        if self.family == "mlp" and self.baseline == "dopamine":
            raise ConfigError("LocalConfig: family='mlp' has its own critics only; expected baseline='own' "
                              "(the dopamine baseline is for the advantage and linear families)")
        if self.rule in SHARED_RULES and self.data != "replay":
            raise ConfigError(f"LocalConfig.data: got {self.data!r}, but rule={self.rule!r} learns its "
                              "shared critic from replay; expected data='replay'")
        if self.updates_per_step > 1 and self.data != "replay":
            raise ConfigError(f"LocalConfig.updates_per_step: got {self.updates_per_step}, expected 1 with "
                              "data='online' (each transition is used once; use data='replay')")
        if self.rule in SHARED_RULES:
            if self.graph:
                raise ConfigError(f"LocalConfig.graph=True: rule={self.rule!r} is not captured; expected "
                                  "rule='critic' or 'literal' (or graph=False)")
            if self.rule != "dfa" and self.tangents < 1:
                raise ConfigError(f"LocalConfig.tangents: got {self.tangents!r}, expected a positive int "
                                  f"(rule={self.rule!r} scores activity tangents)")
        elif self.shuffle_credit or self.align_every:
            raise ConfigError(f"LocalConfig: shuffle_credit and align_every are diagnostics of the shared-critic "
                              f"rules; got rule={self.rule!r}, expected one of {list(SHARED_RULES)}")
        if self.graph:
            captured = {"family": ("advantage", "linear"), "baseline": ("own",), "data": ("online",),
                        "actor_neurons": ("all",)}
            for name, allowed in captured.items():
                if getattr(self, name) not in allowed:
                    raise ConfigError(f"LocalConfig.graph=True: {name}={getattr(self, name)!r} is not captured; "
                                      f"expected {name} in {list(allowed)} (or graph=False)")

    @property
    def shared_critic(self) -> bool:
        """True for the rules scored by one shared critic (``feedback``, ``perturb``, ``dfa``)."""
        return self.rule in SHARED_RULES

    def ddpg_config(self):
        """The shared critic's, replay's and exploration's settings as a :class:`DDPGConfig`."""
        from leaky.learners.ddpg import DDPGConfig

        return DDPGConfig(gamma=self.gamma, tau=self.tau_soft, actor_lr=self.lr_actor or 1.0,
                          critic_lr=self.lr_critic, batch_size=self.batch_size, buffer_size=self.replay_size,
                          noise="gaussian", noise_std=self.noise_std, learning_starts=self.learning_starts,
                          updates_per_step=self.updates_per_step, hidden=self.critic_hidden, seed=self.seed)

    def update_config(self) -> UpdateConfig:
        return UpdateConfig(family=self.family, view=self.view,
                               baseline=self.baseline, optimizer=self.optimizer, lr_critic=self.lr_critic,
                               lr_actor=self.lr_actor, tau_soft=self.tau_soft)


def make_local_learner(net: Network, cfg: LocalConfig):
    """The learner ``cfg.rule`` names: a :class:`~leaky.learners.shared_critic.SharedCriticLearner`
    (``feedback``, ``perturb``, ``dfa``), a :class:`~leaky.learners.graph.GraphedLocalLearner`
    (``graph=True``) or a :class:`LocalLearner` (per-neuron critics: ``critic``, ``literal``)."""
    if cfg.shared_critic:
        from leaky.learners.shared_critic import SharedCriticLearner

        return SharedCriticLearner(net, cfg)
    if cfg.graph:
        from leaky.learners.graph import GraphedLocalLearner

        return GraphedLocalLearner(net, cfg)
    return LocalLearner(net, cfg)


# One rule per field of LocalConfig (leaky/core/validate.py); a new field needs its rule here.
LOCAL_RULES = {
    **VALUE_RULES,
    "family": Choice(FAMILIES), "clock": Choice(ul.CLOCKS), "view": Choice(ul.VIEWS),
    "baseline": Choice(ul.BASELINES), "data": Choice(DATA), "optimizer": Choice(ul.OPTIMIZERS),
    "lr_critic": Real(low=0.0), "lr_actor": Real(low=0.0), "tau_soft": Real(0.0, 1.0),
    "gamma": Real(0.0, 1.0), "noise_std": Real(low=0.0, low_open=True),
    "hidden_noise_scale": Real(low=0.0), "reward_scale": Real(low=0.0, low_open=True),
    "mlp_hidden": Int(low=1), "replay_size": Int(low=1), "batch_size": Int(low=1),
    "learning_starts": Int(low=0), "updates_per_step": Int(low=1),
    "actor_neurons": Choice(("all", "outputs")), "graph": Bool(), "seed": Int(low=0),
    "rule": Choice(RULES), "tangents": Int(low=0), "feedback_rate": Real(0.0, 1.0, low_open=True),
    "critic_hidden": Ints(low=1, min_len=1), "shuffle_credit": Bool(), "align_every": Int(low=0),
    "tangent_dist": Choice(TANGENT_DISTS),
}
LocalConfig.RULES = LOCAL_RULES   # a subclass with more fields: {**LOCAL_RULES, ...}


class LocalLearner(OnlineLearner):
    """Every neuron learns from its own critic; one fused update per environment step."""

    def __init__(self, net: Network, cfg: LocalConfig):
        if cfg.shared_critic:
            raise ConfigError(f"LocalLearner: rule={cfg.rule!r} is scored by a shared critic; expected "
                              "rule='critic' or 'literal' (make_local_learner picks the learner for a rule)")
        std = np.full(net.n_neurons, cfg.noise_std)
        std[: net.n_neurons - net.config.n_outputs] *= cfg.hidden_noise_scale   # per-layer noise scale
        super().__init__(net, std, cfg.seed)
        self.cfg = cfg
        be, N = net.backend, net.n_neurons
        self.tau = be.asarray(neuron_slices(net.decision_step, cfg.clock), dtype=np.int32)
        self.col_lo = be.asarray(net.col_lo, dtype=np.int32)
        self.col_hi = be.asarray(net.col_hi, dtype=np.int32)
        self.activation = ACTIVATIONS[net.config.activation]
        self.adam_step = 0
        if cfg.family == "mlp":
            from leaky.kernels import update_mlp as um

            critics = init_mlp_critics(N, cfg.mlp_hidden, cfg.seed)
            self.theta, self.theta_bar, self.adam_m, self.adam_v = (
                be.asarray(a) for a in (critics.theta, critics.theta_bar, critics.adam_m, critics.adam_v))
            self.ucfg = MLPUpdateConfig(view=cfg.view, optimizer=cfg.optimizer, lr_critic=cfg.lr_critic,
                                        lr_actor=cfg.lr_actor, tau_soft=cfg.tau_soft)
            self.face = um.FACES[be.name]
        else:
            width = ul.critic_layout(N).width
            self.theta = be.zeros((N, width))
            self.theta_bar = be.zeros((N, width))
            self.adam_m = be.zeros((N, width))
            self.adam_v = be.zeros((N, width))
            self.ucfg = cfg.update_config()
            self.face = ul.FACES[be.name]
        self.diag = be.zeros((N, 3))
        self._cpu_work = None
        self.value = SharedValue(cfg.value_config(), net, cfg.seed) if cfg.baseline == "dopamine" else None
        self.buffer = _TransitionBuffer(cfg.replay_size, net) if cfg.data == "replay" else None

    # -- one update -------------------------------------------------------------------------

    def learn(self, tr: Transition) -> dict:
        cfg = self.cfg
        batch = build_transitions(tr.cache, tr.next_cache, tr.reward, tr.terminated, cfg.gamma,
                                     cfg.clock, self.xp)
        if self.record_critic:
            self._record(*self.critic_values(batch))
        if self.buffer is not None:
            self.buffer.add(batch)
            if len(self.buffer) < max(cfg.learning_starts, cfg.batch_size):
                return {}
            batch = self.buffer.sample(cfg.batch_size, self.rng)
        return self._update(batch)

    def critic_values(self, tr: ul.Transitions):
        """``(q_local, td_error)`` (B, N): each neuron's critic value and TD error on its
        transition of ``tr`` (B environments), with the critic as it is now, before the update
        that learns from ``tr`` (``kernels.update_local.critic_values``; the MLP family's in
        ``kernels.update_mlp``). Rewards are scaled by ``reward_scale`` as the update scales them."""
        cfg, net = self.cfg, self.net
        if cfg.reward_scale != 1.0:
            tr = tr._replace(reward=tr.reward * cfg.reward_scale)
        sc = self.ucfg.scalars(net.config.n_inputs, self.activation, max(1, self.adam_step))
        top, critic = self._topology(), self._critic()
        if cfg.family == "mlp":
            from leaky.kernels import update_mlp as um

            return um.critic_values(tr, top, critic, sc, self.xp)
        if self.value is not None:
            tr = tr._replace(delta=tr.reward + tr.cont * self.value(tr.V_next) - self.value(tr.V))
        return ul.critic_values(tr, top, critic, sc, self.xp)

    def _topology(self) -> ul.Topology:
        return ul.Topology(self.tau, self.net.mask, self.col_lo, self.col_hi)

    def _critic(self) -> ul.CriticState:
        return ul.CriticState(self.theta, self.theta_bar, self.adam_m, self.adam_v)

    def learn_again(self) -> dict:
        if self.buffer is None or len(self.buffer) < max(self.cfg.learning_starts, self.cfg.batch_size):
            return {}
        return self._update(self.buffer.sample(self.cfg.batch_size, self.rng))

    def _update(self, tr: ul.Transitions) -> dict:
        cfg, net = self.cfg, self.net
        if cfg.reward_scale != 1.0:
            tr = tr._replace(reward=tr.reward * cfg.reward_scale)
        if self.value is not None:
            tr = tr._replace(delta=self.value.td(tr.V, tr.V_next, tr.reward, tr.cont))
        self.adam_step += 1
        sc = self.ucfg.scalars(net.config.n_inputs, self.activation, self.adam_step)
        if cfg.actor_neurons == "outputs":   # hidden neurons learn their critics but keep their rows
            hidden = slice(net.config.n_inputs, net.n_neurons - net.config.n_outputs)
            K_hidden, b_hidden = net.K[hidden].copy(), net.b[hidden].copy()
        work = None
        if cfg.family != "mlp" and net.backend.name == "cpu":   # the cpu face's scratch, kept
            if self._cpu_work is None or self._cpu_work[0].shape != tr.V.shape:
                self._cpu_work = ul.cpu_workspace(*tr.V.shape, dtype=tr.V.dtype)
            work = self._cpu_work
        self.face(tr, self._topology(), ul.ActorRows(net.K, net.b), self._critic(), sc,
                  ul.UpdateOut(self.diag, work))
        if cfg.actor_neurons == "outputs":
            net.K[hidden], net.b[hidden] = K_hidden, b_hidden
        agents = slice(net.config.n_inputs, net.n_neurons)
        d = self.diag[agents]
        return {"td_error": float(d[:, 1].mean()), "slope": float(self.xp.abs(d[:, 2]).mean())}

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "adam_step": self.adam_step, "theta": self.theta,
                 "theta_bar": self.theta_bar, "adam_m": self.adam_m, "adam_v": self.adam_v}
        if self.value is not None:
            state["value"] = self.value.state_dict()
        if self.buffer is not None:
            state["replay"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        be = self.net.backend
        self.adam_step = int(state["adam_step"])
        for k in ("theta", "theta_bar", "adam_m", "adam_v"):
            setattr(self, k, be.asarray(state[k]).copy())
        if self.value is not None:
            self.value.load_state_dict(state["value"])
        if self.buffer is not None and "replay" in state:
            self.buffer.load_state_dict(state["replay"])


class _TransitionBuffer:
    """The paper's cache replay: per-environment transitions of one step in a
    :class:`~leaky.learners.replay.RingBuffer`.

    Row i holds one environment's transition of one step: ``V, y, alpha, V_next, y_next``
    (T, N) and ``reward, cont`` (T,). Sampling returns ``Transitions`` shaped (T, batch, N).
    """

    FIELDS = ("V", "y", "alpha", "V_next", "y_next", "reward", "cont")

    def __init__(self, capacity: int, net: Network):
        self.xp = net.xp
        self.ring = RingBuffer(capacity, self.FIELDS, net.backend, what="LocalConfig.replay")

    def __len__(self):
        return len(self.ring)

    def add(self, tr: ul.Transitions) -> None:
        self.ring.put({f: self.xp.moveaxis(getattr(tr, f), 1, 0) for f in self.FIELDS})   # (B, T, …)

    def state_dict(self) -> dict:
        return self.ring.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.ring.load_state_dict(state)

    def sample(self, batch: int, rng) -> ul.Transitions:
        xp = self.xp
        rows = self.ring.rows(rng.integers(0, len(self.ring), batch))
        return ul.Transitions(*(xp.ascontiguousarray(xp.moveaxis(rows[f], 0, 1)) for f in self.FIELDS))
