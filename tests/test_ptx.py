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


def _defined_kernels(module):
    """``{name: kernel}``: the CUDA kernels a module defines (dispatchers that are not device
    functions, written in that module)."""
    from numba.cuda.dispatcher import CUDADispatcher

    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device")
            and obj.py_func.__module__ == module.__name__}


def test_every_kernel_module_is_listed():
    """Every kernel every module of leaky.kernels defines is in that module's CUDA_KERNELS
    (so the test above compiles it), and the known kernel modules all have some."""
    missing, with_kernels = [], set()
    for info in pkgutil.iter_modules(leaky.kernels.__path__):
        module = importlib.import_module(f"leaky.kernels.{info.name}")
        listed = {id(kernel) for kernel, _ in getattr(module, "CUDA_KERNELS", [])}
        defined = _defined_kernels(module)
        if defined:
            with_kernels.add(info.name)
        missing += [f"{info.name}.{name}" for name, k in defined.items() if id(k) not in listed]
    assert not missing, f"kernels missing from their module's CUDA_KERNELS: {missing}"
    assert {"step", "tangent", "credit", "update_local", "update_mlp", "noise", "loop"} <= with_kernels


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("kernel, sig", CASES)
def test_compiles_to_ptx(kernel, sig, cc):
    from numba import cuda

    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
