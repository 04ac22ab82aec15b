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
