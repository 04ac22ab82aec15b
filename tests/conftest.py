"""Shared test setup: markers, the GPU skip, and awkward-shape input builders."""

import numba
import numpy as np
import pytest

from leaky.core.backend import cuda_simulator, gpu_available

# Importing leaky runs its kernels on one Numba thread (leaky/core/threads.py); the tests run them on
# all of Numba's threads, so that the parallel schedules are exercised with more than one.
numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a real CUDA GPU (cupy.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords and (cuda_simulator() or not gpu_available()):
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
