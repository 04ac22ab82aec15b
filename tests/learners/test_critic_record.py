"""Per-neuron critic data in traces: every learner's record (leaky.learners.records), aligned with the
transition it belongs to, and drawn by ``leaky plot`` (docs/trace-format.md)."""

import numpy as np
import pytest

from leaky.cli import main
from leaky.trace import Trace, open_trace
from leaky.training.loop import TrainConfig, train

SMALL = dict(env="Pendulum-v1", steps=240, n_envs=2, hidden=(6,), eval_every=240, eval_episodes=1,
             progress=False)
LEARNERS = [("local", {"rule": "critic"}, 1), ("local", {"rule": "critic", "family": "mlp", "mlp_hidden": 4}, 1),
            ("local", {"rule": "critic", "baseline": "dopamine", "data": "replay", "batch_size": 8,
                       "learning_starts": 16}, 1),
            ("local", {"rule": "feedback", "critic_hidden": [8], "learning_starts": 16, "batch_size": 8}, 0),
            ("ddpg", {"hidden": [8], "learning_starts": 16, "batch_size": 8}, 0),
            ("perturbation", {}, 1)]


@pytest.mark.parametrize("learner, options, lag", LEARNERS,
                         ids=["local", "local-mlp", "local-dopamine-replay", "local-feedback", "ddpg", "perturbation"])
def test_every_learner_records_critic_values_and_td_errors(tmp_path, learner, options, lag):
    path = str(tmp_path / "run.h5")
    train(TrainConfig(learner=learner, learner_options=options, trace=path,
                      trace_options={"log_envs": "all"}, **SMALL))
    with open_trace(path) as tr:
        assert tr.n_steps == 120                      # every step written, the held ones too
        agents = tr.neurons[tr.neurons >= 3]          # Pendulum: sensors 0, 1, 2 have no critic
        for env in (0, 1):
            q = tr.steps("q_local", env=env)
            td = tr.steps("td_error", env=env)
            assert np.isnan(q[:, :3]).all() and np.isnan(td[:, :3]).all()
            learned = slice(0, 120 - lag)             # the last step's transition is never learned
            for data in (q, td):
                assert np.isfinite(data[learned][:, 3:]).all(), learner
                assert np.isnan(data[120 - lag:][:, 3:]).all()
            assert len(agents) == q.shape[1] - 3 and np.abs(td[learned][:, 3:]).max() > 0


def test_the_local_record_of_a_step_is_what_its_update_learned(tmp_path):
    """Row t holds the transition of step t: the update that learns it, one step late, logs
    the mean |δ| over agents and envs in the training table (every 10th step) under the step
    it ran at; the record's |δ| of row t matches that of step t + 1, not of step t."""
    path = str(tmp_path / "run.h5")
    train(TrainConfig(learner="local", learner_options={"rule": "critic"}, trace=path,
                      trace_options={"log_envs": "all"}, **SMALL))
    with open_trace(path) as tr:
        td = np.stack([tr.steps("td_error", env=e) for e in (0, 1)], axis=1)[:, :, 3:]   # (T, B, agents)
        table = tr.training()
    logged = {int(s): v for s, v in zip(table["step"], table["td_error"]) if np.isfinite(v)}
    checked = 0
    for t in range(td.shape[0] - 1):
        step = (t + 1) * 2                            # the update at vector step t + 1
        if step in logged:
            assert np.abs(td[t]).mean() == pytest.approx(logged[step], rel=1e-4)
            assert np.abs(td[t + 1]).mean() != pytest.approx(logged[step], rel=1e-4)
            checked += 1
    assert checked >= 10


def test_ddpg_records_q_and_the_td_error_of_the_transition_it_stores():
    import gymnasium as gym

    import leaky
    from leaky.learners.ddpg import DDPGConfig, DDPGLearner

    env_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    act_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    net = leaky.Network.layered([3, 5, 1], backend="numpy", observation_space=env_space,
                                action_space=act_space)
    ddpg = DDPGLearner(net, DDPGConfig(hidden=(7,), gamma=0.9, seed=1))
    ddpg.record_critic = True
    rng = np.random.default_rng(0)
    obs, nxt = rng.uniform(-1, 1, (4, 3)), rng.uniform(-1, 1, (4, 3))
    V = net.reset(4)
    V_next, action = ddpg.act(V, obs, explore=True)
    reward = rng.standard_normal(4)
    term = np.array([False, True, False, False])
    ddpg.observe(obs, action, reward, nxt, term, np.zeros(4, bool), V, V_next)
    record = ddpg.critic_record()
    assert record.lag == 0 and ddpg.critic_record() is None       # handed over once
    q, _ = ddpg.critic.forward(obs, action)
    mu_next, _ = leaky.Network.step(net, V_next, nxt)[1:]          # the target actor = the actor here
    q_next, _ = ddpg.critic_target.forward(nxt, mu_next)
    want_td = reward + 0.9 * (1 - term) * q_next - q
    np.testing.assert_allclose(record.q_local[:, 3:], np.repeat(q[:, None], 6, axis=1), rtol=1e-12)
    np.testing.assert_allclose(record.td_error[:, 3:], np.repeat(want_td[:, None], 6, axis=1), rtol=1e-12)
    assert np.isnan(record.q_local[:, :3]).all()


def _coloured(png) -> float:
    """The fraction of an image's pixels in colour (not white, grey or black)."""
    import matplotlib.image

    img = matplotlib.image.imread(png)[..., :3]
    return float(((img.max(axis=-1) - img.min(axis=-1)) > 0.1).mean())


def test_plot_draws_real_critic_values(tmp_path, capsys):
    """critic.png of a training trace has its colour maps filled (a fifth of the image, measured);
    one of a trace without critic data (written by hand, NaN there) only its colour bars (1 %)."""
    trained = tmp_path / "trained.h5"
    train(TrainConfig(learner="local", trace=str(trained), **{**SMALL, "steps": 480}))
    blank = tmp_path / "blank.h5"
    with open_trace(trained) as tr:
        ep = tr.episode(0)
    with Trace(blank, n_envs=1, obs_dim=3, act_dim=1, n_neurons=ep.voltages.shape[-1], delay=2) as tw:
        for t in range(ep.length):
            tw.log_step(ep.observations[t][None], ep.actions[t][None], [ep.rewards[t]],
                        [t == ep.length - 1 and ep.terminations[t]], [t == ep.length - 1],
                        next_obs=ep.observations[t + 1][None], voltages=ep.voltages[t, -1][None])
    for path in (trained, blank):
        assert main(["plot", str(path), "--out", str(tmp_path / path.stem)]) == 0
    capsys.readouterr()
    filled, blank_fill = (_coloured(tmp_path / d / "critic.png") for d in ("trained", "blank"))
    assert filled > 0.1 and blank_fill < 0.02
