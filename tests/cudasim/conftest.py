"""Tests of the cuda faces in Numba's CUDA simulator.

They run in their own pytest process, ``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cudasim``
(the variable must be set before numba is imported); the default run deselects them through
the ``cudasim`` marker every module here sets (``pytestmark = pytest.mark.cudasim``).
"""

import os

import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") in ("", "0"):
        skip = pytest.mark.skip(reason="set NUMBA_ENABLE_CUDASIM=1 before numba is imported (own process)")
        for item in items:
            if "cudasim" in item.keywords:
                item.add_marker(skip)
