"""What every backprop-free learner shares: act with per-neuron noise, learn one step late.

At environment step t the network acts with noise ξ_t and leaves its cache (the voltages,
pre-activations and actions of every internal step). Learning from step t needs the state the
network is in at step t+1 (its next voltages and its greedy action there), so the transition
of step t is learned during ``update()`` at step t+1, when the cache of t+1 exists: each
step's cache is used once, one step late (docs/design.md#3-every-neuron-is-an-agent, ``online``).

Episode ends: on termination the next state does not matter (discount 0). On truncation the
episode would have continued: the learner steps the network once more from the voltages it
ended with and the final observation, and bootstraps from that state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from leaky.model.network import Network, StepCache


@dataclass(frozen=True)
class Transition:
    """Step t of B environments, completed with the next step's cache."""

    cache: StepCache       # step t
    noise: Any             # ξ_t (ℓ, B, N)
    reward: Any            # (B,)
    terminated: Any        # (B,) float 0/1
    next_cache: StepCache  # step t+1 (rows that were truncated: the bootstrap step)


class Learner(ABC):
    """What every learner is: the protocol :mod:`leaky.training.loop` drives and one checkpoint
    convention for its random streams.

    A learner acts (``act``), is told the outcome (``observe``) and learns (``update``); with
    ``record_critic`` set it leaves a critic record (``critic_record``, :mod:`leaky.learners.records`).
    Every random stream it draws from is made by :meth:`stream`, which names and registers it:
    ``state_dict`` then saves every stream as ``rng.<name>`` (:meth:`rng_state`, NumPy's PCG64
    state as uint64 words) and ``load_state_dict`` continues each where it was
    (:meth:`load_rng_state`); CuPy's generators expose no state, so on a GPU each stream is
    reseeded on resume from its seed and the resume point (a fresh, independent stream).
    """

    critic_lag = 0   # how many steps the critic record lags the step it is returned at

    def __init__(self, net: Network):
        self.net = net
        self._streams: dict = {}
        self.record_critic = False   # leave a critic record for the trace
        self._critic_record = None

    def critic_record(self):
        """The :class:`~leaky.learners.records.CriticRecord` of the last update (None: none since
        the last call, or ``record_critic`` is off), then forgotten."""
        record, self._critic_record = self._critic_record, None
        return record

    def stream(self, name: str, seed, backend=None):
        """A generator (:class:`leaky.core.backend.Generator`) seeded with ``seed`` (an int or a
        ``SeedSequence``) on ``backend`` (default: the network's), registered as ``rng.<name>``."""
        if name in self._streams:
            raise ValueError(f"{type(self).__name__}: a random stream named {name!r} exists already")
        gen = (backend or self.net.backend).rng(seed)
        self._streams[name] = gen
        return gen

    def rng_state(self) -> dict:
        """``{"rng.<name>": words}`` of every stream that has a state (NumPy's)."""
        out = {}
        for name, gen in self._streams.items():
            words = gen.state()
            if words is not None:
                out[f"rng.{name}"] = words
        return out

    def load_rng_state(self, state: dict, resume_key: int) -> None:
        """Continue every stream from ``state``'s ``rng.<name>``; a stream without a saved state
        (a GPU's, or a checkpoint from before it existed) is reseeded with ``resume_key``."""
        for name, gen in self._streams.items():
            words = state.get(f"rng.{name}")
            gen.set_state(None if words is None else np.asarray(words), resume_key=resume_key)

    @abstractmethod
    def act(self, V, obs, explore: bool = True):
        """One environment step of the network for B environments: ``(V_end, action)``."""

    @abstractmethod
    def observe(self, obs, action, reward, next_obs, terminated, truncated, V_start, V_end):
        """The outcome of the last exploring ``act``."""

    @abstractmethod
    def update(self) -> dict:
        """Learn from what was observed; returns scalar metrics ({} when nothing was learned)."""

    @abstractmethod
    def state_dict(self) -> dict:
        """Everything a resume needs, arrays and scalars, every random stream included."""

    @abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s state."""


class OnlineLearner(Learner):
    """Base of the local and perturbation learners: noise, one-step-late transitions.

    Critic record (:mod:`leaky.learners.records`): with ``record_critic`` set, :meth:`learn` leaves the
    per-neuron values of the transition it learns from, which is the previous step's
    (``critic_lag = 1``); :meth:`critic_record` hands them over once.
    """

    critic_lag = 1

    def __init__(self, net: Network, noise_std: float, seed: int):
        super().__init__(net)
        self.xp = net.xp
        self.noise_std = noise_std   # a float, or one std per neuron (N,)
        self.rng = self.stream("noise", seed + 7919)   # exploration noise and replay minibatches
        self._current: tuple[StepCache, Any] | None = None   # cache and noise of the latest act
        self._pending: dict | None = None                     # step t, waiting for step t+1
        self._ready: dict | None = None                       # step t-1, complete at update()
        self.last_noise = None
        self.last_cache = None
        self.updates = 0

    # -- the learner protocol of leaky.training.loop -----------------------------------------------

    def act(self, V, obs, explore: bool = True):
        net = self.net
        B = V.shape[0]
        noise = net.sample_noise(self.rng, B, self.noise_std) if explore and np.max(self.noise_std) > 0 else None
        V_end, action, cache = net.step(V, obs, noise)
        self.last_noise = noise   # (ℓ, B, N) or None: what the trace logs
        self.last_cache = cache   # the step's internal voltages (the trace's voltages="all")
        if explore:
            self._current = (cache, noise if noise is not None else net.backend.zeros(cache.alpha.shape))
        return V_end, action

    def observe(self, obs, action, reward, next_obs, terminated, truncated, V_start, V_end):
        """Record step t's outcome; the bootstrap step for truncated rows is taken now."""
        if self._current is None:
            raise RuntimeError("observe() called before act(explore=True)")
        be = self.net.backend
        cache, noise = self._current
        truncated = np.asarray(truncated, dtype=bool)
        terminated = np.asarray(terminated, dtype=bool)
        boot = None
        if (truncated & ~terminated).any():
            _, _, boot = self.net.step(V_end, next_obs, self.net.sample_noise(self.rng, V_end.shape[0], self.noise_std)
                                       if np.max(self.noise_std) > 0 else None)
        self._ready = self._pending
        self._pending = {"cache": cache, "noise": noise, "reward": be.asarray(reward),
                         "terminated": be.asarray(terminated.astype(np.float64)),
                         "truncated": truncated & ~terminated, "boot": boot}
        self._current = None

    def update(self) -> dict:
        """Learn the previous step's transition (its next cache is the latest act's)."""
        prev, self._ready = self._ready, None
        if prev is None:
            return self.learn_again()
        next_cache = self._pending["cache"]
        if prev["boot"] is not None:
            next_cache = _merge_rows(self.xp, next_cache, prev["boot"], prev["truncated"])
        tr = Transition(prev["cache"], prev["noise"], prev["reward"], prev["terminated"], next_cache)
        metrics = self.learn(tr)
        self.updates += 1
        return metrics

    @abstractmethod
    def learn(self, tr: Transition) -> dict:
        """One update from one transition of B environments; returns scalar metrics."""

    def learn_again(self) -> dict:
        """An update without a new transition (replay learners sample again); {} if none."""
        return {}

    def _record(self, q_local, td_error) -> None:
        from leaky.learners.records import CriticRecord

        self._critic_record = CriticRecord(self.critic_lag, q_local, td_error)

    # -- checkpoints ---------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The counters and the noise generator's state (the noise, and the replay minibatches
        of a replay learner, continue where they were)."""
        return {"updates": self.updates, **self.rng_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s state; the transition in flight is not kept (the next
        update has nothing to learn from, the one after learns the next step's)."""
        self.updates = int(state.get("updates", 0))
        if "rng" in state and "rng.noise" not in state:   # checkpoints before the streams were named
            state = {**state, "rng.noise": state["rng"]}
        self.load_rng_state(state, resume_key=self.updates)
        self._pending = self._current = None
        self._ready = None


def _merge_rows(xp, cache: StepCache, other: StepCache, rows: np.ndarray) -> StepCache:
    """``cache`` with the batch rows ``rows`` taken from ``other`` (axis 1 of every field)."""
    sel = xp.asarray(rows)[None, :, None]
    return StepCache(*(xp.where(sel, getattr(other, f), getattr(cache, f)) for f in ("V", "z", "y", "alpha")))
