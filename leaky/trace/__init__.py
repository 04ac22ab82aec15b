"""Traces: one HDF5 file per run, readable while it is written and after a crash.

A trace is written by :class:`Trace` (used by the training loop) and read by
:class:`TraceReader` / :func:`open_trace` (used by ``leaky inspect``, ``leaky plot``,
``leaky export --minari`` and by researchers). The layout is flat and step-major, as D4RL's
(docs/design.md#7-traces; every field is documented in ``docs/trace-format.md``)::

    /steps/observations   (R, obs_dim)      s_t, the observation the action was taken on
    /steps/actions        (R, act_dim)      a_t as sent to the env
    /steps/rewards        (R,) float64      r_t
    /steps/terminations   (R,) bool
    /steps/truncations    (R,) bool
    /steps/env_index      (R,) int32        which env of the vector (one of the logged envs)
    /steps/voltages       (R, L, n) float32 L = ℓ+1 (voltages="all") or 1 (the last), n logged neurons
    /steps/q_local        (R, n) float32    per-neuron critic value Q_n(x, α)
    /steps/td_error       (R, n) float32    per-neuron TD error δ_n
    /steps/noise          (R, n) float32    per-neuron exploration noise ξ (decision step)
    /episodes/{start, length, return, env_index, terminated, final_observation}
    /training/step and one dataset per declared field (per-update scalars or vectors)
    /weights/{step, K, b} snapshots every ``weight_every`` steps
    /meta/counts          committed row/episode/update/snapshot counts and the writer's status
    /meta/envs, /meta/neurons   the logged env and neuron indices

Row ``r`` holds env ``envs[r % E]`` at logged vector step ``r // E`` (``E`` logged envs), so
the rows of one episode are ``start + E·k`` for ``k < length``: a strided slice.

Why SWMR and ``meta/counts``: HDF5's single-writer/multiple-reader mode lets another process
read the file while it grows, and leaves a readable file when the writer is killed; it forbids
creating objects once live, so everything is created up front. Data is written and flushed
first, then ``meta/counts`` is advanced and flushed: a reader trusts only the counted rows, so
it never sees half a step, whatever moment the writer stopped.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import functools
import importlib.metadata
import json
import math
import os
import platform
import resource
import time
import warnings
import weakref
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from leaky.core.backend import to_numpy
from leaky.core.errors import ConfigError, InputError, TraceError, describe

FORMAT_NAME = "leaky-trace"
FORMAT_VERSION = 1

#: fields of ``meta/counts``, in order
COUNT_FIELDS = ("rows", "vector_steps", "episodes", "updates", "weights", "status", "flushes")
STATUS_OPEN, STATUS_CLOSED, STATUS_ERROR, STATUS_WRITE_FAILED = 0, 1, 2, 3
STATUS_NAMES = {STATUS_OPEN: "open", STATUS_CLOSED: "closed",
                STATUS_ERROR: "closed after an error", STATUS_WRITE_FAILED: "write failed"}

AUTORESET_MODES = ("same_step", "next_step")
VOLTAGE_MODES = ("last", "all")
# Columns of training/ by default: the metrics leaky's learners and loop report. A column never
# written is NaN and compresses to a few bytes, so a broad default costs nothing.
DEFAULT_TRAINING_FIELDS = ("env_steps", "episode_return", "eval_return", "critic_loss",
                           "actor_loss", "q", "target_q", "actor_q", "actor_grad_norm",
                           "td_error", "value", "updates", "samples_per_s")
DEFAULT_FLUSH_EVERY = 1000       # vector steps between flushes (measured: docs/trace-format.md)
DEFAULT_WEIGHT_EVERY = 10_000    # in the caller's step unit (env steps)
DEFAULT_COMPRESSION = "lzf"         # fastest codec every h5py reads (measured: docs/trace-format.md)
DEFAULT_NEURON_LIMIT = 64        # log every neuron up to this many, else a documented subset
DEFAULT_HIDDEN_LOGGED = 32

STEP_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations", "env_index")
NEURON_FIELDS = ("voltages", "q_local", "td_error", "noise")
EPISODE_FIELDS = ("start", "length", "return", "env_index", "terminated", "final_observation")
MINARI_FORMAT_VERSION = "0.5.4"   # the Minari dataset layout export_minari writes and is tested with

_CHUNK_BYTES = 64 * 1024          # target chunk size of the widest per-step dataset (measured)
_SPACE_MARGIN = 1 << 20           # bytes kept free beyond a write's worst case (metadata, close)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# compression

def compression_options(compression: Any) -> dict:
    """h5py ``create_dataset`` keyword arguments of a compression choice.

    ``"gzip"`` (deflate level 4, readable by every HDF5 tool), ``"gzip-N"`` (level N),
    ``"lzf"`` (fast, h5py only), ``"zstd"`` / ``"zstd-N"``, ``"blosc-zstd"``, ``"blosc-lz4"``
    (need ``hdf5plugin`` to write and to read), ``"none"``, or an ``hdf5plugin`` filter object.
    Byte shuffling is added where the codec does not shuffle itself: it groups the bytes of
    float32 values by significance, which is what makes voltages compress.
    """
    if isinstance(compression, Mapping):           # hdf5plugin filter objects are Mappings
        return dict(compression)
    if not isinstance(compression, str):
        raise ConfigError(f"compression: got {compression!r}, expected a codec name such as "
                          "'gzip', 'lzf', 'zstd', 'blosc-zstd', 'none' or an hdf5plugin filter")
    name, _, level = compression.lower().partition("-")
    if name == "none":
        return {}
    if name == "gzip":
        lvl = int(level) if level else 4
        if not 0 <= lvl <= 9:
            raise ConfigError(f"compression: gzip level {lvl} outside 0 … 9")
        return dict(compression="gzip", compression_opts=lvl, shuffle=True)
    if name == "lzf":
        return dict(compression="lzf", shuffle=True)
    if name in ("zstd", "blosc"):
        try:
            import hdf5plugin
        except ImportError:
            raise ConfigError(f"compression={compression!r} needs the hdf5plugin package "
                              "(pip install hdf5plugin); 'gzip' and 'lzf' need nothing") from None
        if name == "zstd":
            return dict(**hdf5plugin.Zstd(clevel=int(level) if level else 3), shuffle=True)
        cname = level or "zstd"
        if cname not in ("zstd", "lz4", "lz4hc", "zlib", "blosclz"):
            raise ConfigError(f"compression: unknown blosc codec {cname!r}")
        return dict(hdf5plugin.Blosc(cname=cname, clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    raise ConfigError(f"compression: got {compression!r}, expected 'gzip', 'gzip-N', 'lzf', "
                      "'zstd', 'zstd-N', 'blosc-zstd', 'blosc-lz4', 'none' or an hdf5plugin filter")


def _load_plugins() -> None:
    """Register hdf5plugin's filters if it is installed (reading zstd/blosc traces needs it)."""
    try:
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass


