"""Training: B vectorized Gymnasium environments, one learner, greedy evaluation, checkpoints.

    python -m leaky train --env Pendulum-v1 --learner local --steps 100000

The loop (``train(cfg)``), once per vectorized environment step::

    V_end, a = learner.act(V, obs, explore=True)          # ℓ internal steps, with noise
    obs', r, terminated, truncated = envs.step(a)          # same-step autoreset
    learner.observe(obs, a, r, final_obs, terminated, truncated, V, V_end)
    learner.update()                                       # one update (after learning_starts)
    V = V_end, zeroed for environments whose episode ended

Every learner implements ``act``, ``observe``, ``update``, ``state_dict``, ``load_state_dict``
and ``critic_record`` (see :class:`Learner`). A CPU run repeats exactly for a seed. Checkpoints
are written to a temporary file and renamed, periodically, at the end and on Ctrl-C;
``resume=True`` continues from the last one (weights, optimiser state, replay contents,
counters and every generator's state; the settings must match, :func:`check_resume`; the
environments start fresh episodes, :func:`env_seed`). docs/learners.md says what repeats.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from leaky.core.backend import to_numpy
from leaky.model.config import NetworkConfig
from leaky.core.errors import ConfigError, DivergenceError, InputError
from leaky.kernels.scalar import ACTIVATIONS
from leaky.learners.base import Learner
from leaky.training.checkpoint import _check_writable, env_seed, load_checkpoint, restore, save_checkpoint  # noqa: F401   # what train drives: act, observe, update, checkpoints
from leaky.model.network import Network
from leaky.core.validate import Bool, Choice, Dict, Int, Ints, Optional, Real, Text, check_fields, show

LEARNERS = ("local", "ddpg", "perturbation")


@dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Parameters
    ----------
    env : Gymnasium id with Box observation and action spaces.
    learner : ``local`` (every neuron an agent), ``ddpg`` (backprop baseline) or ``perturbation``.
    steps : total environment steps, summed over the ``n_envs`` environments.
    hidden : hidden layer sizes of the default layered network ([] with ``topology="dense"``).
    topology, neurons, delay, leak : a recurrent network instead (``topology="dense"`` or
        ``"sparse"``, ``neurons`` in total, ``delay`` ℓ, ``leak`` λ); ignored when layered.
    learner_options : keyword arguments of the learner's own config dataclass.
    eval_every, eval_episodes : greedy evaluation cadence (env steps) and size; evaluation
        environments are seeded from ``10_000 + seed`` onwards, apart from training seeds.
    target_return : stop after the first greedy evaluation whose mean reaches it (None: run all
        ``steps``); ``TrainResult.eval_wall[i]`` says when evaluation i ended.
    """

    env: str = "Pendulum-v1"
    learner: str = "local"
    steps: int = 50_000
    n_envs: int = 8
    seed: int = 0
    backend: str = "cpu"
    hidden: tuple[int, ...] = (32, 32)
    topology: str = "layered"
    neurons: int = 64
    delay: int = 2
    leak: float = 1.0
    activation: str = "tanh"
    learner_options: dict = field(default_factory=dict)
    eval_every: int = 10_000
    eval_episodes: int = 5
    checkpoint: str | None = None
    checkpoint_every: int = 20_000
    resume: bool = False
    trace: str | None = None
    trace_options: dict = field(default_factory=dict)
    progress: bool = True
    check_every: int = 100
    target_return: float | None = None

    def __post_init__(self):
        check_fields(self, self.RULES)
        learner_config(self)   # the learner's options are checked now, before anything runs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


BACKENDS = ("auto", "numpy", "cpu", "cuda")
TOPOLOGIES = ("layered", "dense", "sparse")

# One rule per field of TrainConfig (leaky/core/validate.py).
TRAIN_RULES = {
    "env": Text(), "learner": Choice(LEARNERS), "steps": Int(low=1), "n_envs": Int(low=1),
    "seed": Int(low=0), "backend": Choice(BACKENDS), "hidden": Ints(low=1),
    "topology": Choice(TOPOLOGIES), "neurons": Int(low=1), "delay": Int(low=1),
    "leak": Real(0.0, 1.0, low_open=True), "activation": Choice(tuple(ACTIVATIONS)),
    "learner_options": Dict(), "eval_every": Int(low=1), "eval_episodes": Int(low=1),
    "checkpoint": Optional(Text()), "checkpoint_every": Int(low=1), "resume": Bool(),
    "trace": Optional(Text()), "trace_options": Dict(), "progress": Bool(), "check_every": Int(low=1),
    "target_return": Optional(Real()),
}
TrainConfig.RULES = TRAIN_RULES   # a subclass with more fields: {**TRAIN_RULES, ...}

