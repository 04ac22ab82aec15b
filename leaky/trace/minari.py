"""``export_minari``: a trace as a Minari dataset (docs/trace-format.md, "Minari")."""

import json
import os
from pathlib import Path

import h5py

from leaky.core.errors import InputError, TraceError
from leaky.trace.format import MINARI_FORMAT_VERSION, _os_reason
from leaky.trace.reader import TraceReader, open_trace


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
