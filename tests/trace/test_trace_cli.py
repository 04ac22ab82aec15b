"""``leaky inspect``, ``leaky plot``, ``leaky export --minari`` and examples/inspect_trace.py, run
as a user runs them: through ``leaky.cli.main`` (or a fresh ``python -m leaky`` where a traceback
could slip out), on finished, live and damaged traces."""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from leaky.cli import main as leaky_main
from leaky.trace import open_trace
from tests.trace.trace_cases import ACT, OBS, REPO, _check_minari_layout, _damage, write_run, writer_script

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "run.h5"
    write_run(path, 120, env_id="Pendulum-v1")
    return path


def leaky(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "leaky", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_inspect_prints_episodes_datasets_and_config(run_h5, capsys):
    assert leaky_main(["inspect", str(run_h5)]) == 0
    out = capsys.readouterr().out
    with open_trace(run_h5) as tr:
        n = tr.n_episodes
    assert f"episodes: {n} finished" in out and "closed" in out
    assert "steps/voltages" in out and "(240, 3, 6)" in out and "lzf" in out and "ratio" in out
    assert '"env": "Pendulum-v1"' in out and "seeds:" in out and "h5py" in out


def test_inspect_json_matches_the_reader(run_h5, capsys):
    assert leaky_main(["inspect", str(run_h5), "--json", "--verify"]) == 0
    s = json.loads(capsys.readouterr().out)
    with open_trace(run_h5) as tr:
        idx = tr.episodes()
        assert s["episodes"]["count"] == len(idx)
        assert s["episodes"]["return"]["mean"] == pytest.approx(float(idx.returns.mean()))
        assert s["episodes"]["length"]["max"] == idx.length.max()
        assert s["vector_steps"] == tr.n_steps and s["status"] == "closed"
    by_name = {d["name"]: d for d in s["datasets"]}
    assert by_name["steps/observations"]["shape"] == [240, OBS]
    assert by_name["steps/voltages"]["stored_bytes"] < by_name["steps/voltages"]["raw_bytes"]
    assert s["config"]["env"] == "Pendulum-v1" and s["verified_bytes"] > 0


def test_inspect_a_file_while_it_is_written(tmp_path):
    path = tmp_path / "live.h5"
    code = writer_script("""
        tr = Trace(sys.argv[1], n_envs=B, obs_dim=OBS, act_dim=ACT, n_neurons=N, delay=L, flush_every=20)
        for t in range(100):
            tr.log_step(**step_arrays(t))
        tr.flush()
        print("ready", flush=True)
        for t in range(100, 100_000):
            tr.log_step(**step_arrays(t))
            time.sleep(0.001)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        first = leaky("inspect", path, "--json")
        time.sleep(0.3)
        second = leaky("inspect", path, "--json")
        assert proc.poll() is None                             # still writing
    finally:
        proc.kill()
        proc.wait()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["status"] == "open" and a["vector_steps"] >= 100
    assert b["vector_steps"] > a["vector_steps"]
    text = leaky("inspect", path)
    assert text.returncode == 0 and "being written, or its writer stopped" in text.stdout


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "foreign", "corrupt chunk"])
def test_inspect_reports_bad_files_without_a_traceback(tmp_path, run_h5, case):
    path = tmp_path / "bad.h5"
    argv = ["inspect", path]
    if case == "text":
        path.write_text("not a trace\n")
    elif case == "truncated":
        shutil.copy(run_h5, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "foreign":
        with h5py.File(path, "w") as f:
            f["x"] = 1
    elif case == "corrupt chunk":
        shutil.copy(run_h5, path)
        with h5py.File(path, "r") as f:
            info = f["steps/q_local"].id.get_chunk_info(0)
        _damage(path, info.byte_offset + 4, b"\xaa" * 12)
        argv.append("--verify")
    out = leaky(*argv)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("leaky inspect: error: ") and "Traceback" not in out.stderr
    expected = {"missing": "no such file", "text": "not an HDF5 file", "truncated": "truncated",
                "foreign": "not a leaky trace", "corrupt chunk": "damaged data in 1 dataset"}[case]
    assert expected in out.stderr


def test_plot_writes_the_pngs(run_h5, tmp_path, capsys):
    out_dir = tmp_path / "plots"
    assert leaky_main(["plot", str(run_h5), "--out", str(out_dir), "--neurons", "0,3,5", "--json"]) == 0
    files = [Path(f) for f in json.loads(capsys.readouterr().out)["files"]]
    assert [f.name for f in files] == ["learning_curve.png", "per_neuron.png", "voltages.png", "critic.png"]
    for f in files:
        assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000


def test_plot_a_trace_without_episodes_draws_what_it_can(tmp_path, capsys):
    write_run(tmp_path / "short.h5", 3, log_neurons=())
    assert leaky_main(["plot", str(tmp_path / "short.h5"), "--out", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "p" / "learning_curve.png"),
                                               str(tmp_path / "p" / "per_neuron.png")]


def test_export_minari_writes_a_loadable_dataset(run_h5, tmp_path, capsys):
    out = tmp_path / "minari"
    assert leaky_main(["export", "--minari", str(run_h5), str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data_path"] == str(out / "data") and result["dataset_id"] == "leaky/run-v0"
    with open_trace(run_h5) as reader:
        _check_minari_layout(out, reader)
        assert result["episodes"] == reader.n_episodes
    again = leaky("export", "--minari", run_h5, out)
    assert again.returncode == 2 and "already holds a Minari dataset" in again.stderr
    assert leaky_main(["export", "--minari", str(run_h5), str(out), "--force",
                       "--dataset-id", "lab/pendulum-v2"]) == 0
    assert "as Minari dataset 'lab/pendulum-v2'" in capsys.readouterr().out
    minari = pytest.importorskip("minari")
    ds = minari.MinariDataset(out / "data")
    assert ds.spec.dataset_id == "lab/pendulum-v2" and ds.total_episodes == result["episodes"]
    ep = next(iter(ds.iterate_episodes()))
    assert ep.observations.shape[0] == ep.rewards.shape[0] + 1 and ep.actions.shape[1] == ACT


def test_the_example_records_and_reads_a_trace(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["inspect_trace.py"])
    ns = runpy.run_path(str(REPO / "examples" / "inspect_trace.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "finished episodes of envs [0, 2]" in out and "observations (201, 3) (T+1)" in out
    assert out.count("critic value") == 3 and "nan" not in out.split("training table")[0]
    path = Path(out.strip().splitlines()[-1].split(": ", 1)[1])
    ns["main"]([str(path), "--neurons", "0,5"])                     # reading an existing file
    assert "neuron   5" in capsys.readouterr().out
    shutil.rmtree(path.parent)
    assert np.isfinite(ns["_mean"](np.array([np.nan, 1.0])))
