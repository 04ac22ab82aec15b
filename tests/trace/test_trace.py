"""Traces (docs/design.md#7-traces): every dataset round-trips, nothing flushed is ever lost, bad
files get
clear errors, and the Minari export loads in Minari.

Writers in other processes (live reading, SIGKILL, full disk, read-only location) run as
``sys.executable -c SCRIPT``: SCRIPT carries ``STEP_CODE``, the deterministic step generator
the test process checks the file against.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leaky
from leaky.core.errors import ConfigError, InputError, TraceError
from leaky.trace import (COUNT_FIELDS, FORMAT_NAME, FORMAT_VERSION, Trace, default_neurons,
                         export_minari, open_trace)
from tests.trace.trace_cases import (ACT, B, L, N, OBS, PERIOD, REPO, _check_minari_layout, _damage, reference_episodes, run_python, run_then_kill, step_arrays, write_run, writer_script)

# ---------------------------------------------------------------------------------------------
# round trip

def test_every_dataset_round_trips(tmp_path):
    T, envs = 60, (0, 2)
    write_run(tmp_path / "run.h5", T)
    E = len(envs)
    with h5py.File(tmp_path / "run.h5", "r") as f:
        # steps: row r is env envs[r % E] at vector step r // E
        steps = [step_arrays(t) for t in range(T)]
        rows = lambda key: np.concatenate([s[key][list(envs)] for s in steps])  # noqa: E731
        np.testing.assert_array_equal(f["steps/observations"][()], rows("obs").astype(np.float32))
        np.testing.assert_array_equal(f["steps/actions"][()], rows("actions").astype(np.float32))
        np.testing.assert_array_equal(f["steps/rewards"][()], rows("rewards"))
        np.testing.assert_array_equal(f["steps/terminations"][()], rows("terminations"))
        np.testing.assert_array_equal(f["steps/truncations"][()], rows("truncations"))
        np.testing.assert_array_equal(f["steps/env_index"][()], np.tile(envs, T))
        V = np.concatenate([s["voltages"][:, list(envs)].transpose(1, 0, 2) for s in steps])
        np.testing.assert_array_equal(f["steps/voltages"][()], V.astype(np.float32))
        for key in ("q_local", "td_error", "noise"):
            np.testing.assert_array_equal(f[f"steps/{key}"][()], rows(key).astype(np.float32))
        # episodes, in the order they ended
        ref = reference_episodes(T, envs)
        assert f["episodes/start"].shape == (len(ref),)
        np.testing.assert_array_equal(f["episodes/env_index"][()], [r[0] for r in ref])
        np.testing.assert_array_equal(f["episodes/start"][()], [r[1] * E + envs.index(r[0]) for r in ref])
        np.testing.assert_array_equal(f["episodes/length"][()], [r[2] for r in ref])
        np.testing.assert_allclose(f["episodes/return"][()], [r[3] for r in ref], rtol=1e-12)
        np.testing.assert_array_equal(f["episodes/terminated"][()], [r[4] for r in ref])
        np.testing.assert_array_equal(f["episodes/final_observation"][()],
                                      np.array([r[5] for r in ref], dtype=np.float32))
        # training table and weight snapshots (at step // 20 changes: 0, 20, 40)
        tsteps = np.arange(0, T, 5)
        np.testing.assert_array_equal(f["training/step"][()], tsteps)
        np.testing.assert_array_equal(f["training/critic_loss"][()], 1.0 / (tsteps + 1))
        np.testing.assert_array_equal(f["training/align"][()], np.arange(N)[None] * tsteps[:, None])
        np.testing.assert_array_equal(f["weights/step"][()], [0, 20, 40])
        np.testing.assert_array_equal(f["weights/K"][()], np.full((3, N, N), [[[0.0]], [[20.0]], [[40.0]]]))
        np.testing.assert_array_equal(f["weights/b"][()], np.arange(N)[None] + np.array([[0], [20], [40]]))
        # root attributes and meta
        a = f.attrs
        assert a["format"] == FORMAT_NAME and a["format_version"] == FORMAT_VERSION
        assert json.loads(a["config"]) == {"env": "Pendulum-v1", "lr": 1e-3, "sizes": [2, 3, 1]}
        assert json.loads(a["seeds"]) == {"network": 0, "env": 1}
        versions = json.loads(a["versions"])
        assert versions["leaky"] == leaky.__version__ and versions["h5py"] == h5py.__version__
        assert {"numpy", "hdf5", "python"} <= set(versions)
        counts = dict(zip(COUNT_FIELDS, f["meta/counts"][()]))
        assert counts["rows"] == T * E and counts["vector_steps"] == T
        assert counts["episodes"] == len(ref) and counts["updates"] == len(tsteps)
        assert counts["weights"] == 3 and counts["status"] == 1
        np.testing.assert_array_equal(f["meta/envs"][()], envs)
        np.testing.assert_array_equal(f["meta/neurons"][()], np.arange(N))
        # every dataset is chunked, compressed, checksummed and resizable along time
        for name in ("steps/observations", "steps/voltages", "episodes/start", "training/align", "weights/K"):
            ds = f[name]
            assert ds.chunks and ds.maxshape[0] is None and ds.fletcher32
            assert ds.compression == "lzf"


def test_reader_api_slices_episodes_envs_and_neurons(tmp_path):
    T, envs = 60, (0, 2)
    write_run(tmp_path / "run.h5", T)
    ref = reference_episodes(T, envs)
    with open_trace(tmp_path / "run.h5") as tr:
        assert (tr.status, tr.n_steps, tr.n_rows, tr.n_episodes) == ("closed", T, 2 * T, len(ref))
        assert tr.config["env"] == "Pendulum-v1" and tr.seeds == {"network": 0, "env": 1}
        idx = tr.episodes()
        np.testing.assert_array_equal(idx.length, [r[2] for r in ref])
        for i in (0, 3, -1):
            env, t0, length, ret, terminated, final = ref[i]
            ep = tr.episode(i, neurons=[1, 4])
            assert (ep.env, ep.length) == (env, length) and ep.total_return == pytest.approx(ret)
            ts = np.arange(t0, t0 + length)
            np.testing.assert_array_equal(ep.observations[:-1, 0], ts)       # T+1 observations
            np.testing.assert_array_equal(ep.observations[-1], final.astype(np.float32))
            assert ep.terminations[-1] == terminated and ep.truncations[-1] != terminated
            assert not (ep.terminations[:-1] | ep.truncations[:-1]).any()
            np.testing.assert_array_equal(ep.neurons, [1, 4])
            want = ts[:, None, None] + 0.1 * env + 0.01 * np.array([1, 4]) + 100.0 * np.arange(L + 1)[:, None]
            np.testing.assert_allclose(ep.voltages, want, rtol=1e-6)
            np.testing.assert_allclose(ep.td_error, 2 * want[:, -1], rtol=1e-6)
        bare = tr.episode(0, neurons=())
        assert bare.voltages is None and bare.q_local is None
        # one env's column, a vector-step range, chosen neurons
        np.testing.assert_array_equal(tr.steps("observations", env=2)[:, 0], np.arange(T))
        np.testing.assert_array_equal(tr.steps("rewards", env=2, steps=slice(10, 20)),
                                      1.0 + 0.001 * np.arange(10, 20) + 2)
        assert tr.steps("q_local", neurons=[5]).shape == (2 * T, 1)
        assert tr.steps("env_index", steps=slice(0, 10, 3)).tolist() == [0, 2] * 4
        assert tr.training()["critic_loss"][0] == 1.0 and tr.training()["align"].shape == (12, N)
        step, K, b = tr.weights(-1)
        assert step == 40 and K.shape == (N, N) and K[0, 0] == 40.0
        np.testing.assert_array_equal(tr.weight_steps, [0, 20, 40])
        with pytest.raises(InputError, match="not in trace"):
            tr.episode(0, neurons=[99])
        with pytest.raises(InputError, match="not logged"):
            tr.steps("rewards", env=1)
        with pytest.raises(InputError, match="out of range"):
            tr.episode(len(ref))
        assert tr.verify() > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ends=st.lists(st.lists(st.booleans(), min_size=3, max_size=3), min_size=1, max_size=40),
       autoreset=st.sampled_from(["same_step", "next_step"]), give_next=st.booleans(),
       envs=st.sampled_from([(0,), (1, 2), (0, 1, 2)]))
def test_episode_bookkeeping_matches_a_plain_loop(tmp_path_factory, ends, autoreset, give_next, envs):
    """Any pattern of episode ends, either autoreset mode: episodes (rows, returns, final obs)
    equal those of a plain per-env loop."""
    path = tmp_path_factory.mktemp("bk") / "run.h5"
    B = 3
    rng = np.random.default_rng(len(ends))
    obs = rng.standard_normal((len(ends) + 1, B, 2))
    rew = rng.standard_normal((len(ends), B))
    with Trace(path, n_envs=B, obs_dim=2, act_dim=1, n_neurons=3, log_envs=envs, log_neurons=(),
               autoreset=autoreset, flush_every=7) as tr:
        for t, e in enumerate(ends):
            e = np.array(e)
            tr.log_step(obs[t], np.zeros((B, 1)), rew[t], e & (rew[t] > 0), e & (rew[t] <= 0),
                        next_obs=obs[t + 1] + 10 if give_next else None)
    expected = []
    state = {j: None for j in envs}
    skip = {j: False for j in envs}
    for t, e in enumerate(ends):
        for j in envs:
            if skip[j]:
                skip[j] = False
                if expected and give_next is False:
                    # next_step without next_obs: the final obs is the reset step's obs
                    for k in range(len(expected) - 1, -1, -1):
                        if expected[k][0] == j and expected[k][4] is None:
                            expected[k] = expected[k][:4] + (obs[t, j],)
                            break
                continue
            state[j] = state[j] or [t, 0, 0.0]
            state[j][1] += 1
            state[j][2] += rew[t, j]
            if e[j]:
                final = obs[t + 1, j] + 10 if give_next else None
                expected.append((j, state[j][0], state[j][1], state[j][2], final))
                state[j] = None
                skip[j] = autoreset == "next_step"
    with open_trace(path) as tr:
        idx = tr.episodes()
        # an episode waiting for its final obs when the run closed is recorded last, NaN-final
        got = sorted(zip(idx.env.tolist(), idx.start.tolist()))
        want = sorted((j, t0 * len(envs) + envs.index(j)) for j, t0, *_ in expected)
        assert got == want
        for i in range(len(idx)):
            ep = tr.episode(i)
            match = [x for x in expected if (x[0], x[1] * len(envs) + envs.index(x[0])) == (ep.env, int(idx.start[i]))][0]
            assert ep.length == match[2]
            assert ep.total_return == pytest.approx(match[3])
            assert (ep.env == tr.steps("env_index")[idx.start[i]])
            if match[4] is None:
                assert np.isnan(ep.observations[-1]).all()
            else:
                np.testing.assert_allclose(ep.observations[-1], match[4], rtol=1e-6)


def test_default_neurons_keep_big_networks_modest():
    np.testing.assert_array_equal(default_neurons(64, 3, 1), np.arange(64))
    np.testing.assert_array_equal(default_neurons(1000, 3, 2), np.r_[3:35, 998, 999])


def test_codecs_round_trip(tmp_path):
    codecs = ["gzip", "gzip-1", "lzf", "none"]
    try:
        import hdf5plugin  # noqa: F401
        codecs += ["zstd", "blosc-zstd"]
    except ImportError:
        pass
    for codec in codecs:
        write_run(tmp_path / f"{codec}.h5", 20, compression=codec)
        with open_trace(tmp_path / f"{codec}.h5") as tr:
            np.testing.assert_array_equal(tr.steps("observations", env=0)[:, 0], np.arange(20))
            info = {d.name: d for d in tr.datasets()}
            assert info["steps/voltages"].compression.split("-")[0] == codec.split("-")[0]
    with pytest.raises(ConfigError, match="compression"):
        Trace(tmp_path / "x.h5", n_envs=1, obs_dim=1, act_dim=1, n_neurons=2, compression="brotli")


def test_bad_arguments_say_what_was_expected(tmp_path):
    with Trace(tmp_path / "a.h5", n_envs=2, obs_dim=3, act_dim=1, n_neurons=4) as tr:
        ok = dict(obs=np.zeros((2, 3)), actions=np.zeros((2, 1)), rewards=np.zeros(2),
                  terminations=np.zeros(2, bool), truncations=np.zeros(2, bool))
        with pytest.raises(InputError, match=r"obs got .*\(2, 2\).*expected shape \(2, 3\)"):
            tr.log_step(**dict(ok, obs=np.zeros((2, 2))))
        with pytest.raises(InputError, match="voltages"):
            tr.log_step(**ok, voltages=np.zeros((2, 5)))
        with pytest.raises(InputError, match="q_local"):
            tr.log_step(**ok, q_local=np.zeros((4, 2)))
        with pytest.raises(InputError, match=r"K \(4, 4\)"):
            tr.log_weights(0, np.zeros((3, 3)), np.zeros(4))
        tr.log_step(**ok)                                     # the failed calls left no row
        with pytest.warns(RuntimeWarning, match="not declared"):
            tr.log_training(0, made_up=1.0)
        tr.log_training(1, made_up=2.0)                      # warned once per name
    with open_trace(tmp_path / "a.h5") as r:
        assert r.n_steps == 1 and r.n_updates == 2
    with pytest.raises(ConfigError, match="log_envs"):
        Trace(tmp_path / "b.h5", n_envs=2, obs_dim=1, act_dim=1, n_neurons=2, log_envs=(2,))
    with pytest.raises(ConfigError, match="voltages"):
        Trace(tmp_path / "b.h5", n_envs=2, obs_dim=1, act_dim=1, n_neurons=2, voltages="some")
    with pytest.raises(ConfigError, match="JSON"):
        Trace(tmp_path / "b.h5", n_envs=2, obs_dim=1, act_dim=1, n_neurons=2, config={1j: 2})
    assert not (tmp_path / "b.h5").exists()
    with pytest.raises(TraceError, match="is closed"):
        tr.log_step(**ok)


def test_an_exception_inside_with_is_recorded(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with Trace(tmp_path / "e.h5", n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L) as tr:
            for t in range(5):
                tr.log_step(**step_arrays(t))
            1 / 0
    with open_trace(tmp_path / "e.h5") as r:
        assert r.status == "closed after an error" and r.n_steps == 5


# ---------------------------------------------------------------------------------------------
# nothing lost: live readers, SIGKILL, exit without close

def test_a_reader_process_follows_a_live_writer(tmp_path):
    path = tmp_path / "live.h5"
    code = writer_script("""
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                   log_envs=(0, 3), flush_every=10)
        print("ready", flush=True)
        for t in range(400):
            tr.log_step(**step_arrays(t))
            time.sleep(0.001)
        tr.close()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        tr = open_trace(path)
        seen, last = [], -1
        while True:
            tr.refresh()
            n = tr.n_steps
            assert n >= last and n % 10 == 0                  # only whole flushes are visible
            if n > last:
                seen.append(n)
                last = n
                obs = tr.steps("observations", env=3)
                assert obs.shape == (n, OBS)
                np.testing.assert_array_equal(obs[:, 0], np.arange(n))
                idx = tr.episodes()
                assert ((idx.start + 2 * (idx.length - 1)) // 2 < n).all()   # finished = flushed
            if tr.status == "closed":
                break
            assert proc.poll() is None or tr.refresh().status == "closed", proc.stderr.read()
            time.sleep(0.01)
        assert proc.wait(30) == 0
        assert tr.n_steps == 400 and len(seen) >= 3          # watched it grow, then close
        tr.close()
    finally:
        proc.kill()
        proc.wait()


def test_sigkill_leaves_every_flushed_step(tmp_path):
    path = tmp_path / "killed.h5"
    code = writer_script("""
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                   log_envs=(1, 2), flush_every=50, weight_every=30,
                   training_fields=("critic_loss",))
        for t in range(237):
            tr.log_step(**step_arrays(t))
            tr.log_training(t, critic_loss=float(t))
            tr.log_weights(t, np.full((N, N), float(t)), np.zeros(N))
        tr.flush()                                   # 237 steps committed
        for t in range(237, 900):                    # 663 more: flushes every 50 after the last, at 887
            tr.log_step(**step_arrays(t))
        print("written", tr.committed["vector_steps"], flush=True)
        time.sleep(60)
    """)
    committed = int(run_then_kill(code, path)[0])
    assert committed == 887
    with open_trace(path) as tr:
        assert tr.status == "open" and tr.n_steps == committed and tr.n_rows == 2 * committed
        np.testing.assert_array_equal(tr.steps("observations", env=2)[:, 0], np.arange(committed))
        np.testing.assert_array_equal(tr.steps("rewards", env=1), 1.0 + 0.001 * np.arange(committed) + 1)
        assert tr.training()["critic_loss"].tolist() == list(range(237))
        assert tr.weight_steps.tolist() == [0, 30, 60, 90, 120, 150, 180, 210]
        ref = [r for r in reference_episodes(committed, (1, 2)) if r[1] + r[2] <= committed]
        assert tr.n_episodes == len(ref)
        np.testing.assert_array_equal(tr.episodes().length, [r[2] for r in ref])
        tr.verify()


def test_killed_writer_with_a_damaged_uncommitted_index_keeps_its_committed_rows(tmp_path):
    """The torn state a SIGKILL during a flush can leave for good: a chunk-index block that holds
    only chunks written after the last commit fails its checksum. Reading, listing and verifying
    the committed rows must not touch it (``get_storage_size`` walks the whole index and fails)."""
    path = tmp_path / "torn.h5"
    code = writer_script("""
        import leaky.trace.format
        leaky.trace.format._CHUNK_BYTES = 64
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                   log_envs="all", voltages="last", flush_every=10**6)
        for t in range(32):                  # 128 rows: the first two chunks of 64, committed
            tr.log_step(**step_arrays(t))
        tr.flush()
        for t in range(32, 32 + 16 * 40):    # 40 more chunks written, index on disk, not committed
            tr.log_step(**step_arrays(t))
        tr._write_steps()
        tr._f.flush()
        print("written", tr.committed["vector_steps"], tr.rows, flush=True)
        time.sleep(60)
    """)
    assert run_then_kill(code, path) == ["32", str(4 * 672)]
    with h5py.File(path, "r", locking=False, swmr=True) as f:
        ds = f["steps/observations"]
        assert ds.chunks[0] == 64 and ds.shape[0] == 4 * 672
        last = ds.id.get_chunk_info_by_coord((4 * 672 - 64, 0)).byte_offset
    raw = bytearray(path.read_bytes())
    at = raw.find(last.to_bytes(8, "little"))
    block = raw.rfind(b"EADB", 0, at)
    assert at > 0 and block > raw.rfind(b"EAIB", 0, at), "the last chunk's entry is not in a data block"
    raw[at + 7] ^= 0x40                      # its address now fails the block's checksum
    path.write_bytes(bytes(raw))

    with open_trace(path) as tr:
        assert tr.status == "open" and tr.n_steps == 32
        obs = {d.name: d for d in tr.datasets()}["steps/observations"]
        assert obs.shape == (128, OBS) and 0 < obs.stored_bytes
        np.testing.assert_array_equal(tr.steps("observations")[:, 0], np.repeat(np.arange(32), 4))
        tr.verify()
        with pytest.raises(RuntimeError, match="checksum"):   # the damage is real: walking the whole index fails
            tr._f["steps/observations"].id.get_storage_size()


@pytest.mark.parametrize("delay_s", [0.15, 0.4, 0.65])
def test_sigkill_at_any_moment_leaves_a_consistent_file(tmp_path, delay_s):
    """Killed while writing flat out (small chunks, so blocks are written between flushes and
    a flush may be cut in half): the file opens and every committed row is right."""
    path = tmp_path / "k.h5"
    code = writer_script("""
        import leaky.trace.format
        leaky.trace.format._CHUNK_BYTES = 2048
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                   log_envs="all", voltages="all", flush_every=7)
        print("ready", flush=True)
        t = 0
        while True:
            tr.log_step(**step_arrays(t % 5005))
            t += 1
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(delay_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with open_trace(path) as tr:
        n = tr.n_steps
        assert n > 0 and n % 7 == 0 and tr.n_rows == B * n
        obs = tr.steps("observations")
        np.testing.assert_array_equal(obs[:, 0], np.repeat(np.arange(n) % 5005, B))
        np.testing.assert_array_equal(tr.steps("env_index"), np.tile(np.arange(B), n))
        V = tr.steps("voltages", env=1)
        np.testing.assert_allclose(V[:, -1, 0], np.arange(n) % 5005 + 200.1, rtol=1e-6)
        idx = tr.episodes()
        assert (idx.length == np.array(PERIOD)[idx.env]).all()
        tr.verify()


def test_exit_without_close_flushes(tmp_path):
    code = writer_script("""
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L, flush_every=10**6)
        for t in range(33):
            tr.log_step(**step_arrays(t))
    """)
    out = run_python(code, tmp_path / "exit.h5")
    assert out.returncode == 0, out.stderr
    with open_trace(tmp_path / "exit.h5") as tr:
        assert tr.status == "closed" and tr.n_steps == 33


# ---------------------------------------------------------------------------------------------
# bad files: a clear TraceError, never a traceback from inside h5py

def _closed_trace(tmp_path) -> Path:
    path = tmp_path / "good.h5"
    write_run(path, 80)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("directory", "is a directory"),
    ("empty", "is empty"),
    ("text", "not an HDF5 file"),
    ("truncated", "truncated"),
    ("superblock", "corrupt"),
    ("foreign", "not a leaky trace"),
    ("minari", "not a leaky trace"),
    ("future", "format version 99"),
    ("missing dataset", "missing .*steps/rewards"),
])
def test_bad_files_get_a_clear_error(tmp_path, case, message):
    path = tmp_path / "bad.h5"
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.touch()
    elif case == "text":
        path.write_text("step,reward\n0,1.0\n")
    elif case in ("truncated", "superblock", "future", "missing dataset"):
        shutil.copy(_closed_trace(tmp_path), path)
        if case == "truncated":
            os.truncate(path, path.stat().st_size // 2)
        elif case == "superblock":
            _damage(path, 8, b"\xff" * 40)
        elif case == "future":
            with h5py.File(path, "r+") as f:
                f.attrs["format_version"] = 99
        else:
            with h5py.File(path, "r+") as f:
                del f["steps/rewards"]
    elif case == "foreign":
        with h5py.File(path, "w") as f:
            f["observations"] = np.zeros((3, 2))
    elif case == "minari":
        export_minari(_closed_trace(tmp_path), tmp_path / "m")
        path = tmp_path / "m" / "data" / "main_data.hdf5"
    with pytest.raises(TraceError, match=message):
        open_trace(path)


def test_a_corrupt_chunk_is_reported_not_read(tmp_path):
    path = _closed_trace(tmp_path)
    with h5py.File(path, "r") as f:
        chunk = f["steps/voltages"].id.get_chunk_info(0)
    _damage(path, chunk.byte_offset + chunk.size // 2, b"\x00\xff" * 8)
    with open_trace(path) as tr:                        # metadata intact: opens
        with pytest.raises(TraceError, match="steps/voltages"):
            tr.verify()
        with pytest.raises(TraceError, match="corrupt or unreadable"):
            tr.episode(0)


@pytest.mark.parametrize("crashed", [False, True], ids=["closed", "crashed"])
def test_corruption_anywhere_gives_trace_error_or_correct_data(tmp_path, crashed):
    """Overwrite 16 bytes at 60 places in turn: every read ends in correct data or TraceError,
    quickly (a SWMR reader of a crashed file must not retry a bad checksum for minutes)."""
    path = tmp_path / "base.h5"
    if crashed:
        code = writer_script("""
            tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                       log_envs=(0, 2), flush_every=25)
            for t in range(150):
                tr.log_step(**step_arrays(t))
            tr.flush()
            os.kill(os.getpid(), 9)
        """)
        run_python(code, path)
    else:
        write_run(path, 150)
    size = path.stat().st_size
    outcomes = {"ok": 0, "TraceError": 0}
    t0 = time.perf_counter()
    for k, offset in enumerate(np.linspace(0, size - 16, 60).astype(int)):
        bad = tmp_path / "bad.h5"
        shutil.copy(path, bad)
        _damage(bad, int(offset), bytes((np.arange(16) * 37 + k) % 256))
        try:
            with open_trace(bad) as tr:
                tr.summary()
                tr.verify()
                obs = tr.steps("observations", env=2)
                np.testing.assert_array_equal(obs[:, 0], np.arange(tr.n_steps))   # never wrong data
            outcomes["ok"] += 1
        except TraceError:
            outcomes["TraceError"] += 1
    assert outcomes["TraceError"] > 0 and outcomes["ok"] > 0
    assert time.perf_counter() - t0 < 30


# ---------------------------------------------------------------------------------------------
# full or read-only locations: fail loudly, keep what was written

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE stands in for a full disk")
def test_a_full_disk_fails_loudly_and_keeps_what_was_flushed(tmp_path):
    code = writer_script("""
        import resource, signal
        from leaky.core.errors import TraceError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # writes past the limit fail with EFBIG
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L,
                   log_envs="all", voltages="all", flush_every=40, compression="none")
        t = 0
        for t in range(200):
            tr.log_step(**step_arrays(t))
        tr.flush()
        size = os.path.getsize(sys.argv[1])
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200_000, resource.RLIM_INFINITY))
        try:
            for t in range(200, 10_000):
                tr.log_step(**step_arrays(t))
            print("no error")
        except TraceError as e:
            print("TraceError:", e)
        try:
            tr.log_step(**step_arrays(t))
        except TraceError as e:
            print("again:", e)
        tr.close()
        print("closed")
    """)
    path = tmp_path / "full.h5"
    out = run_python(code, path)
    assert out.returncode == 0, out.stdout + out.stderr        # no crash, no hang
    lines = out.stdout.splitlines()
    assert lines[0].startswith("TraceError: not enough space") and "200 vector steps" in lines[0], out.stdout
    assert lines[1].startswith("again: trace") and "stopped after a failed write" in lines[1]
    assert lines[2] == "closed"
    with open_trace(path) as tr:
        assert tr.n_steps == 200 and tr.status == "write failed"
        np.testing.assert_array_equal(tr.steps("observations", env=3)[:, 0], np.arange(200))
        tr.verify()


def _drop_dac_override() -> str:
    """Code that makes a root subprocess obey file permissions (drops CAP_DAC_OVERRIDE)."""
    return textwrap.dedent("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        class Hdr(ctypes.Structure): _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
        class Data(ctypes.Structure): _fields_ = [("e", ctypes.c_uint32), ("p", ctypes.c_uint32), ("i", ctypes.c_uint32)]
        hdr, data = Hdr(0x20080522, 0), (Data * 2)()
        if os.geteuid() == 0 and libc.capget(ctypes.byref(hdr), data) == 0:
            data[0].e &= ~0b110
            data[0].p &= ~0b110
            assert libc.capset(ctypes.byref(hdr), data) == 0
    """)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses Linux capabilities when root")
