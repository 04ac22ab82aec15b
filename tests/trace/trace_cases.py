"""Shared builders of the trace tests: a deterministic B-env run (every value a function of the
step, env, neuron and internal step), writer scripts for child processes, a closed trace of it,
its episodes by a plain loop, and the checks of damaged files and Minari exports
(tests/trace/test_trace.py, tests/trace/test_trace_cli.py, tests/cli, tests/training).
"""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np

from leaky.trace import Trace

REPO = Path(__file__).resolve().parents[2]

# Step t of a B-env run, every value a function of (t, env, neuron, internal step) so any row
# read back can be checked. Env b's episodes end every PERIOD[b] steps (terminated on even
# episodes, truncated on odd ones).
STEP_CODE = '''
import numpy as np

PERIOD = (7, 11, 5, 13)
B, OBS, ACT, N, L = 4, 2, 1, 6, 2


def step_arrays(t, B=B, N=N, L=L):
    b = np.arange(B)
    period = np.array(PERIOD[:B])
    ends = t % period == period - 1
    odd = (t // period) % 2 == 1
    obs = np.stack([np.full(B, float(t)), b + 0.25], axis=1)
    V = t + 0.1 * b[None, :, None] + 0.01 * np.arange(N)[None, None, :] + 100.0 * np.arange(L + 1)[:, None, None]
    return dict(obs=obs, actions=(0.5 * t + b)[:, None], rewards=1.0 + 0.001 * t + b,
                terminations=ends & ~odd, truncations=ends & odd, next_obs=obs + 0.5,
                voltages=V, q_local=-V[-1], td_error=2.0 * V[-1], noise=3.0 * V[-1])
'''
_step_ns: dict = {}
exec(STEP_CODE, _step_ns)   # the same code the writer scripts run
PERIOD, B, OBS, ACT, N, L, step_arrays = (_step_ns[k] for k in ("PERIOD", "B", "OBS", "ACT", "N", "L", "step_arrays"))


def writer_script(body: str, prelude: str = "") -> str:
    return (STEP_CODE + "\nimport os, sys, time\nfrom leaky.trace import Trace\n" + prelude
            + textwrap.dedent(body))


def run_python(code: str, *args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, **kw)


def run_then_kill(code: str, path) -> list[str]:
    """Run a writer script until it prints ``written …``, SIGKILL it, return the words after."""
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        assert line and line[0] == "written", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return line[1:]


def write_run(path, T=60, *, log_envs=(0, 2), voltages="all", **kw) -> Trace:
    """A closed trace of ``T`` deterministic steps, training rows and weight snapshots."""
    opts = dict(n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                config={"env": "Pendulum-v1", "lr": 1e-3, "sizes": (2, 3, 1)},
                seeds={"network": 0, "env": 1}, log_envs=log_envs, log_neurons="all",
                voltages=voltages, flush_every=16, weight_every=20,
                training_fields=("critic_loss", ("align", (N,))))
    opts.update(kw)
    with Trace(path, **opts) as tr:
        for t in range(T):
            tr.log_step(**step_arrays(t))
            if t % 5 == 0:
                tr.log_training(t, critic_loss=1.0 / (t + 1), align=np.arange(N) * t)
            tr.log_weights(t, np.full((N, N), float(t)), np.arange(N) + t)
    return tr


def reference_episodes(T, envs, autoreset="same_step"):
    """Episodes of the deterministic run by a plain per-env loop: (env, first step, length, return,
    terminated, final obs), in the order they end."""
    out, open_ = [], {e: None for e in envs}
    skip = {e: False for e in envs}
    for t in range(T):
        a = step_arrays(t)
        for e in envs:
            if skip[e]:
                skip[e] = False
                continue
            if open_[e] is None:
                open_[e] = [t, 0, 0.0]
            open_[e][1] += 1
            open_[e][2] += a["rewards"][e]
            if a["terminations"][e] or a["truncations"][e]:
                out.append((e, open_[e][0], open_[e][1], open_[e][2], bool(a["terminations"][e]),
                            a["next_obs"][e]))
                open_[e] = None
                skip[e] = autoreset == "next_step"
    return out


def _damage(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _check_minari_layout(out: Path, reader) -> None:
    """Minari's documented layout, field by field (what minari's HDF5Storage reads)."""
    meta = json.loads((out / "data" / "metadata.json").read_text())
    idx = reader.episodes()
    assert meta["total_episodes"] == len(idx) and meta["total_steps"] == int(idx.length.sum())
    assert meta["data_format"] == "hdf5" and meta["dataset_id"].endswith("-v0")
    assert isinstance(meta["minari_version"], str)
    space = json.loads(meta["observation_space"])
    assert space["type"] == "Box" and space["shape"] == [OBS] and space["dtype"] == "float32"
    assert json.loads(meta["action_space"])["shape"] == [ACT]
    with h5py.File(out / "data" / "main_data.hdf5", "r") as f:
        assert sorted(f.keys(), key=lambda k: int(k.split("_")[1])) == [f"episode_{i}" for i in range(len(idx))]
        for i in range(len(idx)):
            g, ep, T = f[f"episode_{i}"], reader.episode(i), int(idx.length[i])
            assert g.attrs["id"] == i and g.attrs["total_steps"] == T
            assert g["observations"].shape == (T + 1, OBS) and g["actions"].shape == (T, ACT)
            for key in ("rewards", "terminations", "truncations"):
                assert g[key].shape == (T,)
            assert g["terminations"].dtype == bool and g["truncations"].dtype == bool
            np.testing.assert_array_equal(g["observations"][()], ep.observations)
            np.testing.assert_array_equal(g["rewards"][()], ep.rewards)
