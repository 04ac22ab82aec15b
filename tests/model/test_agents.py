"""Theorem 2.2.1, checkable form: every neuron stepping through its own sub-environment T^n
reproduces the network's trajectory, internal step by internal step, across env steps."""

import numpy as np
import pytest

from leaky.model.agents import NeuronView, agents, sub_environment_step
from leaky.model.config import NetworkConfig
from leaky.model.network import Network


@pytest.mark.parametrize("input_mode, inhibition, delay", [("clamp", "none", 3), ("pulse", "divisive", 2),
                                                           ("clamp", "divisive", 1)])
def test_sub_environments_reproduce_the_trajectory(input_mode, inhibition, delay):
    rng = np.random.default_rng(7)
    N = 11
    cfg = NetworkConfig(n_neurons=N, n_inputs=2, n_outputs=2, delay=delay,
                        leak=tuple(rng.uniform(0.2, 1.0, N)), inhibition=inhibition,
                        input_mode=input_mode, seed=5)
    net = Network(cfg, backend="numpy")
    net.set_parameters(b=rng.standard_normal(N) * 0.3)
    view = NeuronView(net)
    B, T = 3, 4
    obs = rng.standard_normal((T + 1, B, 2))
    V = net.reset(B)
    caches = []
    for t in range(T + 1):
        xi = 0.2 * rng.standard_normal((delay, B, N))
        V, _, cache = net.step(V, obs[t], xi)
        caches.append((cache, xi))
    checked = 0
    for t in range(T):
        cache, xi = caches[t]
        for tau in range(delay):
            last = tau == delay - 1
            want = caches[t + 1][0].V[0] if last else cache.V[tau + 1]
            for n in agents(net):
                state = cache.V[tau]
                alpha_n = view.action(state, n, xi[tau][:, n])
                np.testing.assert_allclose(alpha_n, cache.alpha[tau][:, n], rtol=0, atol=1e-12)
                nxt = sub_environment_step(view, n, state, alpha_n, xi[tau], u=obs[t],
                                           u_next=obs[t + 1] if last else None)
                np.testing.assert_allclose(nxt, want, rtol=0, atol=1e-12)
                checked += 1
    assert checked == T * delay * (N - 2)


def test_a_different_action_changes_only_through_that_neuron():
    """T^n is a function of neuron n's action: perturbing it moves V' only at n (one step)."""
    net = Network(NetworkConfig(n_neurons=6, n_inputs=1, n_outputs=1, delay=1, leak=0.5), backend="numpy")
    view = NeuronView(net)
    V = np.random.default_rng(0).standard_normal((2, 6))
    xi = np.zeros((2, 6))
    a = view.action(V, 3, xi[:, 3])
    d = sub_environment_step(view, 3, V, a + 1.0, xi) - sub_environment_step(view, 3, V, a, xi)
    np.testing.assert_allclose(d[:, 3], 0.5)
    assert np.abs(np.delete(d, 3, axis=1)).max() == 0.0
