"""Checkpoints and resume: every random stream continues, the settings must match, Ctrl-C keeps
the work (docs/learners.md, "Checkpoints, resume and Ctrl-C")."""

import copy
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest

from leaky.cli import main
from leaky.core.errors import ConfigError
from leaky.training.checkpoint import load_checkpoint, restore, save_checkpoint
from leaky.training.loop import TrainConfig, build_network, make_learner, train
from tests.trace.trace_cases import REPO

SMALL = dict(env="Pendulum-v1", steps=800, n_envs=4, eval_every=400, eval_episodes=2, progress=False,
             hidden=(8,))
LEARNERS = {
    "local": ("local", {"rule": "critic"}),
    "local-replay": ("local", {"rule": "critic", "data": "replay", "batch_size": 8, "learning_starts": 8}),
    "local-mlp": ("local", {"rule": "critic", "family": "mlp", "mlp_hidden": 4}),
    "local-dopamine": ("local", {"rule": "critic", "baseline": "dopamine", "value_features": "random",
                                 "n_features": 16, "value_optimizer": "adam"}),
    "local-feedback": ("local", {"rule": "feedback", "learning_starts": 8, "batch_size": 8, "critic_hidden": [8]}),
    "local-perturb": ("local", {"rule": "perturb", "tangents": 2, "learning_starts": 8, "batch_size": 8,
                                "critic_hidden": [8]}),
    "ddpg": ("ddpg", {"hidden": [8], "learning_starts": 8, "batch_size": 8, "noise": "ou"}),
    "perturbation": ("perturbation", {}),
}
OBS = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
ACT = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


def _learner(name):
    learner, options = LEARNERS[name]
    cfg = TrainConfig(learner=learner, learner_options=options, **{**SMALL, "n_envs": 3})
    net = build_network(cfg, OBS, ACT)
    return net, make_learner(cfg, net)


def _drive(net, learner, rng, steps):
    """``steps`` env steps of synthetic observations and rewards from ``rng`` (the same for
    every learner given the same generator): the actions taken and the weights after."""
    B = 3
    V = net.reset(B)
    obs = rng.uniform(-1, 1, (B, 3))
    actions = []
    for t in range(steps):
        V_end, action = learner.act(V, obs, explore=True)
        nxt = rng.uniform(-1, 1, (B, 3))
        trunc = np.array([t % 7 == 6, False, False])
        learner.observe(obs, action, rng.standard_normal(B), nxt, np.zeros(B, bool), trunc, V, V_end)
        learner.update()
        actions.append(np.asarray(action, dtype=np.float64).copy())
        V = np.where(trunc[:, None], 0.0, V_end)
        obs = nxt
    return np.stack(actions), np.asarray(net.K, dtype=np.float64).copy()


def _clone(learner):
    """A deep copy of a learner and its network (the array module shared, not copied)."""
    return copy.deepcopy(learner, {id(np): np})


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


@pytest.mark.parametrize("name", list(LEARNERS))
def test_a_restored_learner_draws_and_learns_what_the_original_would(name, tmp_path):
    """Weights, critics, optimiser moments, replay contents and every generator (exploration
    noise, replay minibatches, DDPG's noise and sampling, OU state) survive a checkpoint file:
    a learner restored from it continues exactly as the original does after the same restore
    (which drops the transition in flight). A learner that loads nothing draws other noise."""
    net1, first = _learner(name)
    _drive(net1, first, np.random.default_rng(1), 12)
    path = str(tmp_path / "ck.npz")
    save_checkpoint(path, {"network": {"K": net1.K, "b": net1.b}, "learner": first.state_dict(),
                           "loop": {"iteration": 12, "evaluations": [], "train_returns": []}})
    original = _clone(first)                    # the run as it would have gone on
    state = load_checkpoint(path)
    restore(state, net1, first)
    net2, second = _learner(name)
    restore(state, net2, second)
    after = _flat(second.state_dict())
    for key, value in _flat(state["learner"]).items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)
    # the streams continue: the next exploration noise, and the next minibatch, are the ones
    # the original run would have drawn (not those of a freshly seeded generator)
    probe, ahead = _clone(second), _clone(original)
    V, obs = net2.reset(3), np.full((3, 3), 0.25)
    np.testing.assert_array_equal(probe.act(V, obs, explore=True)[1], ahead.act(V, obs, explore=True)[1])
    if name in ("ddpg", "local-replay", "local-feedback", "local-perturb"):
        probe, ahead = _clone(second), _clone(original)
        (probe.learn_again if name == "local-replay" else probe.update)()
        (ahead.learn_again if name == "local-replay" else ahead.update)()
        np.testing.assert_array_equal(np.asarray(probe.net.K), np.asarray(ahead.net.K))
    a1, K1 = _drive(net1, first, np.random.default_rng(2), 10)
    a2, K2 = _drive(net2, second, np.random.default_rng(2), 10)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(K1, K2)
    net3, fresh = _learner(name)                       # loads the weights, not the learner
    net3.set_parameters(K=state["network"]["K"], b=state["network"]["b"])
    a3, _ = _drive(net3, fresh, np.random.default_rng(2), 10)
    assert not np.array_equal(a1, a3)