# the command-line flag of each TrainConfig field (error messages name the flag a user typed)
FLAGS = {"env": "--env", "learner": "--learner", "steps": "--steps", "n_envs": "--envs",
         "seed": "--seed", "backend": "--backend", "hidden": "--hidden", "topology": "--topology",
         "neurons": "--neurons", "delay": "--delay", "leak": "--leak", "eval_every": "--eval-every",
         "eval_episodes": "--eval-episodes", "checkpoint": "--checkpoint",
         "checkpoint_every": "--checkpoint-every", "trace": "--trace", "target_return": "--target-return"}


@dataclass
class TrainResult:
    """What a run measured."""

    env_steps: int
    episodes: int
    train_returns: list[float]
    evaluations: list[dict]
    wall_seconds: float
    update_seconds: float
    updates: int
    metrics: list[dict] = field(default_factory=list)   # learner metrics averaged per eval interval
    eval_wall: list[float] = field(default_factory=list)  # wall seconds from the start to each evaluation's end
    timing: dict = field(default_factory=dict)          # wall seconds per phase of the loop (Stopwatch)
    interrupted: bool = False                           # stopped by Ctrl-C (TrainingInterrupted)

    @property
    def final_eval(self) -> float:
        return self.evaluations[-1]["mean"] if self.evaluations else float("nan")

    def summary(self) -> str:
        last = self.evaluations[-1] if self.evaluations else None
        first = self.evaluations[0] if self.evaluations else None
        parts = [f"{self.env_steps} env steps, {self.episodes} episodes, {self.wall_seconds:.0f} s"]
        if first and last:
            parts.append(f"greedy return {first['mean']:.1f} at step {first['step']} → "
                         f"{last['mean']:.1f} ± {last['std']:.1f} at step {last['step']}")
        if self.updates:
            parts.append(f"{self.updates} updates, {self.update_seconds / self.updates * 1e3:.2f} ms each")
        else:
            parts.append("0 updates: the learner never learned")
        if self.timing and self.wall_seconds > 0:
            parts.append("time " + " · ".join(f"{k} {v / self.wall_seconds:.0%}" for k, v in self.timing.items()
                                              if v >= 0.005 * self.wall_seconds))
        return "; ".join(parts)


class Stopwatch:
    """Wall seconds per phase of the training loop: ``with watch("env"): …``.

    Phases: ``env`` (vector env step and the finiteness checks), ``act`` (the network step with
    noise, up to the action on the host), ``learn`` (observe and update, synchronised), ``logging``
    (the trace), ``evaluation``, ``checkpoint``; ``other`` is the rest of the wall time.
    """

    PHASES = ("env", "act", "learn", "logging", "evaluation", "checkpoint")

    def __init__(self):
        self.seconds = dict.fromkeys(self.PHASES, 0.0)
        self._phase = None
        self._t = 0.0

    def __call__(self, phase: str):
        self._phase = phase
        return self

    def __enter__(self):
        self._t = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self._phase] += time.perf_counter() - self._t

    def split(self, wall: float) -> dict:
        out = dict(self.seconds)
        out["other"] = max(0.0, wall - sum(self.seconds.values()))
        return out


# -- environments ---------------------------------------------------------------------------------

def make_envs(env_id: str, n_envs: int):
    """Synchronous vector env with same-step autoreset; checks the spaces are Boxes."""
    import gymnasium as gym

    import leaky.training.envs  # noqa: F401  (registers leaky's own test environments)

    try:
        envs = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync",
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    except gym.error.Error as e:
        raise ConfigError(f"env: cannot make {env_id!r} ({e}); expected a registered Gymnasium id "
                          f"such as 'Pendulum-v1' or 'InvertedPendulum-v5'") from e
    check_spaces(env_id, envs.single_observation_space, envs.single_action_space)
    return envs


