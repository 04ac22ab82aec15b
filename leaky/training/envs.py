"""Small Gymnasium environments for testing learners (registered on import of leaky.training.envs).

``leaky/ContextualBandit-v0``: one-step episodes; observation ``s ~ U(-1, 1)^d``; action
``a ∈ [-1, 1]``; reward ``−(a − a*(s))²`` with ``a*(s) = 0.8·tanh(w·s)`` for a fixed ``w``.
The best policy is state-dependent, so a learner that cannot encode one (a constant ``∂Q/∂α``)
fails it, and ``∂r/∂a = −2(a − a*(s))`` is known exactly for checking critics' slopes.

``leaky/PendulumNoVelocity-v1``: Pendulum-v1 (same dynamics, reward, 200-step episodes) that
observes only ``[cos θ, sin θ]``. The angular velocity is hidden, so a policy that sees one
observation cannot tell a swing to the left from one to the right; a network with memory (leak,
recurrence) can, from the change of the angle over steps (examples/memory.py).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv


class ContextualBandit(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, obs_dim: int = 2):
        self.obs_dim = obs_dim
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.w = np.linspace(1.5, -1.0, obs_dim)
        self._s = np.zeros(obs_dim, np.float32)

    def target(self, s):
        return 0.8 * np.tanh(np.asarray(s) @ self.w)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._s = self.np_random.uniform(-1.0, 1.0, self.obs_dim).astype(np.float32)
        return self._s.copy(), {}

    def step(self, action):
        a = float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0))
        reward = -(a - float(self.target(self._s))) ** 2
        self._s = self.np_random.uniform(-1.0, 1.0, self.obs_dim).astype(np.float32)
        return self._s.copy(), reward, True, False, {}


class PendulumNoVelocity(PendulumEnv):
    def __init__(self, render_mode: str | None = None, g: float = 10.0):
        super().__init__(render_mode=render_mode, g=g)
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def _get_obs(self):
        theta, _ = self.state
        return np.array([np.cos(theta), np.sin(theta)], dtype=np.float32)


if "leaky/ContextualBandit-v0" not in gym.registry:
    gym.register("leaky/ContextualBandit-v0", entry_point=ContextualBandit)
if "leaky/PendulumNoVelocity-v1" not in gym.registry:
    gym.register("leaky/PendulumNoVelocity-v1", entry_point=PendulumNoVelocity, max_episode_steps=200)