def test_checkpoint_is_atomic_and_resume_continues(tmp_path, monkeypatch):
    """The loop restores the learner's whole state on --resume (the state it runs with equals
    the checkpoint's, array by array) and continues the counters, evaluations and returns."""
    import leaky.training.loop as lt

    ck = str(tmp_path / "run.npz")
    opts = {"learning_starts": 200, "batch_size": 32, "critic_hidden": [8]}   # updates before the checkpoint
    first = train(TrainConfig(learner="local", learner_options=opts, checkpoint=ck, checkpoint_every=400, **SMALL))
    assert os.path.exists(ck) and not [p for p in os.listdir(tmp_path) if ".tmp" in p or ".leaky" in p]
    state = load_checkpoint(ck)
    assert state["loop"]["iteration"] == 200
    seen = []

    def checked_restore(state, net, learner):
        out = original(state, net, learner)
        now = _flat(learner.state_dict())
        seen.append(all(np.array_equal(now[k], v) for k, v in _flat(state["learner"]).items()))
        np.testing.assert_array_equal(np.asarray(net.K), state["network"]["K"])
        return out

    original = lt.restore
    monkeypatch.setattr(lt, "restore", checked_restore)
    resumed = train(TrainConfig(learner="local", learner_options=opts, checkpoint=ck, resume=True,
                                **{**SMALL, "steps": 1600}))
    assert seen == [True]
    assert resumed.evaluations[:len(first.evaluations)] == first.evaluations
    assert resumed.evaluations[-1]["step"] == 1600
    assert resumed.train_returns[:len(first.train_returns)] == first.train_returns
    assert load_checkpoint(ck)["loop"]["iteration"] == 400


@pytest.mark.parametrize("argv, said", [
    (["--env", "leaky/ContextualBandit-v0"], "env 'Pendulum-v1' there, 'leaky/ContextualBandit-v0' here"),
    (["--learner", "perturbation"], "learner 'local' there, 'perturbation' here"),
    (["--seed", "3"], "seed 0 there, 3 here"),
    (["--hidden", "8", "8"], "hidden [8] there, [8, 8] here"),
    (["--set", "lr_actor=0.01"], "learner option lr_actor 0.001 there, 0.01 here"),
    (["--envs", "2"], "n_envs 4 there, 2 here"),
])
def test_resume_names_the_setting_that_differs(tmp_path, capsys, argv, said):
    ck = str(tmp_path / "run.npz")
    base = ["train", "--steps", "400", "--envs", "4", "--hidden", "8", "--eval-every", "400",
            "--eval-episodes", "1", "--no-progress", "--checkpoint", ck]
    assert main(base) == 0
    capsys.readouterr()
    assert main(base + ["--resume", "--steps", "800"] + argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume: checkpoint" in err[0] and said in err[0], err
    assert "expected the same settings" in err[0]


def test_resume_with_fewer_steps_than_done_says_so(tmp_path):
    ck = str(tmp_path / "run.npz")
    train(TrainConfig(learner="perturbation", checkpoint=ck, **SMALL))
    with pytest.raises(ConfigError, match=r"--steps: got 400, but checkpoint .* has 800 env steps done "
                                          r"already; expected --steps >= 800"):
        train(TrainConfig(learner="perturbation", checkpoint=ck, resume=True, **{**SMALL, "steps": 400}))
    again = train(TrainConfig(learner="perturbation", checkpoint=ck, resume=True, **SMALL))
    assert again.evaluations[-1]["step"] == 800          # nothing left to do: nothing done


def test_ctrl_c_writes_the_checkpoint_closes_the_trace_and_exits_130(tmp_path):
    from leaky.trace import open_trace

    ck, tr = tmp_path / "run.npz", tmp_path / "run.h5"
    cmd = [sys.executable, "-m", "leaky", "train", "--steps", "10000000", "--envs", "2", "--hidden", "4",
           "--no-progress", "--checkpoint", str(ck), "--checkpoint-every", "100000000", "--trace", str(tr)]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:                      # wait until the loop is running
        time.sleep(0.5)
        if tr.exists():
            try:
                with open_trace(tr) as reader:
                    if reader.n_steps >= 64:
                        break
            except Exception:
                pass
        assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leaky train: interrupted at env step "), err
    assert f"checkpoint {ck} holds it (continue with --resume)" in lines[0] and "closed" in lines[0]
    done = int(lines[0].split("env step ")[1].split()[0])
    state = load_checkpoint(str(ck))
    assert state["loop"]["iteration"] * 2 == done > 0
    with open_trace(tr) as reader:
        assert reader.status == "closed" and reader.n_steps == done // 2
    resumed = train(TrainConfig(learner="local", steps=done + 8, n_envs=2, hidden=(4,), progress=False,
                                checkpoint=str(ck), resume=True, eval_every=10_000_000))
    assert resumed.env_steps == done + 8


STREAMS = {"ddpg": {"noise", "sample"}, "local-feedback": {"noise", "sample", "tangent", "shuffle"},
           "local-perturb": {"noise", "sample", "tangent", "shuffle"}, "perturbation": {"noise"}}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_every_random_stream_is_checkpointed_as_rng_name(name):
    """One convention for every learner (leaky.learners.base.Learner): each random stream it
    draws from is registered by name, saved as ``rng.<name>`` and continued by a load."""
    net, learner = _learner(name)
    _drive(net, learner, np.random.default_rng(1), 12)
    streams = learner._streams
    assert set(streams) == STREAMS.get(name, {"noise"})
    state = learner.state_dict()
    assert {f"rng.{n}" for n in streams} <= set(state)
    _, other = _learner(name)
    other.load_state_dict(state)
    for n, gen in streams.items():
        np.testing.assert_array_equal(gen.standard_normal(4), other._streams[n].standard_normal(4), err_msg=n)
