"""The step kernel's cuda face in Numba's CUDA simulator, against the float64 reference.

Each simulated launch runs one Python thread per GPU thread (256 per block): shapes are tiny
but awkward (B = 1, odd N, N not a multiple of the 32-neuron tile, more than one 8-row block).
"""

import numpy as np
import pytest

from tests.kernels.step_cases import assert_faces_agree, random_step_case, run_face

pytestmark = pytest.mark.cudasim

CASES = [
    # B, N, n_in, n_out, delay, topology, activation, inhibition, input_mode
    (1, 1, 0, 1, 1, "dense", "tanh", "none", "clamp"),
    (1, 5, 2, 1, 3, "dense", "tanh", "divisive", "clamp"),
    (9, 37, 3, 2, 2, "dense", "relu", "divisive", "pulse"),
    (3, 33, 3, 1, 4, "sparse", "identity", "none", "clamp"),
    (2, 40, 3, 1, 2, "layered", "tanh", "none", "clamp"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_cuda_face_matches_reference(case):
    B, N, n_in, n_out, delay, topology, activation, inhibition, input_mode = case
    rng = np.random.default_rng(B * 1000 + N)
    cfg, V0, obs, xi = random_step_case(rng, B, N, n_in, n_out, delay, topology=topology,
                                        activation=activation, inhibition=inhibition,
                                        input_mode=input_mode)
    bias = rng.standard_normal(N) * 0.5
    want, a_want = run_face("numpy", cfg, V0, obs, xi, bias)
    got, a_got = run_face("cuda", cfg, V0, obs, xi, bias)
    assert_faces_agree(got, want, N)
    np.testing.assert_allclose(a_got, a_want, atol=1e-5)


def test_layered_network_in_simulator_is_the_mlp():
    """The cuda face computes the tanh MLP a layered mask encodes."""
    from leaky.model.network import Network

    net = Network.layered([3, 6, 5, 2], backend="cuda", seed=3)
    obs = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _, action, _ = net.step(net.reset(2), obs)
    P = net.parameters()
    K, b = P["K"].astype(np.float64), P["b"].astype(np.float64)
    h1 = np.tanh(obs @ K[3:9, 0:3].T + b[3:9])
    h2 = np.tanh(h1 @ K[9:14, 3:9].T + b[9:14])
    out = np.tanh(h2 @ K[14:16, 9:14].T + b[14:16])
    np.testing.assert_allclose(action, out, atol=1e-5)