def check_spaces(env_id, obs_space, act_space) -> None:
    import gymnasium as gym

    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(f"env {env_id!r}: observation space is {obs_space}, expected a Box "
                          f"(continuous vector observations feed the sensor neurons)")
    if not isinstance(act_space, gym.spaces.Box):
        raise ConfigError(f"env {env_id!r}: action space is {act_space}, expected a Box "
                          f"(output voltages decode to continuous actions)")
    if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
        raise ConfigError(f"env {env_id!r}: action space has infinite bounds, expected a bounded Box")


def build_network(cfg: TrainConfig, obs_space, act_space) -> Network:
    d_obs = int(np.prod(obs_space.shape))
    d_act = int(np.prod(act_space.shape))
    if cfg.topology == "layered":
        net_cfg = NetworkConfig.layered([d_obs, *cfg.hidden, d_act], activation=cfg.activation, seed=cfg.seed)
    else:
        extra = {"fan_in": max(1, cfg.neurons // 4)} if cfg.topology == "sparse" else {}
        net_cfg = NetworkConfig(n_neurons=cfg.neurons, n_inputs=d_obs, n_outputs=d_act, delay=cfg.delay,
                                leak=cfg.leak, activation=cfg.activation, topology=cfg.topology,
                                seed=cfg.seed, **extra)
    return Network(net_cfg, backend=cfg.backend, observation_space=obs_space, action_space=act_space)


def learner_config(cfg: TrainConfig):
    """The learner's config dataclass made from ``cfg.learner_options`` (seed: ``cfg.seed``
    unless the options give one), checked as it is made."""
    opts = dict(cfg.learner_options)
    opts.setdefault("seed", cfg.seed)
    if cfg.learner == "ddpg":
        from leaky.learners.ddpg import DDPGConfig as cls
    elif cfg.learner == "perturbation":
        from leaky.learners.perturbation import PerturbationConfig as cls
    else:
        from leaky.learners.local import LocalConfig as cls
    return _dataclass_from(cls, opts)


def make_learner(cfg: TrainConfig, net: Network) -> Learner:
    options = learner_config(cfg)
    if cfg.learner == "ddpg":
        from leaky.learners.ddpg import DDPGLearner

        return DDPGLearner(net, options, net.backend)
    if cfg.learner == "perturbation":
        from leaky.learners.perturbation import PerturbationLearner

        return PerturbationLearner(net, options)
    from leaky.learners.local import make_local_learner

    return make_local_learner(net, options)


def _dataclass_from(cls, opts: dict):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(opts) - names)
    if unknown:
        raise ConfigError(f"learner options {unknown} are not fields of {cls.__name__}; expected some of {sorted(names)}")
    return cls(**opts)


# -- evaluation -----------------------------------------------------------------------------------

def evaluate(net: Network, env_id: str, episodes: int, seed: int) -> list[float]:
    """Greedy returns of ``episodes`` episodes, run as one batch of environments."""
    import gymnasium as gym

    envs = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    try:
        obs, _ = envs.reset(seed=seed)
        V = net.reset(episodes)
        returns = np.zeros(episodes)
        finished = np.zeros(episodes, dtype=bool)
        while not finished.all():
            V, action, _ = net.step(V, obs)
            obs, r, term, trunc, _ = envs.step(to_numpy(action))
            returns += np.where(finished, 0.0, r)
            finished |= term | trunc
        return returns.tolist()
    finally:
        envs.close()


# -- the loop -------------------------------------------------------------------------------------

def _check_finite(name, x, step):
    bad = ~np.isfinite(x)
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise InputError(f"{name} at env step {step}: non-finite value at index {idx}; expected finite values")


def _check_network(net: Network, V, step: int) -> None:
    K = to_numpy(net.K)
    bad_rows = np.flatnonzero(~np.isfinite(K).all(axis=1) | ~np.isfinite(to_numpy(net.b)))
    if bad_rows.size:
        raise DivergenceError(f"weights became non-finite at env step {step}: neuron {int(bad_rows[0])} "
                              f"(and {bad_rows.size - 1} more)")
    Vn = to_numpy(V)
    bad = np.flatnonzero(~np.isfinite(Vn).all(axis=0))
    if bad.size:
        raise DivergenceError(f"voltages became non-finite at env step {step}: neuron {int(bad[0])} "
                              f"(and {bad.size - 1} more)")


def train(cfg: TrainConfig) -> TrainResult:
    """Run ``cfg``; returns a :class:`TrainResult` (and writes checkpoint / trace if asked)."""
    from tqdm.auto import tqdm

    if cfg.checkpoint:            # before any work: a checkpoint that cannot be written loses it
        _check_writable(cfg.checkpoint, "TrainConfig.checkpoint (--checkpoint)")
    iterations = math.ceil(cfg.steps / cfg.n_envs)
    state = None
    if cfg.resume and cfg.checkpoint and os.path.exists(cfg.checkpoint):
        state = load_checkpoint(cfg.checkpoint)
        check_resume(cfg, state, cfg.checkpoint)
    envs = make_envs(cfg.env, cfg.n_envs)
    net = build_network(cfg, envs.single_observation_space, envs.single_action_space)
    learner = make_learner(cfg, net)
    be = net.backend
    start = 0
    evaluations: list[dict] = []
    train_returns: list[float] = []
    if state is not None:
        check_resume(cfg, state, cfg.checkpoint, net=net)
        start, evaluations, train_returns = restore(state, net, learner)

    trace = _open_trace(cfg, net, envs) if cfg.trace else None
    rows = _TraceRows(trace, learner) if trace is not None else None
    updates_per_step = int(getattr(getattr(learner, "cfg", None), "updates_per_step", 1))
    obs, _ = envs.reset(seed=env_seed(cfg.seed, start))
    V = net.reset(cfg.n_envs)
    ep_return = np.zeros(cfg.n_envs)
    recent = deque(train_returns[-20:], maxlen=20)
    update_seconds, updates = 0.0, 0
    watch = Stopwatch()
    metric_sums: dict = {}
    metric_history: list[dict] = []
    t0 = time.perf_counter()
    warn_if_no_updates(cfg, learner, start)
    bar = Progress(tqdm, total=iterations * cfg.n_envs, initial=start * cfg.n_envs,
                   disable=not cfg.progress, desc=f"{cfg.learner} {cfg.env}",
                   updates_at_once=warmup_transitions(learner) == 0)
    it = start - 1   # the last iteration run (none yet)
    interrupted_at = None
    stop = StopRequest().__enter__()
    eval_wall: list[float] = []
    try:
        for it in range(start, iterations):
            step = it * cfg.n_envs
            with watch("act"):
                V_end, action = learner.act(V, obs, explore=True)
                act_np = to_numpy(action)
            with watch("env"):
                next_obs, reward, term, trunc, info = envs.step(act_np)
                _check_finite("observation", next_obs, step)
                _check_finite("reward", reward, step)
            done = term | trunc
            final_obs = next_obs
            if done.any():
                final_obs = next_obs.copy()
                for i in np.flatnonzero(done):
                    final_obs[i] = info["final_obs"][i]
            updates_before = updates
            with watch("learn"):
                learner.observe(obs, action, reward, final_obs, term, trunc, V, V_end)
                for _ in range(updates_per_step):
                    u0 = time.perf_counter()
                    metrics = learner.update()
                    be.synchronize()
                    if metrics:
                        update_seconds += time.perf_counter() - u0
                        updates += 1
                        for k, v in metrics.items():
                            if np.isscalar(v):
                                acc = metric_sums.setdefault(k, [0.0, 0])
                                acc[0] += float(v)
                                acc[1] += 1
            if trace is not None:
                with watch("logging"):
                    noise = getattr(learner, "last_noise", None)
                    cache = getattr(learner, "last_cache", None)
                    rows.add(dict(obs=obs, actions=act_np, rewards=np.array(reward), terminations=np.array(term),
                                  truncations=np.array(trunc), next_obs=final_obs,
                                  voltages=V_end if cache is None else cache.V,
                                  noise=None if noise is None else noise[-1]), learner)
                    if trace.weights_due(step):
                        trace.log_weights(step, to_numpy(net.K), to_numpy(net.b))
                    if metrics and it % 10 == 0:
                        trace.log_training(step, **{k: float(v) for k, v in metrics.items() if np.isscalar(v)})
            ep_return += reward
            for i in np.flatnonzero(done):
                train_returns.append(float(ep_return[i]))
                recent.append(float(ep_return[i]))
                ep_return[i] = 0.0
            V = V_end
            if done.any():
                V = V.copy()
                V[be.asarray(done, dtype=bool)] = 0.0
            obs = next_obs
            if (it + 1) % cfg.check_every == 0:
                _check_network(net, V, step)
            done_steps = (it + 1) * cfg.n_envs
            reached = False
            if done_steps // cfg.eval_every > step // cfg.eval_every or it == iterations - 1:
                with watch("evaluation"):
                    rets = evaluate(net, cfg.env, cfg.eval_episodes, 10_000 + cfg.seed * 1000 + len(evaluations))
                evaluations.append({"step": done_steps, "mean": float(np.mean(rets)),
                                    "std": float(np.std(rets)), "returns": rets})
                eval_wall.append(time.perf_counter() - t0)
                reached = cfg.target_return is not None and evaluations[-1]["mean"] >= cfg.target_return
                metric_history.append({"step": done_steps, **{k: s / max(n, 1) for k, (s, n) in metric_sums.items()}})
                metric_sums.clear()
                if trace is not None:
                    trace.log_training(done_steps, eval_return=float(np.mean(rets)))
            if cfg.checkpoint and (done_steps // cfg.checkpoint_every > step // cfg.checkpoint_every
                                   or it == iterations - 1 or reached):
                with watch("checkpoint"):
                    _save(cfg, net, learner, it + 1, evaluations, train_returns)
            bar.update(cfg.n_envs, first_update=updates_before == 0 < updates)
            if reached:
                break
            if it % 20 == 0:
                post = {"ret": f"{np.mean(recent):.1f}" if recent else "-"}
                if evaluations:
                    post["eval"] = f"{evaluations[-1]['mean']:.1f}"
                bar.set_postfix(post, refresh=False)
            if stop.requested:           # Ctrl-C: stop between steps, keep what was done
                interrupted_at = it + 1
                if cfg.checkpoint:
                    with watch("checkpoint"):
                        _save(cfg, net, learner, it + 1, evaluations, train_returns)
                break
    finally:
        stop.__exit__()
        bar.close()
        envs.close()
        if trace is not None:
            with watch("logging"):
                try:
                    rows.flush()       # the rows still waiting for their critic record
                finally:
                    trace.close()
    wall = time.perf_counter() - t0
    result = TrainResult(env_steps=(it + 1) * cfg.n_envs,
                         episodes=len(train_returns), train_returns=train_returns,
                         evaluations=evaluations, wall_seconds=wall, update_seconds=update_seconds,
                         updates=updates, metrics=metric_history, timing=watch.split(wall), eval_wall=eval_wall,
                         interrupted=interrupted_at is not None)
    if interrupted_at is not None:
        raise TrainingInterrupted(result, cfg.checkpoint)
    return result


class Progress:
    """The loop's tqdm bar, which says when the kernels are being compiled instead of an ETA.

    Numba compiles a kernel at its first call (seconds to minutes on a fresh install; loading
    it from the cache later takes about a second), so the first environment step and the first
    learning update are slow. Until the first step is done, and the first update too for a
    learner that updates from the start (``updates_at_once``; a learner with a warm-up updates
    much later), the bar's description ends in ``compiling kernels`` and it shows no rate;
    after each of those steps its clock restarts, so the rate and the ETA count only steps
    that ran compiled code.
    """

    COMPILING = " · compiling kernels (once; cached afterwards)"
    COMPILING_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]"   # no rate, no ETA

    def __init__(self, tqdm, *, total: int, initial: int, disable: bool, desc: str,
                 updates_at_once: bool = True, **kwargs):
        self.desc = desc
        self.bar = tqdm(total=total, initial=initial, disable=disable, unit="step",
                        desc=desc + self.COMPILING, bar_format=self.COMPILING_FORMAT,
                        dynamic_ncols=True, **kwargs)
        self._first_step = True
        self._waiting_for_update = updates_at_once   # the second step runs the first update

    def _compiling(self, on: bool) -> None:
        bar = self.bar
        bar.bar_format = self.COMPILING_FORMAT if on else None
        bar.set_description(self.desc + (self.COMPILING if on else ""), refresh=False)

    def _restart_clock(self) -> None:
        """Rate and ETA from now on only (tqdm's reset, keeping the count)."""
        bar = self.bar
        n = bar.n
        bar.reset(total=bar.total)
        bar.n = bar.last_print_n = bar.initial = n

    def update(self, n: int, first_update: bool = False) -> None:
        """``n`` more env steps; ``first_update``: this step made the learner's first update."""
        bar = self.bar
        bar.update(n)
        if self._first_step or first_update:
            self._first_step = False
            self._waiting_for_update &= not first_update
            self._restart_clock()
            if not self._waiting_for_update:
                self._compiling(False)
            bar.refresh()

    def set_postfix(self, *args, **kwargs) -> None:
        self.bar.set_postfix(*args, **kwargs)

    def close(self) -> None:
        self.bar.close()


