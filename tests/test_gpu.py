"""The cuda faces on a real GPU (CuPy arrays), against the float64 reference.

Skipped without a GPU (conftest); run on a lent device with ``python -m pytest -q -m gpu``.
"""

import numpy as np
import pytest

from tests.kernels.step_cases import assert_faces_agree, random_step_case, run_face

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("B, N, delay, topology, inhibition, input_mode", [
    (1, 1, 1, "dense", "none", "clamp"),
    (1, 33, 3, "dense", "divisive", "pulse"),
    (9, 65, 2, "sparse", "none", "clamp"),
    (257, 130, 5, "dense", "divisive", "clamp"),
    (64, 300, 3, "layered", "none", "clamp"),
])
def test_cuda_step_matches_reference(B, N, delay, topology, inhibition, input_mode):
    rng = np.random.default_rng(B + N)
    n_in = 0 if N == 1 else 3
    cfg, V0, obs, xi = random_step_case(rng, B, N, n_in, 1, delay, topology=topology,
                                        inhibition=inhibition, input_mode=input_mode)
    want, a_want = run_face("numpy", cfg, V0, obs, xi)
    got, a_got = run_face("cuda", cfg, V0, obs, xi)
    assert_faces_agree(got, want, N)
    np.testing.assert_allclose(a_got, a_want, atol=1e-5)


def test_cuda_network_uses_cupy_arrays():
    import cupy as cp

    from leaky import Network

    net = Network.layered([3, 16, 1], backend="cuda")
    V, action, cache = net.step(net.reset(4), np.zeros((4, 3)))
    assert isinstance(V, cp.ndarray) and isinstance(cache.alpha, cp.ndarray)
