"""Writing a trace: :class:`Trace`, SWMR-safe, crash-safe (docs/trace-format.md)."""

import atexit
import datetime as _dt
import functools
import json
import os
import resource
import time
import warnings
import weakref
from pathlib import Path

import h5py
import numpy as np

from leaky.core.backend import to_numpy
from leaky.core.errors import ConfigError, InputError, TraceError, describe
from leaky.trace.format import (
    AUTORESET_MODES, COUNT_FIELDS, DEFAULT_COMPRESSION, DEFAULT_FLUSH_EVERY,
    DEFAULT_TRAINING_FIELDS, DEFAULT_WEIGHT_EVERY, FORMAT_NAME, FORMAT_VERSION, STATUS_CLOSED,
    STATUS_ERROR, STATUS_OPEN, STATUS_WRITE_FAILED, VOLTAGE_MODES, _SPACE_MARGIN, _as_selection,
    _chunk_rows, _indices, _os_reason, _parse_training_fields, _to_json, _unbounded_box,
    compression_options, default_neurons, dependency_versions, serialize_box)


# --------------------------------------------------------------------------------------------
# the writer

class Trace:
    """Writes one run's trace: per-step data of chosen envs and neurons, episodes, training
    scalars and weight snapshots, to an HDF5 file in SWMR mode.

    Use it as a context manager (or call :meth:`close`); it flushes every ``flush_every`` vector
    steps, on :meth:`flush`, on close, on an exception inside ``with`` and at interpreter exit.

    Parameters
    ----------
    path : str or Path
        The ``.h5`` file to create. An existing file is refused unless ``overwrite=True``.
    n_envs, obs_dim, act_dim, n_neurons, delay : int
        B environments in the vector, observation and action sizes, N neurons, ℓ internal steps.
        Sensors are neurons ``0 … obs_dim-1``, outputs the last ``act_dim``
        (docs/design.md#2-the-network).
    config : dict
        The full run configuration, stored as JSON in the ``config`` attribute.
    seeds : dict
        Every seed of the run (``{"network": 0, "env": 1, …}``), stored as JSON.
    log_envs : sequence of int, ``"all"`` or None
        Envs whose steps are recorded (default: env 0 only). None means all.
    log_neurons : sequence of int, ``"all"``, () or None
        Neurons recorded in ``voltages``, ``q_local``, ``td_error``, ``noise``. None:
        :func:`default_neurons` (all if N <= 64, else the first 32 non-sensor neurons and the
        outputs). ``()`` records none (no per-neuron datasets).
    voltages : {"last", "all"}
        Keep the voltages after the last internal step only (``L = 1``), or all ℓ+1 of them.
    weight_every : int or None
        Keep a snapshot of K and b when ``step // weight_every`` changes (see :meth:`log_weights`);
        None or 0 keeps none.
    flush_every : int
        Vector steps between flushes: a crash loses at most this many steps.
    compression : str or hdf5plugin filter
        ``"lzf"`` by default: the cheapest codec every h5py can read (``"gzip"`` for files other
        HDF5 tools must open, ``"zstd"`` with hdf5plugin for the best speed and size); see
        :func:`compression_options`. Every dataset also carries a Fletcher-32 checksum, so a
        corrupted chunk is reported instead of read as wrong numbers.
    training_fields : sequence of names or (name, shape), or a {name: shape} mapping
        The columns of the ``training/`` table (scalars, or per-neuron vectors such as gradient
        alignment). SWMR cannot add datasets to a live file: a name not declared here is
        dropped with a warning (once per name).
    autoreset : {"same_step", "next_step"}
        How the loop's vector env starts new episodes (see :meth:`log_step`): ``same_step``
        (leaky.training.loop's choice; also right for envs reset by hand) or ``next_step``
        (Gymnasium's default vector-env mode).
    observation_space, action_space : gymnasium.spaces.Box, optional
        Stored for ``leaky export --minari``; they also set the dtypes of observations and actions
        (float32 otherwise).
    env_id : str, optional
        Gymnasium id of the environment (lets the Minari export carry an ``env_spec``).
    overwrite : bool
        Replace an existing file at ``path``.
    """

    def __init__(self, path, *, n_envs: int, obs_dim: int, act_dim: int, n_neurons: int,
                 delay: int = 1, config: dict | None = None, seeds: dict | None = None,
                 log_envs=(0,), log_neurons=None, voltages: str = "last",
                 weight_every: int | None = DEFAULT_WEIGHT_EVERY,
                 flush_every: int = DEFAULT_FLUSH_EVERY, compression=DEFAULT_COMPRESSION,
                 training_fields=DEFAULT_TRAINING_FIELDS, autoreset: str = "same_step",
                 observation_space=None, action_space=None, env_id: str | None = None,
                 overwrite: bool = False):
        for name, value, low in (("n_envs", n_envs, 1), ("obs_dim", obs_dim, 1),
                                 ("act_dim", act_dim, 1), ("n_neurons", n_neurons, 1),
                                 ("delay", delay, 1), ("flush_every", flush_every, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"Trace: {name}={value!r}, expected an int >= {low}")
        if weight_every is not None and (isinstance(weight_every, bool) or int(weight_every) < 0):
            raise ConfigError(f"Trace: weight_every={weight_every!r}, expected an int >= 0 or None")
        if voltages not in VOLTAGE_MODES:
            raise ConfigError(f"Trace: voltages={voltages!r}, expected one of {list(VOLTAGE_MODES)}")
        if autoreset not in AUTORESET_MODES:
            raise ConfigError(f"Trace: autoreset={autoreset!r}, expected one of {list(AUTORESET_MODES)}")
        self.path = Path(path)
        self.n_envs, self.obs_dim, self.act_dim = int(n_envs), int(obs_dim), int(act_dim)
        self.n_neurons, self.delay = int(n_neurons), int(delay)
        self.envs = _indices("log_envs", log_envs, self.n_envs, np.arange(self.n_envs))
        self.neurons = _indices("log_neurons", log_neurons, self.n_neurons,
                                default_neurons(self.n_neurons, self.obs_dim, self.act_dim))
        self.voltage_mode = voltages
        self.voltage_steps = self.delay + 1 if voltages == "all" else 1
        self.weight_every = int(weight_every or 0)
        self.flush_every = int(flush_every)
        self.autoreset = autoreset
        self.training_fields = _parse_training_fields(training_fields)
        self._compression = compression_options(compression)
        self._compression_name = compression if isinstance(compression, str) else repr(compression)
        # (not `dtype or float32`: older NumPy dtypes are falsy, having no fields)
        obs_dtype = np.dtype(np.float32 if observation_space is None else observation_space.dtype)
        act_dtype = np.dtype(np.float32 if action_space is None else action_space.dtype)
        if observation_space is not None and tuple(observation_space.shape) != (self.obs_dim,):
            raise ConfigError(f"Trace: observation_space shape {observation_space.shape} != (obs_dim,) = ({self.obs_dim},)")
        if action_space is not None and tuple(action_space.shape) != (self.act_dim,):
            raise ConfigError(f"Trace: action_space shape {action_space.shape} != (act_dim,) = ({self.act_dim},)")

        E, n, L = len(self.envs), len(self.neurons), self.voltage_steps
        self._step_shapes = {
            "observations": ((self.obs_dim,), obs_dtype), "actions": ((self.act_dim,), act_dtype),
            "rewards": ((), np.dtype(np.float64)), "terminations": ((), np.dtype(bool)),
            "truncations": ((), np.dtype(bool)), "env_index": ((), np.dtype(np.int32)),
        }
        if n:
            self._step_shapes.update({
                "voltages": ((L, n), np.dtype(np.float32)), "q_local": ((n,), np.dtype(np.float32)),
                "td_error": ((n,), np.dtype(np.float32)), "noise": ((n,), np.dtype(np.float32))})
        row_bytes = [int(np.prod(s, dtype=np.int64)) * dt.itemsize for s, dt in self._step_shapes.values()]
        self.chunk_rows = _chunk_rows(max(row_bytes))
        self._row_bytes = sum(row_bytes)
        # the buffer holds whole vector steps, so row r of it is always env slot r % E
        self._capacity = max(1, -(-self.chunk_rows // max(E, 1))) * max(E, 1)
        self._bufs = {k: np.zeros((self._capacity,) + s, dt) for k, (s, dt) in self._step_shapes.items()}
        self._bufs["env_index"][:] = np.resize(self.envs.astype(np.int32), self._capacity) if E else 0
        self._nbuf = 0
        self._n_log = E
        # selections as slices where possible: a view is cheaper than fancy indexing per call
        self._env_sel = _as_selection(self.envs)
        neuron_sel = _as_selection(self.neurons)
        both_fancy = not isinstance(self._env_sel, slice) and not isinstance(neuron_sel, slice)
        self._neuron_sel = neuron_sel
        self._en_sel = np.ix_(self.envs, self.neurons) if both_fancy else (self._env_sel, neuron_sel)
        # (B, N) NumPy array -> the logged block; one env and a neuron list is the common case,
        # and ndarray.take on one row is 2-3x cheaper than 2-D fancy indexing
        if E == 1 and not isinstance(neuron_sel, slice):
            e0 = int(self.envs[0])
            self._pick = lambda x: x[e0].take(neuron_sel)
        else:
            en_sel = self._en_sel
            self._pick = lambda x: x[en_sel]

        # per logged env (plain lists: per-step bookkeeping of 1 env is cheaper without NumPy):
        # the open episode, and whether its next row is a NEXT_STEP reset step
        self._ep_start = [-1] * E
        self._ep_len = [0] * E
        self._ep_return = [0.0] * E
        self._reset_next = [False] * E
        self._awaiting_final = [None] * E      # an ended episode waiting for its final obs
        self._episodes: list[tuple] = []       # finished, not yet written
        self._training: list[tuple] = []
        self._warned: set[str] = set()

        self._rows = 0                         # rows written to the file (committed or not)
        self._vector_steps = 0
        self._counts = dict.fromkeys(COUNT_FIELDS, 0)
        self._since_flush = 0
        self._last_weight_step = None
        self._status = STATUS_OPEN
        self._failed: str | None = None
        self._closed = False
        self._f = None
        self._create(config, seeds, observation_space, action_space, env_id, overwrite,
                     obs_dtype, act_dtype)
        self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._atexit)

    # -- creation ---------------------------------------------------------------------------

    def _create(self, config, seeds, observation_space, action_space, env_id, overwrite,
                obs_dtype, act_dtype) -> None:
        path = self.path
        if not path.parent.exists():
            raise TraceError(f"cannot create trace {path}: directory {path.parent} does not exist")
        if path.is_dir():
            raise TraceError(f"cannot create trace {path}: it is a directory, expected a file path")
        if path.exists() and not overwrite:
            raise TraceError(f"cannot create trace {path}: the file exists (pass overwrite=True "
                             "to replace it, or choose another path)")
        config_json, seeds_json = _to_json("config", config), _to_json("seeds", seeds)
        obs_space = serialize_box(observation_space) or _unbounded_box(self.obs_dim, obs_dtype)
        act_space = serialize_box(action_space) or _unbounded_box(self.act_dim, act_dtype)
        self._check_space(_SPACE_MARGIN, "create the file")
        try:
            f = h5py.File(path, "w", libver="latest", rdcc_nbytes=8 << 20)
        except OSError as e:
            raise TraceError(f"cannot create trace {path}: {_os_reason(e)}; expected a writable "
                             "location") from None
        self._f = f
        try:
            self._create_layout(f, config_json, seeds_json, obs_space, act_space, env_id)
            f.swmr_mode = True
            self._commit()
        except BaseException as e:
            try:
                f.close()
            finally:
                self._f = None
                path.unlink(missing_ok=True)        # a half-made file of ours: never leave it
            if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, TraceError):
                raise TraceError(f"cannot create trace {path}: {_os_reason(e)}") from None
            raise

    def _create_layout(self, f, config_json, seeds_json, obs_space, act_space, env_id) -> None:
        comp = dict(self._compression, fletcher32=True)
        a = f.attrs
        a["format"] = FORMAT_NAME
        a["format_version"] = FORMAT_VERSION
        a["config"] = config_json
        a["seeds"] = seeds_json
        a["versions"] = json.dumps(dependency_versions(), sort_keys=True)
        a["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        for k in ("n_envs", "obs_dim", "act_dim", "n_neurons", "delay", "weight_every",
                  "flush_every", "chunk_rows", "voltage_steps"):
            a[k] = int(getattr(self, k))
        a["voltages"] = self.voltage_mode
        a["autoreset"] = self.autoreset
        a["compression"] = self._compression_name
        a["env_id"] = env_id or ""
        a["observation_space"] = obs_space
        a["action_space"] = act_space
        a["training_fields"] = json.dumps({k: list(v) for k, v in self.training_fields.items()})

        R = self.chunk_rows
        self._ds = {}
        for name, (shape, dtype) in self._step_shapes.items():
            self._ds[name] = f.create_dataset(f"steps/{name}", shape=(0,) + shape, dtype=dtype,
                                              maxshape=(None,) + shape, chunks=(R,) + shape, **comp)
        ep_shapes = {"start": ((), np.int64), "length": ((), np.int64), "return": ((), np.float64),
                     "env_index": ((), np.int32), "terminated": ((), bool),
                     "final_observation": ((self.obs_dim,), self._step_shapes["observations"][1])}
        for name, (shape, dtype) in ep_shapes.items():
            self._ds[f"episodes/{name}"] = f.create_dataset(
                f"episodes/{name}", shape=(0,) + shape, dtype=dtype, maxshape=(None,) + shape,
                chunks=(1024,) + shape, **comp)
        f.create_dataset("training/step", shape=(0,), dtype=np.int64, maxshape=(None,),
                         chunks=(1024,), **comp)
        for name, shape in self.training_fields.items():
            f.create_dataset(f"training/{name}", shape=(0,) + shape, dtype=np.float64,
                             maxshape=(None,) + shape, chunks=(max(1, 8192 // max(1, int(np.prod(shape, dtype=np.int64)))),) + shape,
                             fillvalue=np.nan, **comp)
        N = self.n_neurons
        k_rows = max(1, min(N, (1 << 20) // (4 * N)))
        f.create_dataset("weights/step", shape=(0,), dtype=np.int64, maxshape=(None,), chunks=(256,), **comp)
        f.create_dataset("weights/K", shape=(0, N, N), dtype=np.float32, maxshape=(None, N, N),
                         chunks=(1, k_rows, N), **comp)
        f.create_dataset("weights/b", shape=(0, N), dtype=np.float32, maxshape=(None, N),
                         chunks=(16, N), **comp)
        f.create_dataset("meta/envs", data=self.envs)
        f.create_dataset("meta/neurons", data=self.neurons)
        counts = f.create_dataset("meta/counts", data=np.zeros(len(COUNT_FIELDS), np.int64))
        counts.attrs["fields"] = json.dumps(COUNT_FIELDS)
        f.create_dataset("meta/flush_time", data=np.full(2, time.time()))

    # -- logging ----------------------------------------------------------------------------

    def log_step(self, obs, actions, rewards, terminations, truncations, *, next_obs=None,
                 final_obs=None, voltages=None, q_local=None, td_error=None, noise=None) -> None:
        """Record one vectorized env step ``s_t, a_t → r_t, s_{t+1}`` of all B envs.

        Only the logged envs and neurons are kept; any array :func:`leaky.to_numpy` converts
        is accepted (a GPU array is indexed on the device first, so only logged rows cross).

        Parameters
        ----------
        obs : (B, obs_dim)  s_t, the observations the actions were taken on
        actions : (B, act_dim)  a_t
        rewards, terminations, truncations : (B,)  what ``env.step(actions)`` returned
        next_obs : (B, obs_dim), optional
            s_{t+1} of each env's current episode: for an env whose episode ends at this step,
            its final observation (what ``leaky.training.loop`` passes: ``env.step``'s observations
            with ``info["final_obs"]`` put in for the envs that are done). Only the rows of
            ending envs are used: it supplies the T+1-th observation of Minari's layout.
        final_obs : (B, obs_dim), optional
            Final observations of the envs whose episode ends at this step (Gymnasium's
            ``info["final_obs"]`` stacked); rows of other envs are ignored. Takes precedence
            over ``next_obs``. Beware: with same-step autoreset, ``env.step``'s own
            observations of ending envs are already the *reset* observations.
        voltages : (ℓ+1, B, N), (1, B, N) or (B, N), optional
            ``StepCache.V``; with ``voltages="last"`` the last is kept. NaN when omitted.
        q_local, td_error, noise : (B, N), optional
            Per-neuron critic value, TD error and exploration noise. NaN when omitted.

        Episodes. Each logged env's episode runs from its first recorded step to the step whose
        termination or truncation is set; its final observation (the T+1-th) comes from
        ``final_obs``, else ``next_obs``, else — with ``autoreset="next_step"`` — from the next
        step's ``obs`` of that env, else it is NaN. With ``"same_step"`` the next step of that
        env starts its next episode. With ``"next_step"`` (Gymnasium's default), the step after
        an episode's end is the env's reset step (action ignored, reward 0): its row is stored
        but belongs to no episode.
        """
        if self._closed or self._failed:
            self._check_writable()
        E, B = self._n_log, self.n_envs
        if self._nbuf + E > self._capacity:
            self._write_steps()
        r = self._nbuf
        rows = slice(r, r + E)
        bufs = self._bufs
        take, vec = self._take, (B,)
        bufs["observations"][rows] = take("obs", obs, (B, self.obs_dim))
        bufs["actions"][rows] = take("actions", actions, (B, self.act_dim))
        bufs["rewards"][rows] = take("rewards", rewards, vec)
        bufs["terminations"][rows] = take("terminations", terminations, vec)
        bufs["truncations"][rows] = take("truncations", truncations, vec)
        term = bufs["terminations"][rows]
        done = term | bufs["truncations"][rows]
        nxt = fin = None
        if np.count_nonzero(done):                   # count_nonzero: ~10x cheaper than .any()
            if final_obs is not None:
                fin = take("final_obs", final_obs, (B, self.obs_dim))
            if next_obs is not None:
                nxt = take("next_obs", next_obs, (B, self.obs_dim))
        if self.neurons.size:
            self._take_neurons(rows, voltages, q_local, td_error, noise)
        self._track_episodes(self._rows + r, bufs["observations"][rows], bufs["rewards"][rows],
                             term, done, fin, nxt)
        self._nbuf += E
        self._vector_steps += 1
        self._since_flush += 1
        if self._since_flush >= self.flush_every:
            self.flush()

    def _take(self, name: str, x, shape: tuple):
        """The logged envs' rows of a (B, …) array, as NumPy (GPU arrays indexed on device)."""
        if type(x) is np.ndarray:
            if x.shape != shape:
                self._bad_shape(name, x, shape)
            return x[self._env_sel]
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if tuple(x.shape) != shape:
            self._bad_shape(name, x, shape)
        return to_numpy(x[self._env_sel])

    def _bad_shape(self, name, x, shape, what="Trace.log_step"):
        raise InputError(f"{what}: {name} got {describe(x)}, expected shape {shape} "
                         f"(B = n_envs = {self.n_envs}, N = n_neurons = {self.n_neurons}, "
                         f"ℓ = delay = {self.delay})")

    def _take_neurons(self, rows, voltages, q_local, td_error, noise) -> None:
        B, N = self.n_envs, self.n_neurons
        bufs, pick = self._bufs, self._pick
        if voltages is None:
            bufs["voltages"][rows] = np.nan
        else:
            V = voltages if hasattr(voltages, "shape") else np.asarray(voltages)
            shape = V.shape
            if self.voltage_mode == "all":
                if tuple(shape) != (self.delay + 1, B, N):
                    self._bad_shape("voltages", V, (self.delay + 1, B, N))
                v = to_numpy(V[:, self._env_sel][:, :, self._neuron_sel])        # (L, E, n)
                bufs["voltages"][rows] = v.transpose(1, 0, 2)
            else:
                if len(shape) == 3 and tuple(shape[1:]) == (B, N):
                    V = V[-1]
                elif tuple(shape) != (B, N):
                    self._bad_shape("voltages", V, "(ℓ+1, B, N), (1, B, N) or (B, N)")
                bufs["voltages"][rows, 0] = pick(V) if type(V) is np.ndarray else to_numpy(V[self._en_sel])
        for name, x in (("q_local", q_local), ("td_error", td_error), ("noise", noise)):
            if x is None:
                bufs[name][rows] = np.nan
            elif type(x) is np.ndarray and x.shape == (B, N):
                bufs[name][rows] = pick(x)
            else:
                if not hasattr(x, "shape"):
                    x = np.asarray(x)
                if tuple(x.shape) != (B, N):
                    self._bad_shape(name, x, (B, N))
                bufs[name][rows] = to_numpy(x[self._en_sel])

    def _track_episodes(self, row0, obs, rew, term, done, fin, nxt) -> None:
        starts, lens, rets, reset_next = self._ep_start, self._ep_len, self._ep_return, self._reset_next
        rew = rew.tolist()
        done = done.tolist()
        next_step = self.autoreset == "next_step"
        for j in range(len(lens)):
            if reset_next[j]:
                # Gymnasium NEXT_STEP autoreset: this row is the env's reset step, not a
                # transition; its obs is the final observation of the episode that just ended.
                reset_next[j] = False
                waiting = self._awaiting_final[j]
                if waiting is not None:
                    self._episodes.append(waiting[:-1] + (obs[j].copy(),))
                    self._awaiting_final[j] = None
                continue
            if lens[j] == 0:
                starts[j] = row0 + j
            lens[j] += 1
            rets[j] += rew[j]
            if not done[j]:
                continue
            final = fin[j] if fin is not None else nxt[j] if nxt is not None else None
            record = (starts[j], lens[j], rets[j], int(self.envs[j]), bool(term[j]),
                      None if final is None else np.array(final, copy=True))
            if final is None and next_step:
                self._awaiting_final[j] = record
            else:
                self._episodes.append(record)
            lens[j] = 0
            rets[j] = 0.0
            reset_next[j] = next_step

    def log_training(self, step: int, **values) -> None:
        """Append one row to the ``training/`` table: ``step`` and any declared fields.

        Fields left out are NaN. Vector fields take an array of their declared shape. A field
        not declared in ``training_fields`` is dropped with a warning, once per name: a live
        SWMR file cannot grow a new dataset, and a trace should not stop a run.
        """
        self._check_writable()
        unknown = set(values) - set(self.training_fields) - self._warned
        if unknown:
            self._warned |= unknown
            warnings.warn(f"Trace.log_training: field(s) {sorted(unknown)} not declared in "
                          f"training_fields {sorted(self.training_fields)}; they are not recorded "
                          "(declare them: Trace(training_fields=(…)))", RuntimeWarning, stacklevel=2)
        row = [int(step)]
        for name, shape in self.training_fields.items():
            v = values.get(name)
            if v is None:
                row.append(np.full(shape, np.nan))
                continue
            v = np.asarray(to_numpy(v), dtype=np.float64)
            if v.shape != shape:
                raise InputError(f"Trace.log_training: {name} got {describe(v)}, expected shape {shape}")
            row.append(v)
        self._training.append(tuple(row))
        if len(self._training) >= 1024:
            self._write_training()

    def weights_due(self, step: int) -> bool:
        """Whether :meth:`log_weights` would keep a snapshot at ``step`` (saves a GPU copy)."""
        if not self.weight_every:
            return False
        last = self._last_weight_step
        return last is None or int(step) // self.weight_every != last // self.weight_every

    def log_weights(self, step: int, K, b, *, force: bool = False) -> bool:
        """Keep a snapshot of ``K`` (N, N) and ``b`` (N,) if one is due at ``step``.

        Snapshots are kept at the first call and whenever ``step // weight_every`` changes
        (``step`` in the same unit as :meth:`log_training`'s, env steps by convention), or when
        ``force``. Returns whether one was written. Stored as float32.
        """
        self._check_writable()
        if not (force or self.weights_due(step)):
            return False
        N = self.n_neurons
        K = np.asarray(to_numpy(K))
        b = np.asarray(to_numpy(b))
        if K.shape != (N, N) or b.shape != (N,):
            raise InputError(f"Trace.log_weights: got K {describe(K)} and b {describe(b)}, "
                             f"expected K ({N}, {N}) and b ({N},)")
        i = self._counts["weights"]
        with self._writing("weight snapshot", 4 * N * (N + 1) + 8):
            for name, value in (("step", int(step)), ("K", K), ("b", b)):
                ds = self._f[f"weights/{name}"]
                ds.resize(i + 1, axis=0)
                ds[i] = value
        self._counts["weights"] = i + 1
        self._last_weight_step = int(step)
        return True

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything buffered and make it visible to readers (and safe from a crash)."""
        self._check_writable()
        self._write_steps()
        self._write_episodes()
        self._write_training()
        self._commit()

    def _commit(self) -> None:
        # Data first, then the counts that make it visible: a reader never counts a row whose
        # bytes may not be on disk yet.
        with self._writing("flush", 0):
            self._f.flush()
            self._counts.update(rows=self._rows, vector_steps=self._vector_steps,
                                status=self._status, flushes=self._counts["flushes"] + 1)
            self._f["meta/counts"][:] = [self._counts[k] for k in COUNT_FIELDS]
            self._f["meta/flush_time"][1] = time.time()
            self._f.flush()
        self._since_flush = 0

    def _write_steps(self) -> None:
        n = self._nbuf
        if not n:
            return
        r0 = self._rows
        with self._writing("steps", 2 * n * self._row_bytes):
            for name, buf in self._bufs.items():
                ds = self._ds[name]
                ds.resize(r0 + n, axis=0)
                ds[r0:r0 + n] = buf[:n]
        self._rows = r0 + n
        self._nbuf = 0

    def _write_episodes(self) -> None:
        eps = self._episodes
        if not eps:
            return
        i0, n = self._counts["episodes"], len(eps)
        cols = list(zip(*eps))
        finals = np.stack([np.full(self.obs_dim, np.nan) if x is None else x for x in cols[5]])
        data = {"start": cols[0], "length": cols[1], "return": cols[2], "env_index": cols[3],
                "terminated": cols[4], "final_observation": finals}
        with self._writing("episodes", n * (8 * self.obs_dim + 64)):
            for name, value in data.items():
                ds = self._ds[f"episodes/{name}"]
                ds.resize(i0 + n, axis=0)
                ds[i0:i0 + n] = np.asarray(value)
        self._counts["episodes"] = i0 + n
        self._episodes = []

    def _write_training(self) -> None:
        rows = self._training
        if not rows:
            return
        i0, n = self._counts["updates"], len(rows)
        names = ["step", *self.training_fields]
        with self._writing("training table", n * 8 * (1 + sum(int(np.prod(s, dtype=np.int64)) for s in self.training_fields.values()))):
            for k, name in enumerate(names):
                ds = self._f[f"training/{name}"]
                ds.resize(i0 + n, axis=0)
                ds[i0:i0 + n] = np.asarray([row[k] for row in rows])
        self._counts["updates"] = i0 + n
        self._training = []

    def _check_space(self, nbytes: int, what: str, margin: int = _SPACE_MARGIN) -> None:
        """Refuse a write the disk (or the process's file-size limit) cannot hold.

        HDF5 leaves a file handle it cannot close after a failed write (and HDF5 2.0 may crash
        the process later), so running out of space is caught here, before HDF5 is called: the
        file keeps everything up to the last flush, and the error says so.
        """
        need = int(nbytes) + margin
        where = self.path.parent
        st = os.statvfs(where)
        free = st.f_bavail * st.f_frsize
        limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
        if limit != resource.RLIM_INFINITY:
            size = self.path.stat().st_size if self.path.exists() else 0
            free = min(free, limit - size)
        if free < need:
            raise TraceError(f"not enough space to {what} in trace {self.path}: need about "
                             f"{need / 1e6:.1f} MB, {max(free, 0) / 1e6:.1f} MB available "
                             f"(disk free space or file-size limit)")

    @property
    def rows(self) -> int:
        """Rows recorded so far (written or buffered)."""
        return self._rows + self._nbuf

    @property
    def committed(self) -> dict:
        """The counts a reader sees now (as of the last flush)."""
        return dict(self._counts)

    def _check_writable(self) -> None:
        if self._closed:
            raise TraceError(f"trace {self.path} is closed")
        if self._failed:
            raise TraceError(f"trace {self.path} stopped after a failed write ({self._failed}); "
                             f"the file holds everything up to the last flush "
                             f"({self._counts['vector_steps']} vector steps)")

    def _writing(self, what: str, nbytes: int):
        return _WriteGuard(self, what, nbytes)

    # -- closing ----------------------------------------------------------------------------

    def close(self, *, error: bool = False) -> None:
        """Flush and close. ``error=True`` records that the run stopped on an exception."""
        if self._closed:
            return
        try:
            if not self._failed:
                for j, waiting in enumerate(self._awaiting_final):
                    if waiting is not None:           # final obs never came: NaN, documented
                        self._episodes.append(waiting)
                        self._awaiting_final[j] = None
                self._status = STATUS_ERROR if error else STATUS_CLOSED
                self.flush()
            else:
                self._status = STATUS_WRITE_FAILED
                self._try_mark_failed()
        finally:
            self._closed = True
            atexit.unregister(self._atexit)
            f, self._f = self._f, None
            if f is not None:
                try:
                    f.close()
                except Exception as e:            # noqa: BLE001 - reported, never swallowed
                    if not self._failed:
                        raise TraceError(f"closing trace {self.path} failed: {_os_reason(e)}") from None

    def _try_mark_failed(self) -> None:
        # Best effort, only when there is room: tell readers the writer stopped on a failed write.
        try:
            self._check_space(0, "record the failure", margin=64 << 10)
            self._counts["status"] = STATUS_WRITE_FAILED
            self._f["meta/counts"][:] = [self._counts[k] for k in COUNT_FIELDS]
            self._f.flush()
        except Exception:                          # noqa: BLE001 - the original error was raised
            pass

    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close(error=exc_type is not None)
        return False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "failed" if self._failed else "open"
        return (f"Trace({str(self.path)!r}, {state}, {self.rows} rows, envs {self.envs.tolist()}, "
                f"{len(self.neurons)} neurons)")


class _WriteGuard:
    """Checks space before an HDF5 write and turns a failed one into a TraceError that sticks."""

    def __init__(self, trace: Trace, what: str, nbytes: int):
        self.trace, self.what, self.nbytes = trace, what, nbytes

    def __enter__(self):
        t = self.trace
        try:
            t._check_space(self.nbytes, f"write {self.what}")
        except TraceError as e:
            t._failed = str(e)
            raise TraceError(f"{e}; the file holds everything up to the last flush "
                             f"({t._counts['vector_steps']} vector steps, "
                             f"{t._counts['episodes']} episodes)") from None

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None or issubclass(exc_type, TraceError):
            return False
        if issubclass(exc_type, (OSError, RuntimeError, ValueError)):
            t = self.trace
            t._failed = f"{self.what}: {_os_reason(exc)}"
            raise TraceError(f"writing {self.what} to trace {t.path} failed: {_os_reason(exc)}; "
                             f"the file holds everything up to the last flush "
                             f"({t._counts['vector_steps']} vector steps)") from None
        return False


def _close_at_exit(ref) -> None:
    trace = ref()
    if trace is not None and not trace._closed:
        try:
            trace.close()
        except Exception:                         # noqa: BLE001 - nothing to report to at exit
            pass