class NoLearningWarning(UserWarning):
    """A run whose budget ends before the learner's warm-up does: it would make no update."""


def warmup_transitions(learner) -> int:
    """Transitions a learner stores before its first update (0: it learns from the start)."""
    cfg = getattr(learner, "cfg", None)
    if cfg is None or getattr(cfg, "data", "replay") != "replay" or not hasattr(cfg, "learning_starts"):
        return 0
    return max(int(cfg.learning_starts), int(getattr(cfg, "batch_size", 1)))


def warn_if_no_updates(cfg: TrainConfig, learner, start: int = 0) -> None:
    """Warn (:class:`NoLearningWarning`) when ``cfg.steps`` ends before the warm-up does.

    The warm-up is the learner's own (``learning_starts``, at least ``batch_size``: DDPG's
    default is 10,000 transitions, CleanRL's); leaky does not shrink it to fit the budget, since
    the run would then not be the configured one (and a resumed run could not match its
    checkpoint). It says so, and the summary counts the updates.
    """
    need = warmup_transitions(learner)
    if need and need >= cfg.steps:
        import warnings

        warnings.warn(f"{cfg.learner} learns from its {need}th stored transition on "
                      f"(learning_starts = {learner.cfg.learning_starts}, batch_size = "
                      f"{learner.cfg.batch_size}), but --steps {cfg.steps} stores {cfg.steps}: it "
                      f"will make no update; expected --steps > {need}, or --set learning_starts=N "
                      f"with N < {cfg.steps}", NoLearningWarning, stacklevel=3)


