"""leaky's own environments (leaky/training/envs.py)."""

import gymnasium as gym
import numpy as np

import leaky.training.envs  # noqa: F401  (registers them)


def test_pendulum_without_velocity_is_pendulum_with_the_velocity_dropped():
    full, partial = gym.make("Pendulum-v1"), gym.make("leaky/PendulumNoVelocity-v1")
    assert partial.observation_space.shape == (2,) and partial.spec.max_episode_steps == 200
    o_full, _ = full.reset(seed=3)
    o_part, _ = partial.reset(seed=3)
    actions = np.random.default_rng(0).uniform(-2, 2, (200, 1)).astype(np.float32)
    for t, a in enumerate(actions):
        np.testing.assert_array_equal(o_part, o_full[:2])
        assert partial.observation_space.contains(o_part)
        o_full, r_full, term_f, trunc_f, _ = full.step(a)
        o_part, r_part, term_p, trunc_p, _ = partial.step(a)
        assert r_part == r_full and (term_p, trunc_p) == (term_f, trunc_f)
    assert trunc_p                                   # the 200-step limit, as Pendulum-v1's
