"""The network API: MLP equivalence, spaces, topology facts, reproducibility, bad input."""

import gymnasium as gym
import numpy as np
import pytest

import leaky
from leaky import ConfigError, InputError, Network, NetworkConfig


def mlp(obs, K, b, sizes):
    starts = np.cumsum([0] + list(sizes))
    h = obs
    for i in range(len(sizes) - 1):
        rows = slice(starts[i + 1], starts[i + 2])
        h = np.tanh(h @ K[rows, starts[i]:starts[i + 1]].T + b[rows])
    return h


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("sizes", [[3, 1], [3, 8, 1], [5, 16, 7, 2], [1, 3, 3, 3, 1]])
def test_layered_network_is_the_tanh_mlp(backend, sizes):
    """λ = 1, clamp, a layered mask and ℓ = layers: the network is the MLP, whatever V carried."""
    rng = np.random.default_rng(len(sizes))
    net = Network.layered(sizes, backend=backend, seed=1)
    net.set_parameters(b=rng.standard_normal(sum(sizes)) * 0.2)
    P = net.parameters()
    V = net.reset(4)
    for _ in range(3):  # carried voltages from earlier steps must not matter
        obs = rng.standard_normal((4, sizes[0]))
        V, action, _ = net.step(V, obs)
        want = mlp(obs, P["K"].astype(np.float64), P["b"].astype(np.float64), sizes)
        np.testing.assert_allclose(leaky.to_numpy(action), np.clip(want, -1, 1),
                                   atol=1e-12 if backend == "numpy" else 1e-5)


def test_initialisation_is_seeded_and_the_same_on_every_backend():
    cfg = NetworkConfig(n_neurons=20, n_inputs=3, n_outputs=2, topology="sparse", fan_in=5, seed=9)
    a, b = Network(cfg, backend="numpy"), Network(cfg, backend="cpu")
    np.testing.assert_allclose(a.parameters()["K"], b.parameters()["K"], rtol=1e-7)
    np.testing.assert_array_equal(a.parameters()["mask"], b.parameters()["mask"])
    assert (a.parameters()["mask"].sum(axis=1) == 5).all()
    c = Network(NetworkConfig(n_neurons=20, n_inputs=3, n_outputs=2, topology="sparse", fan_in=5, seed=10), "numpy")
    assert not np.allclose(a.parameters()["K"], c.parameters()["K"])


def test_weights_stay_on_the_mask():
    net = Network.layered([2, 4, 1], backend="cpu")
    net.set_parameters(K=np.ones((7, 7)))
    P = net.parameters()
    np.testing.assert_array_equal(P["K"], P["mask"])


def test_decision_steps_and_row_ranges_of_a_layered_network():
    net = Network.layered([3, 4, 5, 2], backend="numpy")
    # hops to the outputs: sensors 3, first hidden 2, second hidden 1, outputs 0; ℓ = 3
    np.testing.assert_array_equal(net.distance, [3] * 3 + [2] * 4 + [1] * 5 + [0] * 2)
    np.testing.assert_array_equal(net.decision_step, [0] * 3 + [0] * 4 + [1] * 5 + [2] * 2)
    np.testing.assert_array_equal(net.col_lo[3:7], 0)
    np.testing.assert_array_equal(net.col_hi[3:7], 3)
    np.testing.assert_array_equal(net.col_lo[12:], 7)
    np.testing.assert_array_equal(net.col_hi[12:], 12)
    assert net.col_hi[0] == 0  # sensors have no inputs


def test_spaces_encode_and_decode():
    obs_space = gym.spaces.Box(low=np.array([-1.0, -8.0, -np.inf]), high=np.array([1.0, 8.0, np.inf]))
    act_space = gym.spaces.Box(low=np.array([-2.0]), high=np.array([2.0]))
    net = Network(NetworkConfig(n_neurons=6, n_inputs=3, n_outputs=1), backend="numpy",
                  observation_space=obs_space, action_space=act_space)
    u = net.encode(np.array([[1.0, -8.0, 5.0], [0.0, 4.0, -3.0]]))
    np.testing.assert_allclose(u, [[1.0, -1.0, 5.0], [0.0, 0.5, -3.0]])
    np.testing.assert_allclose(net.decode(np.array([[-1.0], [0.25], [3.0]])), [[-2.0], [0.5], [2.0]])
    with pytest.raises(ConfigError, match="observation_space"):
        Network(NetworkConfig(n_neurons=6, n_inputs=2, n_outputs=1), "numpy", observation_space=obs_space)


