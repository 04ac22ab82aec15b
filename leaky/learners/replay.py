"""The learners' one replay memory: a ring buffer on the backend's array module (NumPy or CuPy).

:class:`RingBuffer` stores rows of named fields and the one checkpoint layout (its rows in
storage order, with ``pos``, ``size`` and ``capacity``); the local learner's cache replay
(``leaky.learners.local``) and DDPG's :class:`ReplayBuffer` are views of it with their own fields.
Each learner draws the row indices from its own generator, which its ``state_dict`` saves.

DDPG's rows are one transition of one environment copy::

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


class RingBuffer:
    """The learners' one replay memory: a fixed-capacity FIFO of rows of named fields, on the
    backend's array module; the oldest rows are overwritten first.

    ``shapes`` (field → trailing shape) allocates the storage up front in the backend's dtype;
    without it the first :meth:`put` allocates it with the shapes and dtypes of its rows. Which
    rows to read is the caller's choice (:meth:`rows`): each learner draws the indices from its
    own generator, so the buffer holds no random state.

    :meth:`state_dict` is ``{"capacity", "pos", "size", <field>: the first size rows of the
    storage}`` as NumPy arrays, in storage order: loaded into a buffer of the same capacity it
    puts every row back where it was, so a resumed run samples the rows an uninterrupted one
    would. Into another capacity, or from an oldest-first layout without ``pos``, the newest
    rows that fit are kept.
    """

    def __init__(self, capacity: int, fields: tuple[str, ...], backend: Backend | str = "numpy",
                 shapes: dict[str, tuple[int, ...]] | None = None, what: str = "RingBuffer"):
        if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 1:
            raise ConfigError(f"{what}.capacity: got {capacity!r}, expected a positive int")
        self.capacity = int(capacity)
        self.fields = tuple(fields)
        self.backend = get_backend(backend)
        self.what = what
        self._store = None
        if shapes is not None:
            self._store = {f: self.backend.zeros((self.capacity,) + tuple(shapes[f])) for f in self.fields}
        self.pos = 0      # next row to write
        self.size = 0     # rows filled

    def __len__(self) -> int:
        return self.size

    def put(self, rows: dict) -> None:
        """Append B rows: ``rows[field]`` are backend arrays with a leading axis B ≤ capacity."""
        B = int(rows[self.fields[0]].shape[0])
        if B < 1 or B > self.capacity:
            raise InputError(f"{self.what}.add: got {B} rows, expected 1 … capacity = {self.capacity}")
        if self._store is None:
            self._store = {f: self.backend.zeros((self.capacity,) + tuple(rows[f].shape[1:]), dtype=rows[f].dtype)
                           for f in self.fields}
        idx = (self.pos + np.arange(B)) % self.capacity
        if self.backend.on_gpu:
            idx = self.backend.xp.asarray(idx)
        for f in self.fields:
            self._store[f][idx] = rows[f]
        self.pos = int((self.pos + B) % self.capacity)
        self.size = min(self.size + B, self.capacity)

    def rows(self, idx) -> dict:
        """The rows at storage indices ``idx`` (an index array below ``len(self)``), per field."""
        if self.size == 0:
            raise InputError(f"{self.what}.sample: the buffer is empty")
        return {f: self._store[f][idx] for f in self.fields}

    def state_dict(self) -> dict:
        d = {k: np.asarray(getattr(self, k), dtype=np.int64) for k in ("capacity", "pos", "size")}
        if self.size:
            d.update({f: to_numpy(self._store[f][: self.size]).copy() for f in self.fields})
        return d

    def load_state_dict(self, d: dict) -> None:
        size = int(np.asarray(d.get("size", np.asarray(d[self.fields[0]]).shape[0])))
        self.pos = self.size = 0
        if not size:
            return
        data = {f: np.asarray(d[f]) for f in self.fields}
        if "pos" in d:
            pos, capacity = int(np.asarray(d["pos"])), int(np.asarray(d.get("capacity", self.capacity)))
            if capacity == self.capacity:          # every row back in its place
                self.put({f: self.backend.asarray(x) for f, x in data.items()})
                self.pos = pos
                return
            order = (pos - size + np.arange(size)) % capacity     # storage order → oldest first
            data = {f: x[order] for f, x in data.items()}
        keep = slice(max(0, size - self.capacity), size)          # the newest rows that fit
        self.put({f: self.backend.asarray(x[keep]) for f, x in data.items()})


class ReplayBuffer:
    """DDPG's replay: a :class:`RingBuffer` of the fields ``FIELDS``, shapes checked on add.

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
        widths = {"obs": n_obs, "action": n_act, "reward": None, "next_obs": n_obs,
                  "terminated": None, "V": n_neurons, "V_next": n_neurons}
        self._widths = widths
        self.ring = RingBuffer(capacity, FIELDS, backend, what="ReplayBuffer",
                               shapes={k: () if w is None else (w,) for k, w in widths.items()})
        self.capacity, self.backend = self.ring.capacity, self.ring.backend

    def __len__(self) -> int:
        return len(self.ring)

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
        self.ring.put(rows)

    def sample(self, batch_size: int, rng) -> ReplayBatch:
        """``batch_size`` rows drawn uniformly with replacement.

        ``rng`` is a generator on the backend's array module with ``integers(low, high, size)``
        (``numpy.random.default_rng`` or ``cupy.random.default_rng``).
        """
        if len(self.ring) == 0:
            raise InputError("ReplayBuffer.sample: the buffer is empty")
        return ReplayBatch(**self.ring.rows(rng.integers(0, len(self.ring), size=batch_size)))

    def state_dict(self) -> dict:
        """:meth:`RingBuffer.state_dict`: for checkpoints."""
        return self.ring.state_dict()

    def load_state_dict(self, d: dict) -> None:
        """Replace the contents by what :meth:`state_dict` returned (or an older checkpoint's
        oldest-first rows): :meth:`RingBuffer.load_state_dict`."""
        self.ring.load_state_dict(d)
