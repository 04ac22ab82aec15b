"""Reading a trace: :class:`TraceReader` and :func:`open_trace`, while it is written or after a
crash (only the rows ``meta/counts`` has committed)."""

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from leaky.core.errors import ConfigError, InputError, TraceError
from leaky.trace.format import (
    COUNT_FIELDS, EPISODE_FIELDS, FORMAT_NAME, FORMAT_VERSION, NEURON_FIELDS, STATUS_NAMES,
    STEP_FIELDS, _HDF5_SIGNATURE, _load_plugins)


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