class StopRequest:
    """Ctrl-C (SIGINT) during :func:`train`: the first asks the loop to stop after the current
    environment step (it then writes the checkpoint, if any, and closes the trace); a second
    one interrupts at once, as Python's default does. Installed only in the main thread."""

    _NONE = object()

    def __init__(self):
        self.requested = False
        self._previous = self._NONE

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            try:
                self._previous = signal.signal(signal.SIGINT, self._handle)
            except ValueError:   # pragma: no cover - not the main interpreter
                self._previous = self._NONE
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not self._NONE:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = self._NONE


class TrainingInterrupted(KeyboardInterrupt):
    """:func:`train` stopped by Ctrl-C, cleanly: ``result`` is the run so far (its last
    checkpoint, if ``checkpoint`` is set, holds the step it stopped at)."""

    def __init__(self, result: "TrainResult", checkpoint: str | None):
        super().__init__(f"interrupted at env step {result.env_steps}")
        self.result, self.checkpoint = result, checkpoint


def _save(cfg, net, learner, iteration, evaluations, train_returns):
    save_checkpoint(cfg.checkpoint, {
        "network": {"K": net.K, "b": net.b},
        "learner": learner.state_dict(),
        "loop": {"iteration": iteration, "evaluations": evaluations, "train_returns": train_returns,
                 "config": json.dumps(cfg.to_dict()),
                 "learner_config": json.dumps(dataclasses.asdict(learner_config(cfg))),
                 "network_config": json.dumps(net.config.to_dict())},
    })


