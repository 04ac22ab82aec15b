"""Shared test setup: markers, the GPU skip, and awkward-shape input builders."""

import numpy as np
import pytest

from leaky.backend import cuda_simulator, gpu_available


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a real CUDA GPU (cupy.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords and (cuda_simulator() or not gpu_available()):
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
