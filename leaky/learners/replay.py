"""A ring-buffer replay memory on the backend's array module (NumPy or CuPy).

Each row is one transition of one environment copy::

    obs (d_obs)  action (d_act)  reward  next_obs (d_obs)  terminated
    V (N)        the voltages carried into the step (before the sensors are applied)
    V_next (N)   the voltages carried into the next step

The network is recurrent, so its action depends on the carried voltages as well as on the
observation: a learner that recomputes the policy on replayed data needs ``V``. Memory:
``capacity · (2·d_obs + d_act + 2 + 2·N)`` values of the backend's dtype, allocated up front
(NumPy's zeros are lazily paged in, so a large, mostly empty buffer costs little host memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leaky.core.backend import Backend, get_backend, to_numpy
from leaky.core.errors import ConfigError, InputError

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "V", "V_next")


@dataclass(frozen=True)
class ReplayBatch:
    """A minibatch of transitions (backend arrays, backend dtype).

    Attributes
    ----------
    obs, next_obs : (B, d_obs);  action : (B, d_act);  reward, terminated : (B,)
    V, V_next : (B, N) voltages carried into this step and into the next
    """

    obs: Any
    action: Any
    reward: Any
    next_obs: Any
    terminated: Any
    V: Any
    V_next: Any


class ReplayBuffer:
    """Fixed-capacity FIFO of transitions; the oldest rows are overwritten first.

    Parameters
    ----------
    capacity : int
        Number of transitions kept.
    n_obs, n_act, n_neurons : int
        d_obs, d_act and N.
    backend : Backend or str
        Where the arrays live and their dtype.
    """

    def __init__(self, capacity: int, n_obs: int, n_act: int, n_neurons: int,
                 backend: Backend | str = "numpy"):
        if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 1:
            raise ConfigError(f"ReplayBuffer.capacity: got {capacity!r}, expected a positive int")
        self.capacity = int(capacity)
        self.backend = be = get_backend(backend)
        widths = {"obs": n_obs, "action": n_act, "reward": None, "next_obs": n_obs,
                  "terminated": None, "V": n_neurons, "V_next": n_neurons}
        self._widths = widths
        self._data = {k: be.zeros((self.capacity,) if w is None else (self.capacity, w))
                      for k, w in widths.items()}
        self.pos = 0      # next row to write
        self.size = 0     # rows filled

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward, next_obs, terminated, V, V_next) -> None:
        """Append B transitions (array-likes with a leading batch axis B ≤ capacity)."""
        given = dict(obs=obs, action=action, reward=reward, next_obs=next_obs,
                     terminated=terminated, V=V, V_next=V_next)
        B = None
        rows = {}
        for k in FIELDS:
            x = given[k]
            if not hasattr(x, "shape"):
                x = np.asarray(x)
            if B is None:
                B = int(x.shape[0]) if len(x.shape) else -1
            w = self._widths[k]
            want = (B,) if w is None else (B, w)
            if tuple(x.shape) != want:
                raise InputError(f"ReplayBuffer.add: {k} has shape {tuple(x.shape)}, "
                                 f"expected {want}")
            rows[k] = self.backend.asarray(x)
        if B < 1 or B > self.capacity:
            raise InputError(f"ReplayBuffer.add: got {B} rows, "
                             f"expected 1 … capacity = {self.capacity}")
        idx = (self.pos + np.arange(B)) % self.capacity
        if self.backend.on_gpu:
            idx = self.backend.xp.asarray(idx)
        for k in FIELDS:
            self._data[k][idx] = rows[k]
        self.pos = (self.pos + B) % self.capacity
        self.size = min(self.size + B, self.capacity)

    def sample(self, batch_size: int, rng) -> ReplayBatch:
        """``batch_size`` rows drawn uniformly with replacement.

        ``rng`` is a generator on the backend's array module with ``integers(low, high, size)``
        (``numpy.random.default_rng`` or ``cupy.random.default_rng``).
        """
        if self.size == 0:
            raise InputError("ReplayBuffer.sample: the buffer is empty")
        idx = rng.integers(0, self.size, size=batch_size)
        return ReplayBatch(**{k: self._data[k][idx] for k in FIELDS})

    def state_dict(self) -> dict:
        """The stored rows (oldest first) as NumPy arrays, plus ``capacity``: for checkpoints."""
        oldest_first = (self.pos - self.size + np.arange(self.size)) % self.capacity
        order = self.backend.xp.asarray(oldest_first)
        d = {k: to_numpy(self._data[k][order]) for k in FIELDS}
        d["capacity"] = np.asarray(self.capacity, dtype=np.int64)
        return d

    def load_state_dict(self, d: dict) -> None:
        """Replace the contents by what :meth:`state_dict` returned (the newest rows that fit)."""
        self.pos = self.size = 0
        n = int(np.asarray(d["reward"]).shape[0])
        keep = slice(max(0, n - self.capacity), n)
        if n - keep.start:
            self.add(**{k: np.asarray(d[k])[keep] for k in FIELDS})