# --------------------------------------------------------------------------------------------
# small helpers

def default_neurons(n_neurons: int, n_inputs: int, n_outputs: int) -> np.ndarray:
    """The neurons a trace logs when ``log_neurons=None``.

    Every neuron when ``n_neurons <= 64``; otherwise the first 32 non-sensor neurons (the first
    hidden layer of a layered net) and the outputs, so a long run of a big network stays modest
    (34 columns for 1 output instead of thousands).
    """
    if n_neurons <= DEFAULT_NEURON_LIMIT:
        return np.arange(n_neurons)
    hidden = np.arange(n_inputs, min(n_inputs + DEFAULT_HIDDEN_LOGGED, n_neurons))
    outputs = np.arange(n_neurons - n_outputs, n_neurons)
    return np.union1d(hidden, outputs)


def dependency_versions() -> dict:
    """Versions of leaky, Python, HDF5 and the packages a run depends on (absent ones left out)."""
    out = {"python": platform.python_version(), "platform": platform.platform(),
           "numpy": np.__version__, "h5py": h5py.version.version,
           "hdf5": h5py.version.hdf5_version}
    try:
        import leaky
        out["leaky"] = leaky.__version__
    except (ImportError, AttributeError):
        pass
    for pkg in ("numba", "numba-cuda", "cupy-cuda13x", "cupy-cuda12x", "gymnasium", "hdf5plugin",
                "minari", "mujoco"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if is_dataclass(x) and not isinstance(x, type):
        return asdict(x)
    if isinstance(x, (set, frozenset, tuple)):
        return list(x)
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    return repr(x)


def _to_json(name: str, value) -> str:
    try:
        return json.dumps({} if value is None else value, default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Trace: {name} must be JSON-serialisable (a dict of plain values): {e}") from None


def serialize_box(space) -> str:
    """A ``gymnasium.spaces.Box`` as Minari's JSON (type, dtype, shape, low, high)."""
    if space is None:
        return ""
    if type(space).__name__ != "Box":
        raise ConfigError(f"Trace: only gymnasium Box spaces can be recorded, got {type(space).__name__}")
    return json.dumps({"type": "Box", "dtype": str(space.dtype), "shape": list(space.shape),
                       "low": np.asarray(space.low).tolist(), "high": np.asarray(space.high).tolist()})


def _unbounded_box(dim: int, dtype) -> str:
    return json.dumps({"type": "Box", "dtype": str(np.dtype(dtype)), "shape": [dim],
                       "low": [-math.inf] * dim, "high": [math.inf] * dim})


def _indices(name: str, value, n: int, default) -> np.ndarray:
    if value is None:
        return np.asarray(default, dtype=np.int64)
    if isinstance(value, str):
        if value == "all":
            return np.arange(n)
        raise ConfigError(f"Trace: {name}={value!r}, expected 'all', None or a sequence of indices")
    idx = np.asarray(value).reshape(-1)
    if idx.size and (idx.dtype.kind not in "iu"):
        raise ConfigError(f"Trace: {name} must be integer indices, got {describe(idx)}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ConfigError(f"Trace: {name} {idx.tolist()} out of range: expected indices in [0, {n})")
    if len(np.unique(idx)) != idx.size or np.any(np.diff(idx) < 0):
        raise ConfigError(f"Trace: {name} {idx.tolist()} must be sorted and without repeats")
    return idx


def _as_selection(idx: np.ndarray):
    """``slice(a, b)`` for contiguous indices (a view when used), else the index array."""
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return slice(int(idx[0]), int(idx[0]) + idx.size)
    return idx


def _chunk_rows(row_bytes: int) -> int:
    rows = max(1, _CHUNK_BYTES // max(1, row_bytes))
    return int(min(8192, max(64, 1 << (rows.bit_length() - 1))))


def _parse_training_fields(fields) -> dict:
    if isinstance(fields, Mapping):
        items = list(fields.items())
    else:
        items = [(f, ()) if isinstance(f, str) else tuple(f) for f in fields]
    out = {}
    for item in items:
        if len(item) != 2:
            raise ConfigError(f"Trace: training_fields entry {item!r}: expected a name or (name, shape)")
        name, shape = item
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(s) for s in shape)
        if not isinstance(name, str) or not name or "/" in name or name == "step" or name in out:
            raise ConfigError(f"Trace: training field name {name!r}: expected a unique non-empty "
                              "name without '/', other than 'step'")
        out[name] = shape
    return out


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


def _os_reason(e: BaseException) -> str:
    """The operating system's reason inside an h5py error (``Permission denied``), else its text."""
    msg = " ".join(str(e).split())
    key = "error message = '"
    if key in msg:
        return msg.split(key, 1)[1].split("'", 1)[0]
    errno = getattr(e, "errno", None)
    if errno:
        return os.strerror(errno)
    return msg[:300] or type(e).__name__


# --------------------------------------------------------------------------------------------
# the reader

@dataclass(frozen=True)
class EpisodeIndex:
    """The finished episodes of a trace, in the order they ended.

    ``start`` is the first row, the rows are ``start + E·k`` for ``k < length``
    (``E`` logged envs); ``env`` the env index; ``returns`` the undiscounted return.
    """

    env: np.ndarray
    start: np.ndarray
    length: np.ndarray
    returns: np.ndarray
    terminated: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


@dataclass(frozen=True)
class Episode:
    """One episode as NumPy arrays (T steps).

    ``observations`` has T+1 rows (Minari's convention: the last is the final observation, NaN
    if the writer never saw it). Per-neuron arrays are None when the trace logs no neurons;
    their last axis follows ``neurons``. ``voltages`` is (T, L, n): L = ℓ+1 or 1.
    """

    index: int
    env: int
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    voltages: np.ndarray | None
    q_local: np.ndarray | None
    td_error: np.ndarray | None
    noise: np.ndarray | None
    neurons: np.ndarray

    @property
    def length(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        return float(self.rewards.sum())


@dataclass(frozen=True)
class DatasetInfo:
    """Shape (committed part), dtype, bytes on disk and uncompressed, codec of one dataset."""

    name: str
    shape: tuple
    dtype: str
    stored_bytes: int
    raw_bytes: int
    compression: str

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else float("nan")


def _reading(fn):
    """Turn h5py's low-level errors into a TraceError naming the file and what was read."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except (TraceError, InputError, ConfigError):
            raise
        except (OSError, RuntimeError, KeyError, json.JSONDecodeError) as e:
            raise TraceError(f"trace {self.path} is corrupt or unreadable ({fn.__name__}): "
                             f"{_h5_reason(e)}") from None
    return wrapper


def _h5_reason(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg[:300] or type(e).__name__


class TraceReader:
    """Reads a trace, finished, crashed or still being written.

    >>> with open_trace("run.h5") as tr:                  # doctest: +SKIP
    ...     tr.n_episodes, tr.episodes().returns
    ...     ep = tr.episode(-1, neurons=[3, 4])          # the last finished episode
    ...     ep.voltages.shape                             # (T, L, 2)
    ...     tr.training()["critic_loss"]

    A live file: call :meth:`refresh` to see what the writer flushed since. Every error from a
    corrupt, truncated or foreign file is a :class:`leaky.TraceError` saying what is wrong.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._f = None
        self._check_file()
        _load_plugins()
        try:
            self._f, self.swmr = _open_for_reading(self.path)
        except (OSError, RuntimeError) as e:
            raise TraceError(self._open_error(e)) from None
        try:
            self._read_header()
            self.refresh()
        except BaseException:
            self.close()
            raise

    def _check_file(self) -> None:
        p = self.path
        if not p.exists():
            raise TraceError(f"{p}: no such file; expected a leaky trace (.h5) written by leaky.Trace")
        if p.is_dir():
            raise TraceError(f"{p} is a directory; expected a leaky trace file")
        size = p.stat().st_size
        if size == 0:
            raise TraceError(f"{p} is empty (0 bytes); expected a leaky trace")
        with open(p, "rb") as fh:
            head = fh.read(8)
            # HDF5 looks for its signature at 0, 512, 1024, … (a user block may precede it)
            offsets = [0] + [512 << k for k in range(12) if (512 << k) < size]
            for off in offsets:
                fh.seek(off)
                if fh.read(8) == _HDF5_SIGNATURE:
                    return
        raise TraceError(f"{p} is not an HDF5 file (no HDF5 signature; starts with {head!r}); "
                         "expected a leaky trace written by leaky.Trace")

    def _open_error(self, e: OSError) -> str:
        msg = _h5_reason(e)
        size = self.path.stat().st_size
        if "truncated file" in msg:
            return (f"{self.path} is truncated ({size} bytes on disk, HDF5 expected more: {msg}); "
                    "it cannot be read — was it copied while being written or cut short?")
        if "already open for write" in msg or "unable to lock file" in msg.lower():
            return (f"{self.path} is open for writing by a process not in SWMR mode ({msg}); "
                    "leaky.Trace files can be read while written, other HDF5 files cannot")
        return f"{self.path} is a corrupt or unreadable HDF5 file: {msg}"

    @_reading
    def _read_header(self) -> None:
        f = self._f
        a = f.attrs
        fmt = a.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT_NAME:
            found = sorted(f.keys())[:8]
            raise TraceError(f"{self.path} is an HDF5 file but not a leaky trace: root attribute "
                             f"format={fmt!r}, expected {FORMAT_NAME!r} (top-level objects: {found})")
        self.format_version = int(a.get("format_version", -1))
        if not 1 <= self.format_version <= FORMAT_VERSION:
            raise TraceError(f"{self.path} is a leaky trace of format version {self.format_version}; "
                             f"this leaky reads versions 1 … {FORMAT_VERSION} (upgrade leaky)")
        missing = [f"steps/{k}" for k in STEP_FIELDS] + [f"episodes/{k}" for k in EPISODE_FIELDS] + \
                  ["training/step", "weights/step", "weights/K", "weights/b", "meta/counts",
                   "meta/envs", "meta/neurons"]
        missing = [k for k in missing if k not in f]
        if missing:
            raise TraceError(f"{self.path} is a damaged leaky trace: missing {missing}")
        self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in a.items()}
        self.config = json.loads(self.attrs.get("config", "{}"))
        self.seeds = json.loads(self.attrs.get("seeds", "{}"))
        self.versions = json.loads(self.attrs.get("versions", "{}"))
        for k in ("n_envs", "obs_dim", "act_dim", "n_neurons", "delay", "voltage_steps"):
            setattr(self, k, int(self.attrs[k]))
        self.envs = f["meta/envs"][()]
        self.neurons = f["meta/neurons"][()]
        self.training_fields = list(f["training"].keys())
        self.training_fields.remove("step")
        self._counts_ds = f["meta/counts"]

    def refresh(self) -> "TraceReader":
        """Re-read what a live writer has committed (cheap; call it in a polling loop)."""
        for attempt in range(3):
            try:
                return self._refresh()
            except TraceError:
                # a live file's metadata can be caught mid-update: retry briefly before calling
                # it damaged (HDF5's own retries are capped, see _open_for_reading)
                if not self.swmr or attempt == 2:
                    raise
                time.sleep(0.05)
        return self

    @_reading
    def _refresh(self) -> "TraceReader":
        if self.swmr:
            self._counts_ds.refresh()
        self.counts = dict(zip(COUNT_FIELDS, (int(x) for x in self._counts_ds[()])))
        self._episode_cache = None
        return self

    def _ds(self, name: str):
        ds = self._f[name]
        if self.swmr:
            ds.refresh()
        return ds

    # -- sizes ------------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """``open`` (being written, or its writer died), ``closed``, ``closed after an error``
        or ``write failed``."""
        return STATUS_NAMES.get(self.counts["status"], f"unknown ({self.counts['status']})")

    @property
    def n_rows(self) -> int:
        return self.counts["rows"]

    @property
    def n_steps(self) -> int:
        """Vector steps recorded (each adds one row per logged env)."""
        return self.counts["vector_steps"]

    @property
    def n_episodes(self) -> int:
        return self.counts["episodes"]

    @property
    def n_updates(self) -> int:
        return self.counts["updates"]

    @property
    def n_weights(self) -> int:
        return self.counts["weights"]

    @property
    def has_neurons(self) -> bool:
        return len(self.neurons) > 0

    # -- episodes and steps -----------------------------------------------------------------

    @_reading
    def episodes(self) -> EpisodeIndex:
        """Every finished episode: env, first row, length, return, whether it terminated."""
        if self._episode_cache is None:
            n = self.n_episodes
            g = {k: self._ds(f"episodes/{k}")[:n] for k in ("env_index", "start", "length",
                                                            "return", "terminated")}
            self._episode_cache = EpisodeIndex(env=g["env_index"], start=g["start"],
                                               length=g["length"], returns=g["return"],
                                               terminated=g["terminated"])
        return self._episode_cache

    def _neuron_columns(self, neurons) -> np.ndarray:
        if neurons is None:
            return np.arange(len(self.neurons))
        want = np.atleast_1d(np.asarray(neurons, dtype=np.int64))
        cols = np.searchsorted(self.neurons, want)
        bad = [int(w) for w, c in zip(want, cols) if c >= len(self.neurons) or self.neurons[c] != w]
        if bad:
            raise InputError(f"neurons {bad} are not in trace {self.path}; it logs neurons "
                             f"{self.neurons.tolist()}")
        return cols

    @_reading
    def episode(self, i: int, *, neurons=None) -> Episode:
        """Finished episode ``i`` (negative counts from the last) as NumPy arrays.

        ``neurons``: neuron indices to keep in the per-neuron arrays (None: all logged ones;
        ``()``: read none, they are None).
        """
        idx = self.episodes()
        n = len(idx)
        if not -n <= i < n:
            raise InputError(f"episode {i} out of range: trace {self.path} has {n} finished episodes")
        i = int(i) % n
        E = len(self.envs)
        start, length = int(idx.start[i]), int(idx.length[i])
        rows = slice(start, start + E * (length - 1) + 1, E)
        get = lambda name: self._ds(f"steps/{name}")[rows]          # noqa: E731
        final = self._ds("episodes/final_observation")[i]
        cols = self._neuron_columns(neurons)
        read = self.has_neurons and len(cols) > 0
        per_neuron = {name: np.take(get(name), cols, axis=-1) if read else None
                      for name in NEURON_FIELDS}
        return Episode(index=i, env=int(idx.env[i]),
                       observations=np.concatenate([get("observations"), final[None]]),
                       actions=get("actions"), rewards=get("rewards"),
                       terminations=get("terminations"), truncations=get("truncations"),
                       neurons=self.neurons[cols], **per_neuron)

    @_reading
    def steps(self, name: str, *, env: int | None = None, neurons=None,
              steps: slice | None = None) -> np.ndarray:
        """One per-step column.

        ``env=None``: every committed row (all logged envs, step-major); ``env=k``: that env's
        rows only, one per vector step. ``steps`` slices vector steps; ``neurons`` picks
        per-neuron columns by neuron index.
        """
        fields = STEP_FIELDS + (NEURON_FIELDS if self.has_neurons else ())
        if name not in fields:
            raise InputError(f"steps: unknown field {name!r}; this trace has {list(fields)}")
        E = len(self.envs)
        lo, hi, st = (steps or slice(None)).indices(self.n_steps)
        ds = self._ds(f"steps/{name}")
        if hi <= lo:
            return ds[0:0]
        if env is None:
            data = ds[lo * E:hi * E]
            if st != 1:
                data = data.reshape((hi - lo, E) + data.shape[1:])[::st].reshape((-1,) + data.shape[1:])
        else:
            hit = np.flatnonzero(self.envs == env)
            if not hit.size:
                raise InputError(f"env {env} is not logged in trace {self.path}; logged envs: {self.envs.tolist()}")
            j = int(hit[0])
            data = ds[lo * E + j:(hi - 1) * E + j + 1:E * st]
        if neurons is not None and name in NEURON_FIELDS:
            data = np.take(data, self._neuron_columns(neurons), axis=-1)
        return data

    # -- training and weights ---------------------------------------------------------------

    @_reading
    def training(self) -> dict:
        """The ``training/`` table: ``{"step": (U,), field: (U, …)}`` for the committed updates."""
        n = self.n_updates
        return {k: self._ds(f"training/{k}")[:n] for k in ["step", *self.training_fields]}

    @property
    def weight_steps(self) -> np.ndarray:
        return self._weights_steps()

    @_reading
    def _weights_steps(self) -> np.ndarray:
        return self._ds("weights/step")[:self.n_weights]

    @_reading
    def weights(self, i: int = -1) -> tuple[int, np.ndarray, np.ndarray]:
        """Snapshot ``i`` (default the last): ``(step, K (N, N), b (N,))``."""
        n = self.n_weights
        if not -n <= i < n:
            raise InputError(f"weight snapshot {i} out of range: trace {self.path} has {n}")
        i = int(i) % n
        return int(self._ds("weights/step")[i]), self._ds("weights/K")[i], self._ds("weights/b")[i]

    # -- file-level ---------------------------------------------------------------------------

    def _committed_len(self, name: str) -> int | None:
        group = name.split("/", 1)[0]
        return {"steps": self.n_rows, "episodes": self.n_episodes, "training": self.n_updates,
                "weights": self.n_weights}.get(group)

    @_reading
    def datasets(self) -> list[DatasetInfo]:
        """Every dataset: committed shape, dtype, bytes on disk, uncompressed bytes, codec."""
        out = []

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            if self.swmr:
                obj.refresh()
            shape = obj.shape
            n = self._committed_len(name)
            if n is not None:
                shape = (min(n, shape[0]),) + shape[1:]
            raw = int(np.prod(shape, dtype=np.int64)) * obj.dtype.itemsize
            stored = _committed_storage(obj, shape) if self.swmr else obj.id.get_storage_size()
            codec = obj.compression
            if codec in (None, "unknown"):
                plugin = [k for k in obj._filters if k not in ("shuffle", "fletcher32")]
                codec = _PLUGIN_NAMES.get(plugin[0], f"filter {plugin[0]}") if plugin else "none"
            elif codec == "gzip":
                codec = f"gzip-{obj.compression_opts}"
            out.append(DatasetInfo(name=name, shape=tuple(shape), dtype=str(obj.dtype),
                                   stored_bytes=int(stored), raw_bytes=raw,
                                   compression=codec))
        self._f.visititems(visit)
        return out

    def verify(self, progress: bool = False) -> int:
        """Read every committed byte (checksums and decompression included); returns the number
        of uncompressed bytes read, or raises TraceError naming each damaged dataset."""
        infos = self.datasets()
        bad, total = [], 0
        it = infos
        if progress:
            from tqdm import tqdm
            it = tqdm(infos, desc="verify", unit="dataset", disable=None)
        for info in it:
            try:
                ds = self._f[info.name]
                if not info.shape:
                    total += np.asarray(ds[()]).nbytes
                    continue
                n = info.shape[0]
                row_bytes = max(1, info.raw_bytes // max(1, n))
                block = max(1, (16 << 20) // row_bytes)
                for lo in range(0, n, block):
                    total += ds[lo:min(n, lo + block)].nbytes
            except (OSError, RuntimeError, ValueError) as e:
                bad.append(f"{info.name}: {_h5_reason(e)}")
        if bad:
            raise TraceError(f"trace {self.path} has damaged data in {len(bad)} dataset(s): "
                             + "; ".join(bad))
        return total

    @_reading
    def summary(self) -> dict:
        """Everything ``leaky inspect`` prints, as plain JSON-able values."""
        idx = self.episodes()
        ret, length = idx.returns, idx.length

        def stats(x):
            if not len(x):
                return None
            return {"mean": float(np.mean(x)), "min": float(np.min(x)), "max": float(np.max(x)),
                    "last": float(x[-1])}

        tr = self.training()
        last_flush = float(self._ds("meta/flush_time")[1])
        infos = self.datasets()
        stored = sum(d.stored_bytes for d in infos)
        raw = sum(d.raw_bytes for d in infos)
        return {
            "path": str(self.path), "format": FORMAT_NAME, "format_version": self.format_version,
            "status": self.status, "file_bytes": self.path.stat().st_size,
            "created": self.attrs.get("created"), "last_flush_age_s": time.time() - last_flush,
            "n_envs": self.n_envs, "logged_envs": self.envs.tolist(),
            "n_neurons": self.n_neurons, "logged_neurons": self.neurons.tolist(),
            "delay": self.delay, "voltages": self.attrs.get("voltages"),
            "compression": self.attrs.get("compression"),
            "vector_steps": self.n_steps, "rows": self.n_rows,
            "episodes": {"count": len(idx), "return": stats(ret), "length": stats(length),
                         "terminated": int(np.sum(idx.terminated))},
            "training": {"updates": self.n_updates,
                         "last": {k: _last_finite(v) for k, v in tr.items()}},
            "weights": {"snapshots": self.n_weights, "steps": self.weight_steps.tolist()},
            "datasets": [dict(name=d.name, shape=list(d.shape), dtype=d.dtype,
                              stored_bytes=d.stored_bytes, raw_bytes=d.raw_bytes,
                              ratio=None if not d.stored_bytes else round(d.ratio, 3),
                              compression=d.compression) for d in infos],
            "stored_bytes": stored, "raw_bytes": raw,
            "compression_ratio": None if not stored else raw / stored,
            "config": self.config, "seeds": self.seeds, "versions": self.versions,
        }

    def close(self) -> None:
        if self._f is not None:
            try:
                self._f.close()
            except Exception:                       # noqa: BLE001 - a read-only handle
                pass
            self._f = None

    def __enter__(self) -> "TraceReader":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"TraceReader({str(self.path)!r}, {self.status}, {self.n_steps} vector steps, "
                f"{self.n_episodes} episodes, {self.n_updates} updates)")


_PLUGIN_NAMES = {"32001": "blosc", "32004": "lz4", "32015": "zstd", "307": "bzip2", "32026": "blosc2"}
_SWMR_READ_ATTEMPTS = 10     # HDF5's default, 100, retries a corrupt file's metadata for minutes


def _open_for_reading(path: Path):
    """Open read-only: plainly if the file was closed, in SWMR mode if a writer has it open
    (or died with it open: the superblock still says so). Returns ``(h5py.File, swmr)``.

    A closed file is opened without SWMR because an SWMR reader retries every metadata read
    whose checksum fails (the writer may be mid-update), which turns a corrupt file into a
    hang; for live files the number of attempts is capped where h5py's HDF5 can be reached.
    """
    try:
        return h5py.File(path, "r"), False
    except OSError as e:
        msg = str(e)
        if "already open for write" not in msg and "unable to lock file" not in msg.lower():
            raise
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    _limit_read_attempts(fapl, _SWMR_READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid), True


@functools.lru_cache(maxsize=1)
def _hdf5_set_read_attempts():
    """``H5Pset_metadata_read_attempts`` of the libhdf5 h5py loaded (h5py does not wrap it),
    or None where it cannot be found (then HDF5's default applies)."""
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            libs = sorted({line.split()[-1] for line in fh
                           if "/libhdf5" in line and ".so" in line and "libhdf5_hl" not in line})
        if len(libs) != 1:
            return None
        fn = ctypes.CDLL(libs[0]).H5Pset_metadata_read_attempts
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _limit_read_attempts(fapl, attempts: int) -> None:
    fn = _hdf5_set_read_attempts()
    if fn is not None:
        fn(fapl.id, attempts)


def _committed_storage(ds: h5py.Dataset, shape: tuple) -> int:
    """Bytes on disk of the chunks that hold the committed ``shape`` of a chunked dataset.

    A file still open for writing (or whose writer was killed) is read this way, chunk by chunk,
    rather than by ``get_storage_size``, which walks the whole chunk index: the index entries of
    chunks written after the last commit may be mid-update, and after a SIGKILL they can stay
    torn for good (a fatal signal may cut a write at a page boundary), while the committed
    chunks' entries are whole.
    """
    if ds.chunks is None:
        return ds.id.get_storage_size()
    if not shape or 0 in shape:
        return 0
    counts = [-(-n // c) for n, c in zip(shape, ds.chunks)]
    total = 0
    for index in np.ndindex(*counts):
        info = ds.id.get_chunk_info_by_coord(tuple(i * c for i, c in zip(index, ds.chunks)))
        if info.byte_offset is not None:
            total += info.size
    return total


def _last_finite(column: np.ndarray):
    """The last row of a training column with any finite value (rows often fill some fields)."""
    finite = np.isfinite(column.reshape(len(column), -1)).any(axis=1) if len(column) else column
    hit = np.flatnonzero(finite)
    return column[hit[-1]].tolist() if hit.size else None


def open_trace(path) -> TraceReader:
    """Open a trace for reading (finished, crashed or live); see :class:`TraceReader`."""
    return TraceReader(path)


# --------------------------------------------------------------------------------------------
# Minari export

def export_minari(trace, out_dir, *, dataset_id: str | None = None, overwrite: bool = False,
                  progress: bool = False) -> dict:
    """Write a trace's finished episodes in Farama Minari's dataset layout.

    ``out_dir/data/main_data.hdf5`` holds one group ``episode_<id>`` per episode with
    ``observations`` (T+1, obs_dim), ``actions`` (T, act_dim), ``rewards``, ``terminations``,
    ``truncations`` (T,) and attributes ``id``, ``total_steps``; ``out_dir/data/metadata.json``
    holds the dataset id, counts, serialised spaces and versions. Both files are written under
    temporary names and renamed, so an interrupted export leaves no half-written dataset.
    Load it with ``minari.MinariDataset(out_dir / "data")`` (or put ``out_dir`` at
    ``$MINARI_DATASETS_PATH/<dataset_id>`` and call ``minari.load_dataset``).

    Returns a dict: ``data_path``, ``dataset_id``, ``episodes``, ``steps``.
    """
    reader = trace if isinstance(trace, TraceReader) else open_trace(trace)
    own = reader is not trace
    try:
        return _export_minari(reader, Path(out_dir), dataset_id, overwrite, progress)
    finally:
        if own:
            reader.close()


def _export_minari(reader: TraceReader, out_dir: Path, dataset_id, overwrite, progress) -> dict:
    import re

    if dataset_id is None:
        stem = re.sub(r"[^-_\w]", "_", reader.path.stem) or "trace"
        dataset_id = f"leaky/{stem}-v0"
    if not re.fullmatch(r"(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+", dataset_id):
        raise InputError(f"dataset_id {dataset_id!r}: expected Minari's form "
                         "'(namespace/)name-v<version>', e.g. 'leaky/pendulum-v0'")
    data = out_dir / "data"
    main, meta = data / "main_data.hdf5", data / "metadata.json"
    if (main.exists() or meta.exists()) and not overwrite:
        raise TraceError(f"{data} already holds a Minari dataset; pass overwrite=True (--force) "
                         "or choose another OUT_DIR")
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TraceError(f"cannot create {data}: {_os_reason(e)}") from None
    idx = reader.episodes()
    tmp_main = data / f".main_data.hdf5.{os.getpid()}.tmp"
    tmp_meta = data / f".metadata.json.{os.getpid()}.tmp"
    total_steps = 0
    it = range(len(idx))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="export", unit="episode", disable=None)
    try:
        with h5py.File(tmp_main, "w", track_order=True) as f:
            for i in it:
                ep = reader.episode(i, neurons=[] if reader.has_neurons else None)
                g = f.create_group(f"episode_{i}")
                g.attrs["id"] = i
                g.attrs["total_steps"] = ep.length
                g.create_dataset("observations", data=ep.observations)
                g.create_dataset("actions", data=ep.actions)
                g.create_dataset("rewards", data=ep.rewards)
                g.create_dataset("terminations", data=ep.terminations)
                g.create_dataset("truncations", data=ep.truncations)
                total_steps += ep.length
        metadata = {
            "dataset_id": dataset_id, "total_episodes": len(idx), "total_steps": int(total_steps),
            "data_format": "hdf5", "jpeg_encoding": False,
            "observation_space": reader.attrs["observation_space"],
            "action_space": reader.attrs["action_space"],
            "minari_version": MINARI_FORMAT_VERSION, "algorithm_name": "leaky",
            "description": f"Episodes of leaky trace {reader.path.name} "
                           f"(envs {reader.envs.tolist()}, status {reader.status})",
            "dataset_size": round(tmp_main.stat().st_size / 1e6, 1),
        }
        env_spec = _env_spec_json(reader.attrs.get("env_id", ""))
        if env_spec:
            metadata["env_spec"] = env_spec
        with open(tmp_meta, "w") as fh:
            json.dump(metadata, fh)
        os.replace(tmp_main, main)
        os.replace(tmp_meta, meta)
    except OSError as e:
        raise TraceError(f"writing the Minari dataset to {data} failed: {_os_reason(e)}") from None
    finally:
        tmp_main.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return {"data_path": str(data), "dataset_id": dataset_id, "episodes": len(idx),
            "steps": int(total_steps)}


def _env_spec_json(env_id: str) -> str | None:
    if not env_id:
        return None
    try:
        import gymnasium as gym
        return gym.spec(env_id).to_json()
    except Exception:                               # noqa: BLE001 - optional field
        return None


__all__ = [
    "COUNT_FIELDS", "DEFAULT_TRAINING_FIELDS", "DatasetInfo", "Episode", "EpisodeIndex",
    "FORMAT_NAME", "FORMAT_VERSION", "Trace", "TraceReader", "compression_options",
    "default_neurons", "dependency_versions", "export_minari", "open_trace",
]
