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
