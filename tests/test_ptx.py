"""Every CUDA kernel compiles to PTX for sm_80 and sm_90, without a GPU.

Each module of ``leaky.kernels`` lists its kernels and their signatures in ``CUDA_KERNELS``.
This needs libNVVM (the ``nvidia-nvvm`` wheel) and cannot run in the simulator process.
"""

import importlib
import pkgutil

import pytest

import leaky.kernels
from leaky.backend import cuda_simulator

pytestmark = [pytest.mark.ptx,
              pytest.mark.skipif(cuda_simulator(), reason="PTX compilation is not available in the simulator")]


def _cases():
    cases = []
    for info in pkgutil.iter_modules(leaky.kernels.__path__):
        module = importlib.import_module(f"leaky.kernels.{info.name}")
        for kernel, sigs in getattr(module, "CUDA_KERNELS", []):
            for sig in sigs:
                cases.append(pytest.param(kernel, sig, id=f"{info.name}.{kernel.py_func.__name__}"))
    return cases


CASES = _cases()


def test_every_kernel_module_is_listed():
    assert any("step" in p.id for p in CASES)


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("kernel, sig", CASES)
def test_compiles_to_ptx(kernel, sig, cc):
    from numba import cuda

    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