# -- resume ---------------------------------------------------------------------------------------

# The settings a checkpoint must share with the run that continues it. Everything else (steps,
# eval_every, eval_episodes, checkpoint_every, trace, progress, check_every) may change.
RESUME_SETTINGS = ("env", "learner", "seed", "n_envs", "backend", "hidden", "topology", "neurons",
                   "delay", "leak", "activation")


def check_resume(cfg: TrainConfig, state: dict, path: str, net: Network | None = None) -> None:
    """Raise ConfigError naming every setting in which ``cfg`` (and its network ``net``, when
    given) differs from the run that wrote the checkpoint ``state``, or when ``cfg.steps`` is
    fewer than the checkpoint has done already."""
    loop = state.get("loop", {})
    done = int(loop.get("iteration", 0)) * cfg.n_envs
    diffs = []
    if "config" in loop:
        then, now = json.loads(loop["config"]), cfg.to_dict()
        for key in RESUME_SETTINGS:
            a, b = then.get(key), now.get(key)
            if key == "hidden":
                a, b = list(a or []), list(b or [])
            if key in ("neurons", "delay", "leak") and now.get("topology") == "layered":
                continue          # not used by a layered network (the network check covers it)
            if a != b:
                diffs.append(f"{key} {a!r} there, {b!r} here")
        done = int(loop.get("iteration", 0)) * int(then.get("n_envs", cfg.n_envs))
    if "learner_config" in loop and not any(d.startswith(("learner ", "seed ")) for d in diffs):
        then, now = json.loads(loop["learner_config"]), dataclasses.asdict(learner_config(cfg))
        for key in sorted(set(then) | set(now)):
            a, b = then.get(key), now.get(key)
            if isinstance(a, list) or isinstance(b, tuple):
                a, b = list(a or []), list(b or [])
            if a != b:
                diffs.append(f"learner option {key} {a!r} there, {b!r} here")
    if net is not None and "network_config" in loop and not diffs:
        then, now = json.loads(loop["network_config"]), json.loads(json.dumps(net.config.to_dict()))
        for key in sorted(set(then) | set(now)):
            if then.get(key) != now.get(key):
                diffs.append(f"network {key} {then.get(key)!r} there, {now.get(key)!r} here")
    if diffs:
        raise ConfigError(f"--resume: checkpoint {path!r} belongs to another run: "
                          f"{'; '.join(diffs)}; expected the same settings to continue it (start "
                          f"afresh without --resume, or give another --checkpoint)")
    if cfg.steps < done:
        raise ConfigError(f"--steps: got {cfg.steps}, but checkpoint {path!r} has {done} env steps "
                          f"done already; expected --steps >= {done} to continue it")


