"""The counter-based noise of kernels/noise.py: the published Philox answers, and normal draws.

The cuda kernel is compared with the njit fill in the simulator (tests/cudasim/test_graph_cuda.py).
"""

import numpy as np
import pytest
from leaky.kernels import noise

U = np.uint64


@pytest.mark.parametrize("c0, c1, key, want", [
    # Random123's known-answer vectors for philox2x32, 10 rounds (tests/kat_vectors there)
    (0x00000000, 0x00000000, 0x00000000, (0xFF1DAE59, 0x6CD10DF2)),
    (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, (0x2C3F628B, 0xAB4FD7AD)),
    (0x243F6A88, 0x85A308D3, 0x13198A2E, (0xDD7CE038, 0xF62A4C12)),
])
def test_philox_known_answers(c0, c1, key, want):
    got = noise.philox2x32(U(c0), U(c1), U(key))
    assert (int(got[0]), int(got[1])) == want


def _draws(seed, stream, counter, n, std=1.0):
    return noise.fill_normal_cpu(np.uint32(seed), np.uint32(stream), counter,
                                 np.array([std], dtype=np.float32), np.empty(n, dtype=np.float32))


def test_draws_are_standard_normal():
    x = _draws(1, 0, 0, 200_000)
    assert abs(x.mean()) < 5 / np.sqrt(x.size)
    assert abs(x.std() - 1) < 0.01
    for k, mass in ((1, 0.682689), (2, 0.954500), (3, 0.997300)):   # P(|x| < k) of N(0, 1)
        assert abs(np.mean(np.abs(x) < k) - mass) < 0.005


def test_draws_differ_by_counter_stream_and_seed_and_repeat_exactly():
    base = _draws(1, 0, 7, 4096)
    np.testing.assert_array_equal(base, _draws(1, 0, 7, 4096))
    for other in (_draws(1, 0, 8, 4096), _draws(1, 1, 7, 4096), _draws(2, 0, 7, 4096)):
        assert abs(np.corrcoef(base, other)[0, 1]) < 0.06
    assert abs(np.corrcoef(base[0::2], base[1::2])[0, 1]) < 0.06   # the cos/sin pair of a block


def test_std_applies_per_neuron_along_the_last_axis():
    std = np.array([0.0, 1.0, 3.0], dtype=np.float32)
    out = noise.fill_normal_cpu(np.uint32(4), np.uint32(0), 0, std, np.empty((2, 50, 3), dtype=np.float32))
    assert np.all(out[..., 0] == 0)
    assert 2.0 < out[..., 2].std() / out[..., 1].std() < 4.5


def test_python_and_compiled_scalar_agree():
    got = [noise.normal(3, 0, 5, i) for i in range(6)]   # the register_jitable function called from Python
    np.testing.assert_allclose(got, _draws(3, 0, 5, 6), rtol=1e-6, atol=1e-6)
