"""``leaky align``: the paper's Experiment 1, local gradient estimates against BPTT's.

DDPG trains the network (the backprop baseline, :mod:`leaky.learners.ddpg`). Alongside, every local
estimator learns from the same transitions with its actor step switched off (``lr_actor = 0``),
so it evaluates DDPG's policy instead of changing it. Every ``every`` DDPG updates, on one
minibatch drawn from DDPG's replay, each estimator's row gradient ``G`` is compared with BPTT's
ascent direction ``R = ∂ mean_b Q(s_b, μ(V_b, s_b)) / ∂(K, b)``::

    row_cos[n]    cos(G[n], R[n])         over neuron n's masked weights and its bias
    row_corr[n]   Pearson(G[n], R[n])     the same entries
    sign[n]       mean 1[sign G = sign R] the same entries
    cos_<layer>   cos of the flattened update of a layer's rows (cos_all: every agent row)
    slope_corr[n] Pearson over the batch of ∂Q_n/∂α (the neuron's own critic's slope at α = μ_n)
                  with the global ∂Q/∂α_n at its decision step (per-neuron critics only)
    slope_corr_<layer>  the same, pooled over the layer's neurons and the batch

Estimators (``ESTIMATORS``)::

    advantage, mlp   per-neuron critics (rule=critic, causal clock, view all): LocalLearner
    linear           the paper's literal rule (rule=literal: linear critic, internal clock,
                     presynaptic view); its slope is a constant u_n, so slope_corr[n] is NaN
                     and only the pooled slope_corr_<layer> is defined
    perturb1/8/64    activity tangents, k = 1, 8, 64 (SharedCriticLearner)
    feedback, dfa    learned and fixed random feedback weights (SharedCriticLearner)

The shared-critic rules score DDPG's own critic's broadcast ``g = ∂Q/∂a`` (their learner's
critic is replaced by DDPG's): what is measured is the credit rule, not a second critic's error.
``feedback`` learns ``F`` from one minibatch per environment step; ``perturb`` and ``dfa`` have
nothing to learn. The per-neuron critics learn online, one step late, from every environment
step's cache, which is why the behaviour policy is DDPG's network acting with per-neuron noise
ξ ~ N(0, noise_std²) on every agent neuron (not only on the action): a neuron's critic regresses
on its own noise. DDPG is off-policy and learns from the same transitions.

Per-neuron statistics go to the trace's ``training/`` table as vectors over the agent neurons
(``<estimator>.row_corr`` …), per-layer ones as scalars; :func:`summarise` gives per layer the
median and quartiles over neurons and measurements, :func:`plot_alignment` draws them over
training. Docs: docs/align.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from leaky.core.backend import to_numpy
from leaky.model.config import NetworkConfig
from leaky.learners.ddpg import DDPGConfig, DDPGLearner, actor_forward
from leaky.core.errors import ConfigError
from leaky.model.network import Network
from leaky.core.validate import Choice, Int, Ints, Real, Rule, Text, check_fields

CRITIC_ESTIMATORS = ("advantage", "mlp", "linear")
SHARED_ESTIMATORS = ("perturb1", "perturb8", "perturb64", "feedback", "dfa")
ESTIMATORS = CRITIC_ESTIMATORS + SHARED_ESTIMATORS
ROW_STATS = ("row_cos", "row_corr", "sign")
BACKENDS = ("numpy", "cpu", "cuda")


@dataclass(frozen=True)
class AlignConfig:
    """One alignment run (``leaky align``).

    Parameters
    ----------
    env : Gymnasium id with Box spaces.
    steps : environment steps, summed over the ``n_envs`` environments.
    hidden : hidden widths of the layered network ``[d_obs, *hidden, d_act]`` (ℓ = layers).
    n_envs, seed, backend : as ``leaky train``'s.
    estimators : names from :data:`ESTIMATORS`.
    every : DDPG updates between two measurements.
    batch_size, learning_starts, updates_per_step, critic_hidden : DDPG's (docs/results.md's
        settings); the measurement minibatch has ``batch_size`` rows too.
    noise_std : per-neuron exploration noise of the behaviour network (every agent neuron).
    """

    env: str = "Pendulum-v1"
    steps: int = 20_000
    hidden: tuple = (64, 64)
    n_envs: int = 1
    seed: int = 0
    backend: str = "cpu"
    estimators: tuple = ESTIMATORS
    every: int = 1000
    batch_size: int = 256
    learning_starts: int = 1000
    updates_per_step: int = 4
    critic_hidden: tuple = (128, 128)
    noise_std: float = 0.1

    def __post_init__(self):
        check_fields(self, self.RULES)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Names(Rule):
    """One or more distinct names from a fixed set (a comma list on the command line); stored
    as a tuple."""

    def __init__(self, options):
        self.options = tuple(options)
        self.expected = f"distinct names from {list(self.options)}"

    def __call__(self, value):
        items = tuple(value.split(",")) if isinstance(value, str) else value
        if isinstance(items, Mapping) or not isinstance(items, Iterable):
            raise ValueError(self.expected)
        items = tuple(items)
        if not items or len(set(items)) != len(items) or any(v not in self.options for v in items):
            raise ValueError(self.expected)
        return items


ALIGN_RULES = {
    "env": Text(), "steps": Int(low=1), "hidden": Ints(low=1, min_len=1), "n_envs": Int(low=1),
    "seed": Int(low=0), "backend": Choice(BACKENDS), "estimators": Names(ESTIMATORS),
    "every": Int(low=1), "batch_size": Int(low=1), "learning_starts": Int(low=0),
    "updates_per_step": Int(low=1), "critic_hidden": Ints(low=1, min_len=1),
    "noise_std": Real(low=0.0, low_open=True),
}
AlignConfig.RULES = ALIGN_RULES

# ---------------------------------------------------------------------------------------------
# The estimators: each gives a row gradient (G, Gb) on a minibatch (and the critics a slope)
# ---------------------------------------------------------------------------------------------


class CriticEstimator:
    """A per-neuron-critic rule evaluating the behaviour policy: a
    :class:`~leaky.learners.local.LocalLearner` with ``lr_actor = 0``, learning online from every step.

    Its row gradient on a minibatch is the actor step the rule would take there (module
    docstring of ``kernels/update_local/``): ``G[n] = mean[g_n σ'(y_n) V] ⊙ M[n]`` with the
    slope ``g_n = ∂Q_n/∂α`` at ``α = μ_n``, at the decision step (``causal``) or averaged over
    every internal step (``internal``, the literal rule).
    """

    shared = False

    def __init__(self, name: str, net: Network, cfg: AlignConfig, seed: int):
        from leaky.learners.local import LocalConfig, LocalLearner

        opts = {"rule": "literal"} if name == "linear" else {"rule": "critic", "family": name}
        self.name, self.net = name, net
        self.local = LocalConfig(**opts, lr_actor=0.0, noise_std=cfg.noise_std, seed=seed)
        self.learner = LocalLearner(net, self.local)

    def learn_step(self, tr) -> None:
        """Learn one environment step's transition (:class:`~leaky.learners.base.Transition`)."""
        self.learner.learn(tr)

    def learn_batch(self, batch) -> None:
        """Nothing: the per-neuron critics learn from the step's own transitions."""

    def slopes(self, V, y):
        """``∂Q_n/∂α`` at ``α = μ_n`` (B, N) of every neuron's critic for the states ``V, y``
        (B, N) of one internal step (0 on the sensors)."""
        from leaky.kernels import update_local as ul
        from leaky.kernels import update_mlp as um

        net, be, xp = self.net, self.net.backend, self.net.xp
        N, n_in = net.n_neurons, net.config.n_inputs
        theta = self.learner.theta
        if self.local.family == "mlp":   # the float64 reference: one call per measurement
            out = um.slopes_mlp_reference(to_numpy(V), to_numpy(y), to_numpy(net.mask), to_numpy(theta),
                                          n_in, self.learner.activation, self.local.view)
            return be.asarray(out, dtype=theta.dtype)
        lay = ul.critic_layout(N)
        u = theta[:, lay.u]
        if self.local.family == "linear":
            slope = xp.broadcast_to(u, (V.shape[0], N)).copy()
        else:
            feat = (net.mask != 0).astype(theta.dtype) if self.local.view == "presynaptic" else 1.0
            slope = u + V @ (theta[:, lay.p] * feat).T
        slope[:, :n_in] = 0.0
        return slope

    def gradient(self, batch, tape):
        """``(G (N, N), Gb (N,), slope (B, N))`` on the minibatch whose greedy forward pass is
        ``tape`` (:func:`~leaky.learners.ddpg.actor_forward`); ``slope`` at each neuron's decision step."""
        net, xp = self.net, self.net.xp
        ell, B, N = tape.y.shape
        n_in = net.config.n_inputs
        tau = net.decision_step
        agents = np.arange(n_in, N)
        G, Gb, slope = xp.zeros((N, N)), xp.zeros(N), xp.zeros((B, N))
        slices = {t: self.slopes(tape.V[t], tape.y[t]) for t in range(ell)}
        for t in sorted(set(tau[agents].tolist())):
            idx = net.backend.asarray(agents[tau[agents] == t], dtype=np.int64)
            slope[:, idx] = slices[t][:, idx]
        if self.local.clock == "causal":
            for t in sorted(set(tau[agents].tolist())):
                idx = net.backend.asarray(agents[tau[agents] == t], dtype=np.int64)
                S = slope[:, idx] * _dsigma(tape.y[t][:, idx], net)
                G[idx] = (S.T @ tape.V[t]) / B
                Gb[idx] = S.mean(axis=0)
        else:   # the internal clock: the rule's step averages every internal step's transition
            for t in range(ell):
                S = slices[t] * _dsigma(tape.y[t], net)
                G += (S.T @ tape.V[t]) / (B * ell)
                Gb += S.mean(axis=0) / ell
            G[:n_in], Gb[:n_in] = 0.0, 0.0
        return G * net.mask, Gb, slope


class SharedEstimator:
    """A shared-critic rule (``perturb``, ``feedback``, ``dfa``) scoring DDPG's critic: a
    :class:`~leaky.learners.shared_critic.SharedCriticLearner` with ``lr_actor = 0`` whose critic is
    DDPG's own, so its ``G`` is the credit rule's estimate of BPTT's on the same critic."""

    shared = True

    def __init__(self, name: str, net: Network, ddpg: DDPGLearner, cfg: AlignConfig, seed: int):
        from leaky.learners.local import LocalConfig
        from leaky.learners.shared_critic import SharedCriticLearner

        rule = "perturb" if name.startswith("perturb") else name
        k = int(name[len("perturb"):]) if rule == "perturb" else 1
        self.name = name
        self.local = LocalConfig(rule=rule, tangents=k, lr_actor=0.0, batch_size=cfg.batch_size,
                                 replay_size=cfg.batch_size, learning_starts=0,
                                 critic_hidden=cfg.critic_hidden, seed=seed)
        self.learner = SharedCriticLearner(net, self.local)
        self.learner.critic = ddpg.critic   # the broadcast g = ∂Q/∂a is DDPG's critic's

    def learn_step(self, tr) -> None:
        """Nothing: the shared rules learn from replay minibatches."""

    def learn_batch(self, batch) -> None:
        """``feedback``: one step of the feedback weights' running mean (the actor step is off)."""
        if self.local.rule == "feedback":
            self.learner.actor_step(batch)

    def gradient(self, batch, tape):
        """``(G, Gb, None)`` on ``batch``: the credit update with the actor step switched off."""
        self.learner.actor_step(batch)
        return self.learner.G, self.learner.Gb, None


def _dsigma(y, net: Network):
    from leaky.kernels.scalar import ACTIVATIONS, sigma_grad

    return sigma_grad(y, ACTIVATIONS[net.config.activation], net.xp)


def make_estimators(cfg: AlignConfig, net: Network, ddpg: DDPGLearner) -> list:
    """The estimators ``cfg.estimators`` names, each seeded apart from the others."""
    out = []
    for i, name in enumerate(cfg.estimators):
        seed = 1000 * cfg.seed + i + 1
        out.append(CriticEstimator(name, net, cfg, seed) if name in CRITIC_ESTIMATORS
                   else SharedEstimator(name, net, ddpg, cfg, seed))
    return out


# ---------------------------------------------------------------------------------------------
# The statistics of one measurement
# ---------------------------------------------------------------------------------------------


def pearson(a, b, axis=0):
    """Pearson correlation of ``a`` and ``b`` along ``axis`` (NumPy, float64); NaN where either
    is constant."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    da = a - a.mean(axis=axis, keepdims=True)
    db = b - b.mean(axis=axis, keepdims=True)
    denom = np.sqrt((da * da).sum(axis=axis) * (db * db).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (da * db).sum(axis=axis) / np.where(denom > 0, denom, 1.0), np.nan)


def row_statistics(G, Gb, R, Rb, mask, agents) -> dict:
    """Per agent neuron n, over its masked weights and its bias (NumPy arrays, float64):
    ``row_cos`` cos(G[n], R[n]), ``row_corr`` Pearson(G[n], R[n]), ``sign`` the fraction of
    entries whose signs agree. Each (len(agents),); NaN where a row is all zero (cos) or
    constant (corr)."""
    A = np.concatenate([G[agents], Gb[agents, None]], axis=1).astype(np.float64)
    Rr = np.concatenate([R[agents], Rb[agents, None]], axis=1).astype(np.float64)
    W = np.concatenate([mask[agents] != 0, np.ones((len(agents), 1), dtype=bool)], axis=1)
    n = W.sum(axis=1)
    Aw, Rw = np.where(W, A, 0.0), np.where(W, Rr, 0.0)
    denom = np.sqrt((Aw * Aw).sum(axis=1) * (Rw * Rw).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, (Aw * Rw).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)
    dA = np.where(W, A - (Aw.sum(axis=1) / n)[:, None], 0.0)
    dR = np.where(W, Rr - (Rw.sum(axis=1) / n)[:, None], 0.0)
    dd = np.sqrt((dA * dA).sum(axis=1) * (dR * dR).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(dd > 0, (dA * dR).sum(axis=1) / np.where(dd > 0, dd, 1.0), np.nan)
    sign = (W & (np.sign(A) == np.sign(Rr))).sum(axis=1) / n
    return {"row_cos": cos, "row_corr": corr, "sign": sign}


def measure(estimators: list, ddpg: DDPGLearner, batch, groups: dict) -> dict:
    """One measurement on ``batch``: every estimator's statistics against BPTT's gradient.

    Returns the row of the ``training/`` table: ``<estimator>.<stat>`` (n_agents,) vectors for
    ``row_cos``, ``row_corr``, ``sign`` (and ``slope_corr`` for the per-neuron critics), and
    scalars ``<estimator>.cos_<group>`` (``cos_all``: the whole flattened update) and
    ``<estimator>.slope_corr_<group>`` (pooled over a layer's neurons and the batch).
    """
    from leaky.learners.shared_critic import group_cosines

    net, be = ddpg.net, ddpg.backend
    N, n_in = net.n_neurons, net.config.n_inputs
    agents = np.arange(n_in, N)
    _, ref = ddpg.bptt_gradient(batch)          # ∂(−mean Q)/∂(K, b, α): BPTT descends it
    R, Rb = -ref.K, -ref.b
    tape = actor_forward(ddpg.actor_params(), batch.V, net.encode(batch.obs), ell=net.delay,
                         xp=be.xp, **_forward_flags(net))
    B = tape.y.shape[1]
    # ∂Q_b/∂α_bn at each neuron's decision step: the global credit a neuron's slope estimates
    dq_dalpha = -B * to_numpy(ref.alpha)[net.decision_step, :, np.arange(N)].T   # (B, N)
    R_np, Rb_np, mask_np = to_numpy(R), to_numpy(Rb), to_numpy(net.mask)
    row: dict[str, Any] = {}
    for est in estimators:
        G, Gb, slope = est.gradient(batch, tape)
        for k, v in group_cosines(G, Gb, R, Rb, groups, be).items():
            row[f"{est.name}.{k}"] = float(v)
        for k, v in row_statistics(to_numpy(G), to_numpy(Gb), R_np, Rb_np, mask_np, agents).items():
            row[f"{est.name}.{k}"] = v
        if slope is not None:
            s = to_numpy(slope)
            row[f"{est.name}.slope_corr"] = pearson(s[:, agents], dq_dalpha[:, agents], axis=0)
            for name, ids in groups.items():
                row[f"{est.name}.slope_corr_{name}"] = float(pearson(s[:, ids].reshape(-1),
                                                                     dq_dalpha[:, ids].reshape(-1)))
    return row


def _forward_flags(net: Network) -> dict:
    c = net.config
    return dict(n_inputs=c.n_inputs, activation=c.activation, inhibition=c.inhibition,
                kappa=c.kappa, pulse=c.input_mode == "pulse")


def training_fields(estimators, groups: dict, n_agents: int) -> dict:
    """The ``training/`` columns of a run: ``{name: shape}``."""
    out = {"critic_loss": (), "actor_q": (), "train_return": ()}
    for name in estimators:
        for stat in ROW_STATS:
            out[f"{name}.{stat}"] = (n_agents,)
        for g in (*groups, "all"):
            out[f"{name}.cos_{g}"] = ()
        if name in CRITIC_ESTIMATORS:
            out[f"{name}.slope_corr"] = (n_agents,)
            for g in groups:
                out[f"{name}.slope_corr_{g}"] = ()
    return out


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class AlignResult:
    """What :func:`align` measured.

    Attributes
    ----------
    config : AlignConfig
    groups : ``{layer: neuron ids}`` (:func:`~leaky.learners.shared_critic.layer_groups`)
    n_inputs : int, the sensors (per-neuron vectors are indexed by ``id − n_inputs``)
    table : ``{"step": (M,), column: (M, …)}``, the ``training/`` table's rows
    episode_returns : training returns of the episodes that ended (behaviour policy)
    updates : DDPG updates made
    """

    config: AlignConfig
    groups: dict
    n_inputs: int
    table: dict
    episode_returns: list
    updates: int

    def summary(self) -> dict:
        return summarise(self.table, self.groups, self.n_inputs, self.config.estimators)


def align(cfg: AlignConfig, trace_path: str | None = None, progress: bool = False) -> AlignResult:
    """Train DDPG on ``cfg.env`` and measure every estimator against BPTT every ``cfg.every``
    updates (module docstring); writes the rows to a trace's ``training/`` table if asked."""
    from leaky.learners.base import Transition, _merge_rows
    from leaky.learners.shared_critic import layer_groups
    from leaky.training.loop import make_envs

    envs = make_envs(cfg.env, cfg.n_envs)
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    d_obs, d_act = int(np.prod(obs_space.shape)), int(np.prod(act_space.shape))
    net = Network(NetworkConfig.layered([d_obs, *cfg.hidden, d_act], seed=cfg.seed),
                  backend=cfg.backend, observation_space=obs_space, action_space=act_space)
    be, xp, N = net.backend, net.xp, net.n_neurons
    ddpg = DDPGLearner(net, DDPGConfig(hidden=cfg.critic_hidden, updates_per_step=cfg.updates_per_step,
                                       learning_starts=cfg.learning_starts, batch_size=cfg.batch_size,
                                       buffer_size=max(cfg.steps, cfg.batch_size), seed=cfg.seed))
    estimators = make_estimators(cfg, net, ddpg)
    groups = layer_groups(net)
    n_in = net.config.n_inputs
    columns = training_fields(cfg.estimators, groups, N - n_in)
    trace = None
    if trace_path is not None:
        import leaky
        from leaky.trace import Trace

        trace = Trace(trace_path, n_envs=cfg.n_envs, obs_dim=d_obs, act_dim=d_act, n_neurons=N,
                      delay=net.delay, training_fields=columns, observation_space=obs_space,
                      action_space=act_space, env_id=cfg.env, seeds={"align": cfg.seed},
                      config={"align": cfg.to_dict(), "network": net.config.to_dict(),
                              "groups": {k: v.tolist() for k, v in groups.items()},
                              "leaky": leaky.__version__})
    std = np.full(N, cfg.noise_std)
    std[:n_in] = 0.0
    noise_rng = be.rng(np.random.SeedSequence([cfg.seed, 2]).generate_state(1)[0] >> 1)
    measure_rng = xp.random.default_rng(int(np.random.SeedSequence([cfg.seed, 3]).generate_state(1)[0]))
    batch_rng = xp.random.default_rng(int(np.random.SeedSequence([cfg.seed, 4]).generate_state(1)[0]))
    rows: list[dict] = []
    returns: list[float] = []
    ep_return = np.zeros(cfg.n_envs)
    last_metrics: dict = {}
    pending = None   # step t's cache, noise and outcome, learned at step t + 1
    iterations = math.ceil(cfg.steps / cfg.n_envs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=iterations * cfg.n_envs, desc=f"align {cfg.env}", unit="step")
    try:
        obs, _ = envs.reset(seed=cfg.seed)
        V = net.reset(cfg.n_envs)
        for it in range(iterations):
            noise = net.sample_noise(noise_rng, cfg.n_envs, std)
            V_end, action, cache = net.step(V, obs, noise)
            next_obs, reward, term, trunc, info = envs.step(to_numpy(action))
            done = term | trunc
            final_obs = next_obs
            if done.any():
                final_obs = next_obs.copy()
                for i in np.flatnonzero(done):
                    final_obs[i] = info["final_obs"][i]
            ddpg.observe(obs, action, reward, final_obs, term, trunc, V, V_end)
            if pending is not None:   # the per-neuron critics learn step t−1, completed by t
                next_cache = cache
                if pending["boot"] is not None:
                    next_cache = _merge_rows(xp, cache, pending["boot"], pending["truncated"])
                tr = Transition(pending["cache"], pending["noise"], pending["reward"],
                                pending["terminated"], next_cache)
                for est in estimators:
                    est.learn_step(tr)
            boot_rows = trunc & ~term
            boot = (net.step(V_end, final_obs, net.sample_noise(noise_rng, cfg.n_envs, std))[2]
                    if boot_rows.any() else None)
            pending = {"cache": cache, "noise": noise, "reward": be.asarray(reward),
                       "terminated": be.asarray(term.astype(np.float64)), "truncated": boot_rows,
                       "boot": boot}
            for _ in range(cfg.updates_per_step):
                metrics = ddpg.update()
                if not metrics:
                    continue
                last_metrics = metrics
                if ddpg.n_updates % cfg.every == 0:
                    batch = ddpg.buffer.sample(cfg.batch_size, measure_rng)
                    row = measure(estimators, ddpg, batch, groups)
                    row["critic_loss"] = metrics.get("critic_loss", np.nan)
                    row["actor_q"] = metrics.get("actor_q", np.nan)
                    row["train_return"] = float(np.mean(returns[-10:])) if returns else np.nan
                    step = (it + 1) * cfg.n_envs
                    rows.append({"step": step, **row})
                    if trace is not None:
                        trace.log_training(step, **row)
            if ddpg.ready() and any(est.shared for est in estimators):
                batch = ddpg.buffer.sample(cfg.batch_size, batch_rng)
                for est in estimators:
                    est.learn_batch(batch)
            ep_return += reward
            for i in np.flatnonzero(done):
                returns.append(float(ep_return[i]))
                ep_return[i] = 0.0
            V = xp.where(be.asarray(done[:, None].astype(np.float64)) > 0, 0.0, V_end).astype(V_end.dtype)
            obs = next_obs
            if bar is not None:
                bar.update(cfg.n_envs)
    finally:
        envs.close()
        if bar is not None:
            bar.close()
        if trace is not None:
            trace.close()
    table = {"step": np.array([r["step"] for r in rows], dtype=np.int64)}
    for name, shape in columns.items():
        table[name] = (np.array([r[name] for r in rows], dtype=np.float64) if rows
                       else np.zeros((0,) + shape))
    return AlignResult(cfg, groups, n_in, table, returns, ddpg.n_updates)


# ---------------------------------------------------------------------------------------------
# Summaries and the plot
# ---------------------------------------------------------------------------------------------


def _quartiles(x) -> dict:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    return {"median": float(q50), "q25": float(q25), "q75": float(q75), "n": int(x.size)}


def summarise(table: dict, groups: dict, n_inputs: int, estimators) -> dict:
    """Per estimator and layer: median and quartiles over neurons and measurements of every
    per-neuron statistic, and over measurements of the per-layer ones.

    Returns ``{estimator: {layer: {"neurons": n, "row_corr": {"median", "q25", "q75", "n"}, …,
    "cos": {…}, "slope_corr_pooled": {…}}}}``; ``layer`` is a group of
    :func:`~leaky.learners.shared_critic.layer_groups` or ``all`` (every agent neuron).
    """
    out = {}
    all_ids = np.concatenate(list(groups.values()))
    for est in estimators:
        per = {}
        for layer, ids in {**groups, "all": all_ids}.items():
            pos = np.asarray(ids) - n_inputs
            entry: dict[str, Any] = {"neurons": int(len(ids))}
            for stat in (*ROW_STATS, "slope_corr"):
                col = table.get(f"{est}.{stat}")
                if col is not None:
                    entry[stat] = _quartiles(col[:, pos])
            entry["cos"] = _quartiles(table[f"{est}.cos_{layer}"])
            pooled = table.get(f"{est}.slope_corr_{layer}")
            if pooled is not None:
                entry["slope_corr_pooled"] = _quartiles(pooled)
            per[layer] = entry
        out[est] = per
    return out


def format_summary(result: AlignResult) -> str:
    """The per-layer table ``leaky align`` prints."""
    cfg = result.config
    summary = result.summary()
    M = len(result.table["step"])
    last = f"{np.mean(result.episode_returns[-10:]):.1f}" if result.episode_returns else "n/a"
    lines = [f"leaky align: {cfg.env}, layers {[result.n_inputs, *cfg.hidden]}+out, {cfg.steps} steps, "
             f"seed {cfg.seed}: {M} measurements on minibatches of {cfg.batch_size}, {result.updates} "
             f"DDPG updates, last 10 training returns {last}",
             "medians over neurons and measurements [quartiles]; cos: whole layer's update",
             f"{'estimator':<10} {'layer':<6} {'row corr':<22} {'row cos':<22} {'sign':<6} "
             f"{'layer cos':<9} {'slope corr':<10}"]

    def fmt(q, wide=True):
        if q is None or q["median"] is None:
            return "n/a"
        return (f"{q['median']:+.3f} [{q['q25']:+.2f}, {q['q75']:+.2f}]" if wide
                else f"{q['median']:+.3f}")

    for est, per in summary.items():
        for layer, e in per.items():
            slope = e.get("slope_corr") if e.get("slope_corr", {}).get("median") is not None \
                else e.get("slope_corr_pooled")
            lines.append(f"{est:<10} {layer:<6} {fmt(e['row_corr']):<22} {fmt(e['row_cos']):<22} "
                         f"{fmt(e['sign'], False):<6} {fmt(e['cos'], False):<9} "
                         f"{fmt(slope, False) if slope else '':<10}")
    return "\n".join(lines)


def plot_alignment(table: dict, groups: dict, n_inputs: int, estimators, path: str,
                   stats=("row_corr", "row_cos", "sign", "slope_corr")) -> None:
    """PNG of median (line) and quartiles (band) over each layer's neurons, over training: one
    row of panels per statistic, one column per layer, one colour per estimator."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stats = [s for s in stats if any(f"{e}.{s}" in table for e in estimators)]
    layers = list(groups)
    fig, axes = plt.subplots(len(stats), len(layers), figsize=(4 * len(layers), 2.6 * len(stats)),
                             squeeze=False, sharex=True)
    steps = np.asarray(table["step"])
    colours = plt.get_cmap("tab10")
    for i, stat in enumerate(stats):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            pos = np.asarray(groups[layer]) - n_inputs
            for c, est in enumerate(estimators):
                col = table.get(f"{est}.{stat}")
                if col is None or not len(steps):
                    continue
                x = np.asarray(col)[:, pos]
                if not np.isfinite(x).any():
                    continue
                with warnings.catch_warnings():   # a measurement whose values are all NaN
                    warnings.simplefilter("ignore", RuntimeWarning)
                    q25, q50, q75 = np.nanpercentile(x, [25, 50, 75], axis=1)
                ax.plot(steps, q50, color=colours(c), label=est, lw=1.2)
                ax.fill_between(steps, q25, q75, color=colours(c), alpha=0.15, lw=0)
            ax.axhline(0.0, color="grey", lw=0.5)
            if i == 0:
                ax.set_title(f"{layer} ({len(pos)} neurons)")
            if j == 0:
                ax.set_ylabel(stat.replace("_", " "))
            if i == len(stats) - 1:
                ax.set_xlabel("env step")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.suptitle("local estimates vs BPTT: median and quartiles over neurons")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    if handles:   # below the panels, where it hides no curve
        fig.legend(handles, labels, loc="lower center", ncol=min(len(handles), 8), fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------

FLAGS = {"env": "--env", "steps": "--steps", "hidden": "--hidden", "n_envs": "--envs", "seed": "--seed",
         "backend": "--backend", "estimators": "--estimators", "every": "--every",
         "batch_size": "--batch-size", "learning_starts": "--learning-starts",
         "updates_per_step": "--updates-per-step", "noise_std": "--noise-std"}


def _config_from_args(args) -> AlignConfig:
    from leaky.core.validate import show

    try:
        return AlignConfig(env=args.env, steps=args.steps, hidden=tuple(args.hidden), n_envs=args.envs,
                           seed=args.seed, backend=args.backend, estimators=args.estimators,
                           every=args.every, batch_size=args.batch_size,
                           learning_starts=args.learning_starts, updates_per_step=args.updates_per_step,
                           noise_std=args.noise_std)
    except ConfigError as e:
        field_name = getattr(e, "field", None)
        if field_name not in FLAGS:
            raise
        raise ConfigError(f"{FLAGS[field_name]}: got {show(e.value)}, expected {e.expected} "
                          f"(AlignConfig.{field_name})") from e


def run(args) -> int:
    from leaky.training.checkpoint import _check_writable

    cfg = _config_from_args(args)
    if args.png:
        _check_writable(args.png, "--png")
    if args.trace:
        _check_writable(args.trace, "--trace")
    result = align(cfg, trace_path=args.trace, progress=not args.no_progress)
    if args.png:
        plot_alignment(result.table, result.groups, result.n_inputs, cfg.estimators, args.png)
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "measurements": int(len(result.table["step"])),
                          "updates": result.updates, "episode_returns": result.episode_returns,
                          "layers": {k: v.tolist() for k, v in result.groups.items()},
                          "estimators": result.summary()}))
    else:
        print(format_summary(result))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("align", help="the paper's Experiment 1: local gradient estimates vs BPTT",
                       description="Train DDPG and, every --every updates, compare each local "
                                   "estimator's row gradient (per-neuron critics, perturb, feedback, "
                                   "dfa; their actor steps switched off) with BPTT's on one "
                                   "minibatch, per neuron and per layer (docs/align.md).")
    p.add_argument("--env", default="Pendulum-v1", help="Gymnasium id with Box spaces")
    p.add_argument("--steps", type=int, default=20_000, help="total env steps over all envs")
    p.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="hidden sizes (layered)")
    p.add_argument("--envs", type=int, default=1, help="vectorized environments B")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="cpu", choices=list(BACKENDS))
    p.add_argument("--estimators", default=",".join(ESTIMATORS),
                   help=f"comma list from {','.join(ESTIMATORS)}")
    p.add_argument("--every", type=int, default=1000, help="DDPG updates between measurements")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--learning-starts", type=int, default=1000)
    p.add_argument("--updates-per-step", type=int, default=4)
    p.add_argument("--noise-std", type=float, default=0.1, help="per-neuron exploration noise")
    p.add_argument("--trace", help="HDF5 trace whose training/ table gets the measurements")
    p.add_argument("--png", help="PNG of median and quartiles over neurons, by layer, over training")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the per-layer figures as JSON")
    p.set_defaults(func=run)
