"""The training loop: repeatability, checkpoints and resume, bad environments, divergence."""

import json
import os

import gymnasium as gym
import numpy as np
import pytest

from leaky import ConfigError, DivergenceError, InputError
from leaky.cli import main
from leaky.training.checkpoint import load_checkpoint, save_checkpoint
from leaky.training.loop import TrainConfig, _check_network, build_network, train
from tests.training.training_cases import TRAINS_OPTIONS, assert_learned, short_run

SMALL = dict(env="Pendulum-v1", steps=800, n_envs=4, eval_every=400, eval_episodes=2, progress=False,
             hidden=(8,))


def test_cpu_runs_repeat_exactly_for_a_seed():
    a = train(TrainConfig(learner="perturbation", **SMALL))
    b = train(TrainConfig(learner="perturbation", **SMALL))
    assert a.evaluations == b.evaluations
    assert a.train_returns == b.train_returns
    c = train(TrainConfig(learner="perturbation", seed=1, **SMALL))
    assert c.train_returns != a.train_returns


def test_checkpoint_round_trip_and_corrupt_file(tmp_path):
    path = str(tmp_path / "c.npz")
    save_checkpoint(path, {"a": {"K": np.arange(6.0).reshape(2, 3)}, "n": 3, "s": "x"})
    back = load_checkpoint(path)
    np.testing.assert_array_equal(back["a"]["K"], np.arange(6.0).reshape(2, 3))
    assert back["n"] == 3 and back["s"] == "x"
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_checkpoint(str(tmp_path / "bad.npz"))


def test_unknown_env_and_unsupported_spaces():
    with pytest.raises(ConfigError, match="registered Gymnasium id"):
        train(TrainConfig(env="NoSuchEnv-v0", learner="perturbation", progress=False))
    with pytest.raises(ConfigError, match="action space .* expected a Box"):
        train(TrainConfig(env="CartPole-v1", learner="perturbation", progress=False))


class NaNRewardEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), float("nan") if self.t == 3 else 0.0, False, self.t >= 10, {}


def test_non_finite_reward_is_reported_with_the_step():
    gym.register("LeakyNaNReward-v0", entry_point=NaNRewardEnv)
    with pytest.raises(InputError, match=r"reward at env step 4: non-finite"):
        train(TrainConfig(env="LeakyNaNReward-v0", learner="perturbation", steps=40, n_envs=2,
                          progress=False, hidden=(4,)))


def test_divergence_names_the_neuron():
    cfg = TrainConfig(progress=False)
    net = build_network(cfg, gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (1,)))
    K = net.parameters()["K"]
    K[7, 1] = np.nan
    net.set_parameters(K=K)
    with pytest.raises(DivergenceError, match="env step 123: neuron 7"):
        _check_network(net, net.reset(2), 123)


def test_bad_learner_options():
    with pytest.raises(ConfigError, match="not fields of PerturbationConfig"):
        train(TrainConfig(learner="perturbation", learner_options={"learning_rate": 1.0}, **SMALL))
    with pytest.raises(ConfigError, match="learner"):
        TrainConfig(learner="sgd")


def test_cli_train_json(capsys):
    assert main(["train", "--learner", "perturbation", "--steps", "400", "--envs", "2", "--hidden", "4",
                 "--eval-every", "400", "--eval-episodes", "1", "--no-progress", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["env_steps"] == 400 and len(out["evaluations"]) == 1


def test_training_writes_a_trace_that_inspect_reads(tmp_path, capsys):
    from leaky.trace import open_trace

    path = str(tmp_path / "run.h5")
    train(TrainConfig(learner="local", trace=path, learner_options={"rule": "critic"}, **{**SMALL, "steps": 1600}))
    reader = open_trace(path)
    assert reader.n_episodes == 2                       # env 0 ran two 200-step episodes of 400 steps
    ep = reader.episode(0)
    assert ep.observations.shape == (201, 3) and np.isfinite(ep.voltages).all()
    assert np.isfinite(ep.noise).all()
    table = reader.training()
    assert np.isfinite(table["eval_return"]).sum() == 4     # one per evaluation (every 400 steps)
    assert main(["inspect", path, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"]["count"] == 2 and summary["episodes"]["length"]["mean"] == 200


def test_training_stops_at_the_target_return():
    """A target every evaluation reaches stops the run at the first one, and says when."""
    r = train(TrainConfig(learner="perturbation", target_return=-1e9, **{**SMALL, "steps": 1600}))
    assert len(r.evaluations) == 1 and r.env_steps == r.evaluations[0]["step"] == 400
    assert len(r.eval_wall) == 1 and 0 < r.eval_wall[0] <= r.wall_seconds
    r = train(TrainConfig(learner="perturbation", target_return=1e9, **{**SMALL, "steps": 800}))
    assert len(r.evaluations) == 2 and r.env_steps == 800


@pytest.mark.parametrize("rule", sorted(TRAINS_OPTIONS))
def test_local_learner_trains_on_the_cpu(rule, tmp_path):
    """The body of the GPU training test (tests/test_gpu.py), on the cpu backend: a short run
    updates, reports finite metrics and moves the weights."""
    assert_learned(*short_run("cpu", TRAINS_OPTIONS[rule], tmp_path))
