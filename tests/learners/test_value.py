"""The shared value function (leaky/learners/value.py): TD(0) on ½δ², SGD or the library's Adam,
and a checkpoint that resumes it exactly."""

import numpy as np
import pytest

from leaky.learners.optim import Adam
from leaky.learners.value import SharedValue, ValueConfig
from leaky.model.config import NetworkConfig
from leaky.model.network import Network


def _net():
    return Network(NetworkConfig(n_neurons=7, n_inputs=2, n_outputs=1, delay=2, seed=0), backend="numpy")


def _batch(rng, N=7):
    return (rng.uniform(-1, 1, (2, 5, N)), rng.uniform(-1, 1, (2, 5, N)), rng.standard_normal((2, 5)),
            rng.uniform(0, 1, (2, 5)))


@pytest.mark.parametrize("features", ["voltages", "random"])
def test_adam_td_is_the_librarys_adam_on_half_delta_squared(features):
    """Each step is optim.Adam's on the semi-gradient of ½·mean δ² over [w | c] (target fixed)."""
    rng = np.random.default_rng(0)
    value = SharedValue(ValueConfig(features=features, n_features=9, optimizer="adam", lr=0.05), _net(), seed=1)
    theta = np.zeros(value.theta.shape)
    adam = Adam([theta], lr=0.05)
    for _ in range(4):
        x, xn, r, cont = _batch(rng)
        phi, phin = value.features(x), value.features(xn)
        F = phi.shape[-1]
        delta = r + cont * (phin @ theta[:F] + theta[F]) - (phi @ theta[:F] + theta[F])
        grad = -np.concatenate([delta.reshape(-1) @ phi.reshape(-1, F), [delta.sum()]]) / delta.size
        got = value.td(x, xn, r, cont)
        np.testing.assert_allclose(got, delta, rtol=0, atol=1e-12)
        adam.step([theta], [grad])
        np.testing.assert_allclose(value.theta, theta, rtol=0, atol=1e-12)
        assert np.shares_memory(value.w, value.theta) and value.c[0] == value.theta[-1]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_state_dict_resumes_exactly(optimizer):
    rng = np.random.default_rng(3)
    cfg = ValueConfig(optimizer=optimizer, lr=0.05)
    a = SharedValue(cfg, _net(), seed=0)
    for _ in range(3):
        a.td(*_batch(rng))
    b = SharedValue(cfg, _net(), seed=0)
    b.load_state_dict({k: np.array(v, copy=True) for k, v in a.state_dict().items()})
    batch = _batch(rng)
    np.testing.assert_array_equal(a.td(*batch), b.td(*batch))
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.m, b.m)
