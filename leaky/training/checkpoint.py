"""The checkpoint file of a training run: nested dicts of arrays and JSON values, written
atomically (a temporary file, fsync, rename: a crash leaves the old checkpoint or the new one,
never half of one), read back, and put into a network and its learner.

``leaky.training.loop`` writes one every ``checkpoint_every`` steps and on Ctrl-C, and checks on
``--resume`` that it belongs to the run that continues it (``check_resume``);
docs/learners.md ("Checkpoints and resume") says what a resume repeats.
"""

from __future__ import annotations

import json
import os

import numpy as np

from leaky.core.backend import to_numpy
from leaky.core.errors import ConfigError
from leaky.model.network import Network

__all__ = ["env_seed", "load_checkpoint", "restore", "save_checkpoint"]


def _check_writable(path: str, what: str) -> None:
    """Raise ConfigError unless a file can be created next to ``path`` (as the atomic write
    does) and ``path`` is not a directory."""
    import tempfile

    if os.path.isdir(path):
        raise ConfigError(f"{what}: got {path!r}, a directory; expected a file path")
    try:
        fd, probe = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".leaky-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{what}: cannot write {path!r} ({e.strerror or e}); expected a file in an "
                          "existing, writable directory") from None


def save_checkpoint(path: str, state: dict) -> None:
    """Write ``state`` (nested dicts of arrays and JSON-able values) atomically to ``path``."""
    flat = {}
    meta = {}

    def walk(prefix, obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        elif hasattr(obj, "shape") and not np.isscalar(obj):
            flat[prefix] = to_numpy(obj)
        else:
            meta[prefix] = obj

    walk("", state)
    flat["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **flat)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str) -> dict:
    try:
        data = np.load(path, allow_pickle=False)
        meta = json.loads(bytes(data["__meta__"]).decode())
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"checkpoint {path!r}: cannot be read ({e}); expected a file written by leaky train") from e
    state: dict = {}

    def put(key, value):
        parts = key.split("/")
        d = state
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = value

    for k in data.files:
        if k != "__meta__":
            put(k, data[k])
    for k, v in meta.items():
        put(k, v)
    return state


def restore(state: dict, net: Network, learner) -> tuple[int, list, list]:
    """Put a checkpoint's weights and learner state into ``net`` and ``learner``; returns the
    loop's ``(iteration, evaluations, train_returns)``."""
    net.set_parameters(K=state["network"]["K"], b=state["network"]["b"])
    learner.load_state_dict(state["learner"])
    loop = state["loop"]
    return int(loop["iteration"]), list(loop["evaluations"]), list(loop["train_returns"])


def env_seed(seed: int, iteration: int) -> int:
    """The seed the environments are reset with when the loop starts at ``iteration``: ``seed``
    for a fresh run; on a resume, a seed drawn from ``SeedSequence([seed, iteration])``, so the
    new episodes are unlike any fresh run's (whose environments take seeds ``seed + i``)."""
    if iteration == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(iteration)]).generate_state(1)[0])
