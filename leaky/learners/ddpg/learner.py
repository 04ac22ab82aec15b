"""The DDPG learner: its configuration, exploration, replay, the critic and actor steps, targets
and checkpoints (the package docstring has the math)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from leaky.core.backend import Backend, get_backend, to_numpy
from leaky.core.errors import ConfigError, DivergenceError, InputError
from leaky.core.rngstate import int_seed
from leaky.core.validate import Choice, Int, Ints, Real, check_fields
from leaky.learners.base import Learner
from leaky.learners.ddpg.actor import ActorGrads, ActorParams, actor_backward, actor_forward, decoder_affine
from leaky.learners.ddpg.critic import Critic, soft_update
from leaky.learners.optim import Adam
from leaky.learners.records import CriticRecord, broadcast_to_agents
from leaky.learners.replay import ReplayBuffer
from leaky.model.network import Network


# ---------------------------------------------------------------------------------------------
# The learner
# ---------------------------------------------------------------------------------------------

NOISES = ("gaussian", "ou")


@dataclass(frozen=True)
class DDPGConfig:
    """Hyper-parameters of DDPG (defaults: Lillicrap et al. 2016 / CleanRL where they agree).

    Parameters
    ----------
    gamma : float
        Discount γ.
    tau : float
        Soft target update rate τ (``θ' ← τθ + (1-τ)θ'`` after every actor update).
    actor_lr, critic_lr : float
        Adam step sizes of the network's (K, b) and of the critic.
    batch_size : int
        Minibatch size of one update.
    buffer_size : int
        Replay capacity in transitions.
    noise : {"gaussian", "ou"}
        Exploration noise added to the greedy action. ``ou``: the AR(1) form of an
        Ornstein-Uhlenbeck process per env, ``x ← ρx + √(1-ρ²)·std·ε`` with
        ``ρ = 1 - ou_theta·ou_dt``, reset to 0 at episode ends; its stationary std is ``std``.
    noise_std : float
        Noise std in action units as a fraction of the action box half-width (0.1: 10 %).
    ou_theta, ou_dt : float
        Mean reversion and time step of the OU process (0.15, 0.01 as in OpenAI baselines).
    learning_starts : int
        Transitions stored before updates begin; until then ``act(explore=True)`` draws
        actions uniformly from the box (CleanRL's warm-up).
    updates_per_step : int
        Calls of :meth:`DDPGLearner.update` the training loop makes per vector env step.
    policy_delay : int
        Actor and target updates every ``policy_delay`` critic updates (1: plain DDPG).
    hidden : tuple of int
        Critic hidden widths.
    seed : int
        Seeds the critic initialisation, the exploration noise and the minibatch sampling
        (independent streams of one ``SeedSequence``); the network has its own seed.
    """

    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    batch_size: int = 256
    buffer_size: int = 1_000_000
    noise: str = "gaussian"
    noise_std: float = 0.1
    ou_theta: float = 0.15
    ou_dt: float = 1e-2
    learning_starts: int = 10_000
    updates_per_step: int = 1
    policy_delay: int = 1
    hidden: tuple[int, ...] = (400, 300)
    seed: int = 0

    def __post_init__(self):
        check_fields(self, self.RULES)
        if not 0.0 < self.ou_theta * self.ou_dt <= 1.0:
            raise ConfigError(f"DDPGConfig.ou_theta: got {self.ou_theta!r} with ou_dt = {self.ou_dt!r}, "
                              "expected ou_theta·ou_dt in (0, 1]")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# One rule per field of DDPGConfig (leaky/core/validate.py); a subclass's config adds its own.
DDPG_RULES = {
    "gamma": Real(0.0, 1.0), "tau": Real(0.0, 1.0, low_open=True),
    "actor_lr": Real(low=0.0, low_open=True), "critic_lr": Real(low=0.0, low_open=True),
    "batch_size": Int(low=1), "buffer_size": Int(low=1), "noise": Choice(NOISES),
    "noise_std": Real(low=0.0), "ou_theta": Real(low=0.0, low_open=True),
    "ou_dt": Real(low=0.0, low_open=True), "learning_starts": Int(low=0),
    "updates_per_step": Int(low=1), "policy_delay": Int(low=1), "hidden": Ints(low=1, min_len=1),
    "seed": Int(low=0),
}
DDPGConfig.RULES = DDPG_RULES   # a subclass with more fields: {**DDPG_RULES, ...}

# The settings every comparison in docs/results.md uses (a 128-128 critic: a third of the default
# 400-300's compute; it solves Pendulum-v1 anyway), also the main job's and `leaky bench solve`'s.
RESULTS_OPTIONS = {"hidden": (128, 128), "updates_per_step": 4, "learning_starts": 1000, "batch_size": 256}


class DDPGLearner(Learner):
    """DDPG whose actor is a leaky :class:`~leaky.Network` (trained in place).

    Parameters
    ----------
    net : Network
        The actor; ``update`` changes ``net.K`` and ``net.b`` in place.
    cfg : DDPGConfig
    backend : Backend or str, optional
        Must be the network's backend (default: it).

    Notes
    -----
    The replay stores ``(s, a, r, s', terminated, V, V')`` with ``V`` the voltages carried into
    the step and ``V'`` those carried into the next. The actor update recomputes ``μ(V, s)``
    with the current weights from the stored ``V``; the critic target evaluates the target
    actor from the stored ``V'``. Both are approximations for a recurrent actor: ``V`` and
    ``V'`` were produced by the behaviour policy's weights at collection time, not by the
    current (or target) weights, and the critic ``Q(s, a)`` does not see ``V``. For a layered
    network with λ = 1, clamped sensors and ℓ = layers (an MLP) ``V`` does not affect the
    action and the update is exactly DDPG's.
    """

    def __init__(self, net: Network, cfg: DDPGConfig | None = None,
                 backend: Backend | str | None = None):
        if not isinstance(net, Network):
            raise ConfigError(f"net: got {type(net).__name__}, expected a leaky.Network")
        cfg = DDPGConfig() if cfg is None else cfg
        if not isinstance(cfg, DDPGConfig):
            raise ConfigError(f"cfg: got {type(cfg).__name__}, expected a leaky.DDPGConfig")
        be = net.backend if backend is None else get_backend(backend)
        if be.name != net.backend.name:
            raise ConfigError(f"backend: got {be.name!r}, expected the network's backend "
                              f"{net.backend.name!r}")
        super().__init__(net)
        self.cfg, self.backend = cfg, net.backend
        ncfg = net.config
        self.n_obs, self.n_act, self.N = ncfg.n_inputs, ncfg.n_outputs, ncfg.n_neurons
        self._flags = dict(n_inputs=ncfg.n_inputs, activation=ncfg.activation,
                           inhibition=ncfg.inhibition, kappa=ncfg.kappa,
                           pulse=ncfg.input_mode == "pulse")
        self.half, self.mid = decoder_affine(net)

        critic_seed, noise_seed, sample_seed = np.random.SeedSequence(cfg.seed).spawn(3)
        self.critic = Critic(self.n_obs, self.n_act, cfg.hidden, self.backend, critic_seed)
        self.critic_target = self.critic.copy()
        self.K_target, self.b_target = net.K.copy(), net.b.copy()
        self.critic_optim = Adam(self.critic.params, lr=cfg.critic_lr)
        self.actor_optim = Adam([net.K, net.b], lr=cfg.actor_lr)
        self.buffer = ReplayBuffer(cfg.buffer_size, self.n_obs, self.n_act, self.N, self.backend)
        self._noise_rng = self.stream("noise", int_seed(noise_seed))     # exploration
        self._sample_rng = self.stream("sample", int_seed(sample_seed))  # replay minibatches
        self._ou = None  # (B, d_act) OU state, made at the first exploring act
        self.n_updates = 0
        self.last_cache = None       # the last act's StepCache (the trace's voltages="all")

    @property
    def xp(self):
        return self.backend.xp

    def actor_params(self, target: bool = False) -> ActorParams:
        """The network's current (or the target) parameters as :class:`ActorParams`."""
        K, b = (self.K_target, self.b_target) if target else (self.net.K, self.net.b)
        return ActorParams(K, b, self.net.leak, self.net.mask, self.half, self.mid)

    # -- acting -----------------------------------------------------------------------------

    def act(self, V, obs, explore: bool):
        """One environment step of the actor for B envs.

        Parameters
        ----------
        V : (B, N) carried voltages (``net.reset(B)`` at episode start)
        obs : (B, d_obs) observations
        explore : bool
            Add exploration noise to the greedy action (uniform in the box before
            ``learning_starts`` transitions are stored), clipped to the box.

        Returns
        -------
        V_next : (B, N) voltages to carry into the next step (greedy forward, noise-free)
        action : (B, d_act) backend array (``leaky.to_numpy`` before ``env.step``)
        """
        V_next, action, self.last_cache = self.net.step(V, obs)
        if not explore:
            return V_next, action
        xp, dtype = self.xp, self.backend.dtype
        B = action.shape[0]
        low, high = self.mid - self.half, self.mid + self.half
        if len(self.buffer) < self.cfg.learning_starts:
            uniform = self._noise_rng.random((B, self.n_act))
            return V_next, low + (high - low) * uniform
        eps = self._noise_rng.standard_normal((B, self.n_act))
        if self.cfg.noise == "ou":
            if self._ou is None or self._ou.shape[0] != B:
                self._ou = xp.zeros((B, self.n_act), dtype=dtype)
            rho = 1.0 - self.cfg.ou_theta * self.cfg.ou_dt
            # math.sqrt: a Python float keeps float32 arrays float32 (a NumPy scalar would not)
            self._ou = rho * self._ou + math.sqrt(1.0 - rho * rho) * eps
            eps = self._ou
        action = xp.clip(action + self.cfg.noise_std * self.half * eps, low, high)
        return V_next, action

    def observe(self, obs, action, reward, next_obs, terminated, truncated, V_start,
                V_next_start) -> None:
        """Store B transitions.

        Parameters
        ----------
        obs, next_obs : (B, d_obs)  the observation acted on and the one that followed (on an
            episode end the final observation, not the reset one)
        action : (B, d_act) the action taken;  reward : (B,)
        terminated, truncated : (B,) bool; a terminal transition does not bootstrap, a
            truncated one does (as in Gymnasium); both reset the OU noise of that env
        V_start : (B, N) voltages passed to ``act``;  V_next_start : (B, N) those it returned
        """
        be = self.backend
        reward = _checked(be, "reward", reward, 1)
        B = reward.shape[0]
        obs = _checked(be, "obs", obs, 2)
        next_obs = _checked(be, "next_obs", next_obs, 2)
        terminated_np = np.asarray(to_numpy(terminated), dtype=bool).reshape(-1)
        truncated_np = np.asarray(to_numpy(truncated), dtype=bool).reshape(-1)
        if terminated_np.shape != (B,) or truncated_np.shape != (B,):
            raise InputError(f"observe: terminated/truncated have {terminated_np.shape}/"
                             f"{truncated_np.shape} entries, expected ({B},)")
        self.buffer.add(obs, action, reward, next_obs, terminated_np.astype(np.float64),
                        V_start, V_next_start)
        if self.record_critic:
            q, td = self.critic_values(obs, action, reward, next_obs, terminated_np, V_next_start)
            self._critic_record = CriticRecord(self.critic_lag, broadcast_to_agents(q, self.n_obs, self.N, self.xp),
                                               broadcast_to_agents(td, self.n_obs, self.N, self.xp))
        if self._ou is not None and self._ou.shape[0] == B:
            done = terminated_np | truncated_np
            if done.any():
                self._ou[be.asarray(np.flatnonzero(done), dtype=np.int64)] = 0.0

    # -- the trace's critic record (leaky.learners.records) -------------------------------------------

    critic_lag = 0   # observe() records the transition it stores, at the step it happens

    def critic_values(self, obs, action, reward, next_obs, terminated, V_next_start):
        """``Q(s, a)`` and the TD error ``δ = r + γ(1 − terminated)·Q'(s', μ'(V', s')) − Q(s, a)``
        of B transitions, with the critic and the targets as they are now (before the updates
        of this step): (B,) each. What a trace stores for every agent neuron, since one critic
        judges the whole network's action."""
        be, xp, cfg = self.backend, self.xp, self.cfg
        obs, next_obs = be.asarray(obs), be.asarray(next_obs)
        action, reward = be.asarray(action), be.asarray(reward)
        term = be.asarray(np.asarray(to_numpy(terminated), dtype=np.float64).reshape(-1))
        next_tape = actor_forward(self.actor_params(target=True), be.asarray(V_next_start),
                                  self.net.encode(next_obs), ell=self.net.delay, xp=xp, **self._flags)
        q_next, _ = self.critic_target.forward(next_obs, next_tape.action)
        q, _ = self.critic.forward(obs, action)
        return q, reward + cfg.gamma * (1.0 - term) * q_next - q

    # -- learning ---------------------------------------------------------------------------

    def ready(self) -> bool:
        """True once enough transitions are stored for :meth:`update` to learn."""
        return len(self.buffer) >= max(self.cfg.learning_starts, self.cfg.batch_size)

    def update(self) -> dict:
        """One gradient step of the critic (and, every ``policy_delay``, of the actor).

        Returns
        -------
        dict of float
            ``critic_loss`` (mean squared TD error), ``q`` (mean Q(s, a) on the batch),
            ``target_q`` (mean TD target); on actor updates also ``actor_q`` (mean
            Q(s, μ(V, s)) before the step) and ``actor_grad_norm`` (of ∂(−actor_q)/∂(K, b)).
            Empty until :meth:`ready`.
        """
        if not self.ready():
            return {}
        cfg, xp, net = self.cfg, self.xp, self.net
        batch = self.buffer.sample(cfg.batch_size, self._sample_rng)
        B = cfg.batch_size

        # critic: regress Q(s, a) on r + γ(1 - terminated) Q'(s', μ'(V', s'))
        q_next, _ = self.critic_target.forward(batch.next_obs, self.target_action(batch))
        target = batch.reward + cfg.gamma * (1.0 - batch.terminated) * q_next
        q, cache = self.critic.forward(batch.obs, batch.action)
        td = q - target
        critic_loss = (td * td).mean()
        grads, _ = self.critic.backward(cache, (2.0 / B) * td)
        self.critic_optim.step(self.critic.params, grads)
        stats = {"critic_loss": critic_loss, "q": q.mean(), "target_q": target.mean()}

        if self.n_updates % cfg.policy_delay == 0:
            stats.update(self.actor_step(batch))
            soft_update([self.K_target, self.b_target], [net.K, net.b], cfg.tau)
            self.critic_target.soft_update_from(self.critic, cfg.tau)
        self.n_updates += 1
        # one device-to-host transfer for every scalar and the weights' finiteness
        finite = xp.isfinite(net.K).all() & xp.isfinite(net.b).all()
        host = to_numpy(xp.stack([xp.asarray(v, dtype=q.dtype) for v in stats.values()]
                                 + [finite.astype(q.dtype)]))
        metrics = {k: float(v) for k, v in zip(stats, host[:-1])}
        if not (host[-1] and np.isfinite(host[:-1]).all()):
            self._diverged(metrics)
        return metrics

    def target_action(self, batch):
        """``μ'(V', s')`` (B, d_act): the target actor's greedy action at the next states."""
        tape = actor_forward(self.actor_params(target=True), batch.V_next,
                             self.net.encode(batch.next_obs), ell=self.net.delay, xp=self.xp,
                             **self._flags)
        return tape.action

    def bptt_gradient(self, batch, params: ActorParams | None = None) -> tuple[Any, ActorGrads]:
        """``(Q(s, μ(V, s)) (B,), ∂(−mean Q)/∂(K, b, α))`` on ``batch`` by BPTT through the ℓ
        internal steps (the gradient DDPG descends; also what credit rules are compared with)."""
        xp, net = self.xp, self.net
        params = self.actor_params() if params is None else params
        tape = actor_forward(params, batch.V, net.encode(batch.obs), ell=net.delay, xp=xp,
                             **self._flags)
        q_pi, cache = self.critic.forward(batch.obs, tape.action)
        B = q_pi.shape[0]
        _, dq_da = self.critic.backward(cache, xp.full(B, 1.0 / B, dtype=q_pi.dtype),
                                        param_grads=False)
        return q_pi, actor_backward(params, tape, -dq_da, xp=xp, **self._flags)

    def actor_step(self, batch) -> dict:
        """Ascend mean Q(s, μ(V, s)) by BPTT through the ℓ internal steps (one Adam step)."""
        net, xp = self.net, self.xp
        q_pi, g = self.bptt_gradient(batch)
        self.actor_optim.step([net.K, net.b], [g.K, g.b])
        net.K *= net.mask
        return {"actor_q": q_pi.mean(),
                "actor_grad_norm": xp.sqrt((g.K * g.K).sum() + (g.b * g.b).sum())}

    def _diverged(self, metrics):
        xp = self.xp
        rows = xp.flatnonzero(~(xp.isfinite(self.net.K).all(axis=1) & xp.isfinite(self.net.b)))
        where = (f"neuron {int(rows[0])} (and {rows.size - 1} more)" if rows.size else
                 f"metrics {[k for k, v in metrics.items() if not np.isfinite(v)]}")
        raise DivergenceError(f"DDPG update {self.n_updates}: non-finite weights or losses "
                              f"({where}); expected finite values: lower the learning rates or "
                              f"check the rewards")

    # -- checkpoints ------------------------------------------------------------------------

    def _optimizers(self):
        return (("actor_optim", self.actor_optim), ("critic_optim", self.critic_optim))

    def state_dict(self, include_replay: bool = True) -> dict:
        """Everything needed to resume learning, as NumPy arrays (a flat dict).

        Keys: ``actor.K``, ``actor.b``, ``actor_target.K``, ``actor_target.b``, ``critic.<i>``,
        ``critic_target.<i>``, ``actor_optim.<k>``, ``critic_optim.<k>``, ``n_updates``,
        ``rng.<stream>`` for every random stream (:meth:`Learner.rng_state`: ``noise``,
        ``sample``, and a subclass's own; CuPy's are reseeded on load), ``ou`` (when OU noise is running) and, with ``include_replay``, ``replay.<field>``:
        the stored transitions, oldest first (``capacity·(2·d_obs + d_act + 2 + 2·N)`` values
        when full: set ``include_replay=False`` for weights-only snapshots).
        """
        d = {"actor.K": to_numpy(self.net.K).copy(), "actor.b": to_numpy(self.net.b).copy(),
             "actor_target.K": to_numpy(self.K_target).copy(),
             "actor_target.b": to_numpy(self.b_target).copy(),
             "n_updates": np.asarray(self.n_updates, dtype=np.int64)}
        for i, (p, pt) in enumerate(zip(self.critic.params, self.critic_target.params)):
            d[f"critic.{i}"] = to_numpy(p).copy()
            d[f"critic_target.{i}"] = to_numpy(pt).copy()
        for name, optim in self._optimizers():
            for k, v in optim.state_dict().items():
                d[f"{name}.{k}"] = v
        d.update(self.rng_state())
        if self._ou is not None:
            d["ou"] = to_numpy(self._ou).copy()
        if include_replay:
            for k, v in self.buffer.state_dict().items():
                d[f"replay.{k}"] = v
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned (same network, critic and buffer shapes)."""
        def put(key, dst):
            if key not in d:
                raise InputError(f"load_state_dict: missing {key!r}")
            value = np.asarray(d[key])
            if value.shape != tuple(dst.shape):
                raise InputError(f"load_state_dict: {key} has shape {value.shape}, expected "
                                 f"{tuple(dst.shape)}")
            dst[...] = self.backend.asarray(value)

        put("actor.K", self.net.K)
        put("actor.b", self.net.b)
        self.net.K *= self.net.mask
        put("actor_target.K", self.K_target)
        put("actor_target.b", self.b_target)
        for i, (p, pt) in enumerate(zip(self.critic.params, self.critic_target.params)):
            put(f"critic.{i}", p)
            put(f"critic_target.{i}", pt)
        for name, optim in self._optimizers():
            prefix = name + "."
            optim.load_state_dict({k[len(prefix):]: v for k, v in d.items()
                                   if k.startswith(prefix)})
        self.n_updates = int(np.asarray(d.get("n_updates", 0)))
        self.load_rng_state(d, resume_key=self.n_updates)
        self._ou = self.backend.asarray(np.asarray(d["ou"])) if "ou" in d else None
        if "replay.reward" in d:
            self.buffer.load_state_dict({k[len("replay."):]: v for k, v in d.items()
                                         if k.startswith("replay.")})




def _checked(be: Backend, name: str, x, ndim: int):
    """``x`` on the backend, checked for rank and finiteness (docs/design.md#9-errors)."""
    if not hasattr(x, "shape"):
        x = np.asarray(x, dtype=np.float64)
    if len(x.shape) != ndim:
        raise InputError(f"observe: {name} has shape {tuple(x.shape)}, expected {ndim} dimensions "
                         f"with the batch first")
    x = be.asarray(x)
    if not bool(be.xp.isfinite(x).all()):
        raise InputError(f"observe: {name} contains NaN or inf values; expected finite values")
    return x
