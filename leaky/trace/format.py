"""The trace format: its names, versions, field lists, defaults and the helpers that lay it out
(compression options, chunking, JSON attributes, neuron selections). Docs: docs/trace-format.md."""

import importlib.metadata
import json
import math
import os
import platform
from dataclasses import asdict, is_dataclass
from typing import Any, Mapping

import h5py
import numpy as np

from leaky.core.errors import ConfigError, describe


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