class _TraceRows:
    """Trace rows held until the learner's critic record of their transition arrives.

    A learner records the transition it learns from (:mod:`leaky.learners.records`): DDPG the one it
    just stored (``critic_lag = 0``), the local and perturbation learners the previous step's,
    learned one step late (``critic_lag = 1``). So row t is written when step t + lag has run,
    with ``q_local`` and ``td_error`` of transition t; rows left at the end (the last step's,
    whose transition is never learned) are written with NaN there.
    """

    def __init__(self, trace, learner):
        self.trace = trace
        self.lag = int(getattr(learner, "critic_lag", 0))
        self.records = hasattr(learner, "critic_record")
        if self.records:
            learner.record_critic = True
        self.pending: deque = deque()

    def add(self, row: dict, learner) -> None:
        if self.lag:   # a held row must not see buffers the learner reuses (the graphed one does)
            row = {k: (v.copy() if hasattr(v, "copy") and hasattr(v, "shape") else v) for k, v in row.items()}
        self.pending.append(row)
        record = learner.critic_record() if self.records else None
        if record is not None and len(self.pending) > record.lag:
            target = self.pending[-1 - record.lag]
            target["q_local"], target["td_error"] = record.q_local, record.td_error
        while len(self.pending) > self.lag:
            self.trace.log_step(**self.pending.popleft())

    def flush(self) -> None:
        while self.pending:
            self.trace.log_step(**self.pending.popleft())


