"""No silent non-learning: a warm-up longer than the budget is said, the summary counts the
updates, and the progress bar says it compiles instead of showing an absurd ETA."""

import io
import time
import warnings

import pytest
from tqdm import tqdm

from leaky.cli import main
from leaky.training.loop import NoLearningWarning, Progress, TrainConfig, train

DDPG = ["train", "--learner", "ddpg", "--envs", "4", "--hidden", "4", "--eval-episodes", "1",
        "--no-progress", "--set", "hidden=[8]"]


def test_a_warm_up_longer_than_the_budget_is_said_and_the_summary_counts_0_updates(capsys):
    assert main(DDPG + ["--steps", "200", "--eval-every", "200"]) == 0
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warned) == 1 and warned[0].startswith("leaky train: warning: ddpg learns from its 10000th")
    assert "--steps 200" in warned[0] and "no update" in warned[0] and "--set learning_starts=N" in warned[0]
    assert "0 updates: the learner never learned" in captured.out


def test_a_budget_past_the_warm_up_warns_nothing_and_counts_its_updates(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoLearningWarning)
        result = train(TrainConfig(learner="ddpg", steps=200, n_envs=4, hidden=(4,), eval_every=200,
                                   eval_episodes=1, progress=False,
                                   learner_options={"learning_starts": 40, "batch_size": 16, "hidden": [8]}))
    assert result.updates == (200 - 40) // 4 + 1
    assert f"{result.updates} updates" in result.summary()


def test_the_bar_says_compiling_until_compiled_code_runs_then_times_only_that():
    out = io.StringIO()
    bar = Progress(tqdm, total=1000, initial=0, disable=False, desc="local Pendulum-v1", file=out,
                   mininterval=0)
    bar.bar.refresh()
    assert "compiling kernels" in out.getvalue() and "step/s" not in out.getvalue()
    time.sleep(0.4)                        # the first step: compiling the step kernel
    bar.update(10)
    assert "compiling kernels" in bar.bar.desc          # the first update is still to come
    time.sleep(0.4)                        # the second step: compiling the update kernel
    bar.update(10, first_update=True)
    assert "compiling" not in bar.bar.desc
    for _ in range(20):
        bar.update(10)
    fmt = bar.bar.format_dict
    assert fmt["n"] == 220 and fmt["elapsed"] < 0.3     # the clock restarted after compiling
    bar.bar.refresh()
    assert "step/s" in out.getvalue().split("\r")[-1]
    bar.close()


def test_a_learner_with_a_warm_up_stops_saying_compiling_after_its_first_step():
    bar = Progress(tqdm, total=100, initial=0, disable=True, desc="ddpg", updates_at_once=False)
    bar.update(10)
    assert "compiling" not in bar.bar.desc


def test_train_shows_the_compiling_bar(capsys):
    train(TrainConfig(learner="perturbation", steps=40, n_envs=2, hidden=(4,), eval_every=40,
                      eval_episodes=1, progress=True))
    err = capsys.readouterr().err
    assert "compiling kernels (once; cached afterwards)" in err
    assert "step/s" in err.split("\r")[-1] or "step/s" in err.splitlines()[-1]