def test_pulse_adds_the_input_once():
    cfg = NetworkConfig(n_neurons=3, n_inputs=1, n_outputs=1, delay=2, leak=1.0, input_mode="pulse",
                        weight_scale=0.0)
    net = Network(cfg, backend="numpy")
    V = net.reset(1)
    V[0, 0] = 0.25
    _, _, cache = net.step(V, [[0.5]])
    assert cache.V[0][0, 0] == 0.75          # added once
    assert cache.V[1][0, 0] == 0.0           # then the sensor follows the dynamics (K = 0)


@pytest.mark.parametrize("kwargs, word", [
    (dict(delay=0), "delay"),
    (dict(leak=0.0), "leak"),
    (dict(leak=1.5), "leak"),
    (dict(leak=(0.5, 0.5)), "leak"),
    (dict(n_inputs=9), "n_inputs"),
    (dict(activation="sigmoid"), "activation"),
    (dict(inhibition="subtractive"), "inhibition"),
    (dict(input_mode="hold"), "input_mode"),
    (dict(topology="ring"), "topology"),
    (dict(topology="sparse"), "fan_in"),
    (dict(n_neurons=2.5), "n_neurons"),
])
def test_invalid_configs_name_the_argument(kwargs, word):
    base = dict(n_neurons=8, n_inputs=2, n_outputs=1)
    base.update(kwargs)
    with pytest.raises(ConfigError, match=word) as info:
        NetworkConfig(**base)
    assert "expected" in str(info.value)


def test_unreachable_output_is_rejected():
    mask = np.ones((5, 5))
    mask[4, :] = 0.0
    mask[4, 4] = 1.0  # the output listens only to itself
    with pytest.raises(ConfigError, match=r"output neuron\(s\) \[4\] cannot be reached"):
        Network(NetworkConfig(n_neurons=5, n_inputs=2, n_outputs=1), "numpy", mask=mask)
    with pytest.raises(ConfigError, match="mask: got shape"):
        Network(NetworkConfig(n_neurons=5, n_inputs=2, n_outputs=1), "numpy", mask=np.ones((4, 4)))


def test_unknown_backend():
    with pytest.raises(ConfigError, match="backend"):
        Network.layered([2, 1], backend="tpu")


@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_bad_step_inputs(backend):
    net = Network.layered([3, 5, 1], backend=backend)
    V = net.reset(2)
    with pytest.raises(InputError, match=r"obs: got shape \(2, 4\), expected \(2, 3\)"):
        net.step(V, np.zeros((2, 4)))
    with pytest.raises(InputError, match="obs: contains NaN"):
        net.step(V, np.array([[0.0, np.nan, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(InputError, match="obs: contains NaN or inf"):
        net.step(V, np.array([[0.0, np.inf, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(InputError, match="V: got shape"):
        net.step(np.zeros((2, 8)), np.zeros((2, 3)))
    with pytest.raises(InputError, match="noise: got shape"):
        net.step(V, np.zeros((2, 3)), noise=np.zeros((1, 2, 9)))
    with pytest.raises(InputError, match="real numeric dtype"):
        net.step(V, np.array([["a", "b", "c"]] * 2))
    with pytest.raises(InputError, match="batch"):
        net.reset(0)


def test_cpu_step_repeats_exactly():
    cfg = NetworkConfig(n_neurons=300, n_inputs=3, n_outputs=1, delay=3, leak=0.3)
    obs = np.random.default_rng(0).standard_normal((16, 3))
    xi = np.random.default_rng(1).standard_normal((3, 16, 300)).astype(np.float32) * 0.1
    runs = [Network(cfg, "cpu").step(np.zeros((16, 300), np.float32), obs, xi)[2].V for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])


def test_auto_backend_without_gpu_is_cpu():
    if leaky.gpu_available():
        pytest.skip("a GPU is present")
    assert Network.layered([2, 1], backend="auto").backend.name == "cpu"


def test_set_parameters_copies_what_it_is_given(rng):
    """The network owns its parameters: changing the caller's arrays later changes nothing."""
    net = Network.layered([2, 3, 1], backend="numpy")
    K, b = rng.standard_normal((6, 6)), rng.standard_normal(6)
    K0, b0 = K.copy(), b.copy()
    net.set_parameters(K=K, b=b)
    K += 1.0
    b += 1.0
    np.testing.assert_array_equal(net.b, b0)
    np.testing.assert_array_equal(net.K, K0 * net.mask_np)
