"""Shared actor cases of the DDPG tests: every branch of the forward pass at least once
(tests/learners/test_ddpg.py, tests/learners/test_shared_critic.py)."""

import gymnasium as gym
import numpy as np

from leaky.model.config import NetworkConfig
from leaky.model.network import Network

BOX2 = gym.spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 3.0]), dtype=np.float64)

# name → (config, action space): every branch of the forward pass at least once
ACTOR_CASES = {
    "dense_leak_ell3": (NetworkConfig(n_neurons=9, n_inputs=3, n_outputs=2, delay=3, leak=0.6,
                                      seed=1), None),
    "layered_mlp": (NetworkConfig.layered([3, 5, 4, 2], seed=2), None),
    "pulse_relu_leak_per_neuron": (NetworkConfig(
        n_neurons=10, n_inputs=3, n_outputs=2, delay=3, seed=3, input_mode="pulse",
        activation="relu", leak=tuple(np.linspace(0.2, 1.0, 10))), None),
    "divisive_tanh": (NetworkConfig(n_neurons=9, n_inputs=3, n_outputs=2, delay=3, leak=0.7,
                                    inhibition="divisive", kappa=0.8, seed=4), None),
    "divisive_identity_pulse": (NetworkConfig(
        n_neurons=8, n_inputs=2, n_outputs=2, delay=2, leak=0.5, activation="identity",
        inhibition="divisive", kappa=1.3, input_mode="pulse", seed=5), None),
    "identity_box_clipped": (NetworkConfig(n_neurons=9, n_inputs=3, n_outputs=2, delay=3,
                                           leak=0.6, activation="identity", weight_scale=3.0,
                                           seed=6), BOX2),
    "sparse_relu_box": (NetworkConfig(n_neurons=11, n_inputs=3, n_outputs=2, delay=4,
                                      leak=0.8, activation="relu", topology="sparse", fan_in=4,
                                      seed=7), BOX2),
}


def _flags(cfg):
    return dict(n_inputs=cfg.n_inputs, activation=cfg.activation, inhibition=cfg.inhibition,
                kappa=cfg.kappa, pulse=cfg.input_mode == "pulse")


def _random_actor(name, rng, backend="numpy", B=4):
    cfg, space = ACTOR_CASES[name]
    net = Network(cfg, backend=backend, action_space=space)
    net.set_parameters(b=0.5 * rng.standard_normal(cfg.n_neurons))
    V0 = net.backend.asarray(rng.standard_normal((B, cfg.n_neurons)))
    obs = rng.standard_normal((B, cfg.n_inputs))
    return net, V0, obs