def _open_trace(cfg, net, envs):
    import leaky
    from leaky.trace import DEFAULT_TRAINING_FIELDS, Trace

    fields = tuple(DEFAULT_TRAINING_FIELDS) + tuple(f for f in ("slope",) if f not in DEFAULT_TRAINING_FIELDS)
    return Trace(cfg.trace, n_envs=cfg.n_envs, obs_dim=int(np.prod(envs.single_observation_space.shape)),
                 act_dim=int(np.prod(envs.single_action_space.shape)), n_neurons=net.n_neurons,
                 delay=net.delay, config={"train": cfg.to_dict(), "network": net.config.to_dict(),
                                          "leaky": leaky.__version__},
                 seeds={"train": cfg.seed, "eval": 10_000 + cfg.seed * 1000},
                 observation_space=envs.single_observation_space, action_space=envs.single_action_space,
                 env_id=cfg.env, **{"training_fields": fields, **cfg.trace_options})


# -- command line ---------------------------------------------------------------------------------

def _parse_options(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set: got {item!r}, expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _config_from_args(args) -> TrainConfig:
    """The TrainConfig of ``leaky train``'s arguments; a bad value's error names its flag."""
    options = _parse_options(args.set)
    try:
        return TrainConfig(env=args.env, learner=args.learner, steps=args.steps, n_envs=args.envs,
                           seed=args.seed, backend=args.backend, hidden=tuple(args.hidden),
                           topology=args.topology, neurons=args.neurons, delay=args.delay, leak=args.leak,
                           learner_options=options, eval_every=args.eval_every,
                           eval_episodes=args.eval_episodes, checkpoint=args.checkpoint,
                           checkpoint_every=args.checkpoint_every, resume=args.resume, trace=args.trace,
                           progress=not args.no_progress, target_return=args.target_return)
    except ConfigError as e:
        owner, field = getattr(e, "owner", None), getattr(e, "field", None)
        if owner == "TrainConfig" and field in FLAGS:
            flag = FLAGS[field]
        elif owner is not None and field in options:
            typed = dict(item.split("=", 1) for item in args.set)
            flag = f"--set {field}={typed[field]}"
        else:
            raise
        raise ConfigError(f"{flag}: got {show(e.value)}, expected {e.expected} ({owner}.{field})") from e


def run(args) -> int:
    import sys

    cfg = _config_from_args(args)
    try:
        result = train(cfg)
    except TrainingInterrupted as stop:
        kept = (f"checkpoint {cfg.checkpoint} holds it (continue with --resume)" if cfg.checkpoint
                else "no --checkpoint, so the weights are not kept")
        trace = f"; trace {cfg.trace} closed" if cfg.trace else ""
        print(f"leaky train: interrupted at env step {stop.result.env_steps} of {cfg.steps}: {kept}{trace}",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), "env_steps": result.env_steps, "episodes": result.episodes,
                          "evaluations": result.evaluations, "wall_seconds": result.wall_seconds,
                          "update_ms": result.update_seconds / max(1, result.updates) * 1e3,
                          "timing": result.timing}))
    else:
        print(f"{cfg.learner} on {cfg.env}: {result.summary()}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a network in a Gymnasium environment",
                       description="Train a leaky network with the local (backprop-free), ddpg or "
                                   "perturbation learner; prints greedy evaluation returns.")
    p.add_argument("--env", default="Pendulum-v1", help="Gymnasium id with Box spaces")
    p.add_argument("--learner", default="local", choices=LEARNERS)
    p.add_argument("--steps", type=int, default=50_000, help="total env steps over all envs")
    p.add_argument("--envs", type=int, default=8, help="vectorized environments B")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="cpu", choices=["auto", "numpy", "cpu", "cuda"])
    p.add_argument("--hidden", type=int, nargs="*", default=[32, 32], help="hidden sizes (layered)")
    p.add_argument("--topology", default="layered", choices=["layered", "dense", "sparse"])
    p.add_argument("--neurons", type=int, default=64, help="N for dense/sparse")
    p.add_argument("--delay", type=int, default=2, help="ℓ for dense/sparse")
    p.add_argument("--leak", type=float, default=1.0, help="λ for dense/sparse")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="learner options (JSON values)")
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--target-return", type=float, help="stop after the first greedy evaluation reaching it")
    p.add_argument("--checkpoint", help="checkpoint file (.npz), written atomically; also on Ctrl-C")
    p.add_argument("--checkpoint-every", type=int, default=20_000, help="env steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    p.add_argument("--trace", help="HDF5 trace file to write")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)
