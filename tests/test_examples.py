"""The examples run as a user would run them."""

import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_rollout_prints_a_pendulum_return(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["rollout.py", "--backend", "cpu", "--neurons", "16", "--seed", "1"])
    runpy.run_path(str(EXAMPLES / "rollout.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "Pendulum-v1: return" in out and "over 200 steps" in out


def test_main_job_runs_and_reports(capsys, monkeypatch):
    """The README's main job, on a tiny budget (the real one is 20k steps per learner)."""
    monkeypatch.setattr(sys, "argv", ["train_pendulum.py", "--steps", "400", "--learners", "ddpg", "local"])
    runpy.run_path(str(EXAMPLES / "train_pendulum.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "what was learned" in out and "ddpg" in out and "local" in out
    assert "the backprop-free learner's final return is" in out


def test_align_gradients_prints_per_layer_figures(capsys, monkeypatch, tmp_path):
    """Experiment 1's example on a tiny budget (docs/align.md has the 20k-step figures)."""
    png = tmp_path / "align.png"
    monkeypatch.setattr(sys, "argv", ["align_gradients.py", "--steps", "160", "--hidden", "4", "3",
                                      "--every", "40", "--learning-starts", "64", "--batch-size", "32",
                                      "--estimators", "advantage,perturb8,feedback", "--png", str(png)])
    runpy.run_path(str(EXAMPLES / "align_gradients.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "perturb8   tau0" in out and "best-aligned estimator:" in out
    assert png.exists()


def test_sweep_example_runs_its_tasks_and_reports(capsys, monkeypatch, tmp_path):
    """Two learners × one seed on a tiny budget, in this process (--workers 1)."""
    out, png = tmp_path / "s.jsonl", tmp_path / "s.png"
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--steps", "200", "--seeds", "0", "--workers", "1",
                                      "--out", str(out), "--png", str(png)])
    runpy.run_path(str(EXAMPLES / "sweep.py"), run_name="__main__")
    text = capsys.readouterr().out
    assert "2 tasks ran" in text and "| ddpg | 1 |" in text and "| local | 1 |" in text
    assert len(out.read_text().splitlines()) == 2 and png.stat().st_size > 1000


def test_memory_example_trains_dense_leaky_and_feed_forward(capsys, monkeypatch):
    """The four runs on a tiny budget (docs/results.md, "Memory", has the real ones)."""
    monkeypatch.setattr(sys, "argv", ["memory.py", "--steps", "1200", "--neurons", "8"])
    runpy.run_path(str(EXAMPLES / "memory.py"), run_name="__main__")
    out = capsys.readouterr().out
    for name in ("ddpg, dense leaky", "local, dense leaky", "ddpg, feed-forward", "local, feed-forward"):
        assert name in out
    assert "ddpg: the dense leaky network ends at" in out and "local: the dense leaky network ends at" in out