def test_a_read_only_location_fails_loudly_and_touches_nothing(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    existing = ro / "old.h5"
    write_run(existing, 10)
    before = existing.read_bytes()
    ro.chmod(0o555)
    existing.chmod(0o444)
    try:
        code = writer_script(prelude=_drop_dac_override(), body="""
            from leaky.core.errors import TraceError
            for name, overwrite in (("new.h5", False), ("old.h5", True)):
                try:
                    Trace(os.path.join(sys.argv[1], name), n_envs=B, obs_dim=OBS, act_dim=ACT,
                          n_neurons=N, overwrite=overwrite)
                    print("created", name)
                except TraceError as e:
                    print("TraceError:", e)
        """)
        out = run_python(code, ro)
    finally:
        ro.chmod(0o755)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and all(l.startswith("TraceError: cannot create trace") for l in lines), out.stdout
    assert all("Permission denied" in l for l in lines)
    assert not (ro / "new.h5").exists() and existing.read_bytes() == before
    with pytest.raises(TraceError, match="the file exists"):        # never replaced by accident
        Trace(existing, n_envs=1, obs_dim=1, act_dim=1, n_neurons=2)
    assert existing.read_bytes() == before
    with pytest.raises(TraceError, match="does not exist"):
        Trace(tmp_path / "nowhere" / "t.h5", n_envs=1, obs_dim=1, act_dim=1, n_neurons=2)


# ---------------------------------------------------------------------------------------------
# Minari export

def test_minari_export_layout_and_load(tmp_path):
    path = tmp_path / "run.h5"
    write_run(path, 60, env_id="Pendulum-v1")
    result = export_minari(path, tmp_path / "out")
    assert result["episodes"] > 0 and result["dataset_id"] == "leaky/run-v0"
    with open_trace(path) as reader:
        _check_minari_layout(tmp_path / "out", reader)
        minari = pytest.importorskip("minari")
        ds = minari.MinariDataset(tmp_path / "out" / "data")
        assert ds.total_episodes == reader.n_episodes and ds.total_steps == int(reader.episodes().length.sum())
        for ep_m, i in zip(ds.iterate_episodes(), range(reader.n_episodes)):
            ep = reader.episode(i)
            np.testing.assert_array_equal(ep_m.observations, ep.observations)
            np.testing.assert_array_equal(ep_m.actions, ep.actions)
            np.testing.assert_array_equal(ep_m.rewards, ep.rewards)
            np.testing.assert_array_equal(ep_m.terminations, ep.terminations)
            np.testing.assert_array_equal(ep_m.truncations, ep.truncations)
        assert ds.spec.env_spec is not None and ds.spec.env_spec.id == "Pendulum-v1"
    with pytest.raises(TraceError, match="already holds"):
        export_minari(path, tmp_path / "out")
    export_minari(path, tmp_path / "out", overwrite=True, dataset_id="me/pendulum-v3")
    assert json.loads((tmp_path / "out" / "data" / "metadata.json").read_text())["dataset_id"] == "me/pendulum-v3"
    with pytest.raises(InputError, match="dataset_id"):
        export_minari(path, tmp_path / "o2", dataset_id="no version")
    assert not list((tmp_path / "out" / "data").glob(".*tmp"))        # no temporaries left


def test_spaces_set_dtypes_and_travel_to_minari(tmp_path):
    gym = pytest.importorskip("gymnasium")
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float64)
    act_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    with Trace(tmp_path / "s.h5", n_envs=1, obs_dim=3, act_dim=1, n_neurons=4,
               observation_space=obs_space, action_space=act_space) as tr:
        for t in range(4):
            tr.log_step(np.full((1, 3), 1 / 3), np.ones((1, 1)), np.ones(1), np.array([t == 3]),
                        np.zeros(1, bool), next_obs=np.full((1, 3), 0.1))
    with open_trace(tmp_path / "s.h5") as r:
        ep = r.episode(0)
        assert ep.observations.dtype == np.float64 and ep.observations[0, 0] == 1 / 3   # no float32 rounding
        export_minari(r, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "data" / "metadata.json").read_text())
    assert json.loads(meta["observation_space"]) == {"type": "Box", "dtype": "float64", "shape": [3],
                                                     "low": [-1.0] * 3, "high": [1.0] * 3}
    assert json.loads(meta["action_space"])["high"] == [2.0]
    with pytest.raises(ConfigError, match="observation_space shape"):
        Trace(tmp_path / "x.h5", n_envs=1, obs_dim=2, act_dim=1, n_neurons=4, observation_space=obs_space)
