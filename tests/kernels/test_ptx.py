"""Every CUDA kernel compiles to PTX for sm_80 and sm_90, without a GPU.

Each module of ``leaky.kernels`` lists its kernels and their signatures in ``CUDA_KERNELS``.
This needs libNVVM (the ``nvidia-nvvm`` wheel) and cannot run in the simulator process.
"""

import importlib
import pkgutil

import pytest

import leaky.kernels
from leaky.core.backend import cuda_simulator

pytestmark = [pytest.mark.ptx,
              pytest.mark.skipif(cuda_simulator(), reason="PTX compilation is not available in the simulator")]


def _kernel_modules():
    """Every module of leaky.kernels, the modules inside a family's folder included."""
    for info in pkgutil.walk_packages(leaky.kernels.__path__, "leaky.kernels."):
        yield importlib.import_module(info.name)


def _cases():
    cases, seen = [], set()
    for module in _kernel_modules():
        for kernel, sigs in getattr(module, "CUDA_KERNELS", []):
            if id(kernel) in seen:      # a family's package re-exports its cuda module's list
                continue
            seen.add(id(kernel))
            family = module.__name__.split(".")[2]
            for sig in sigs:
                cases.append(pytest.param(kernel, sig, id=f"{family}.{kernel.py_func.__name__}"))
    return cases


CASES = _cases()


def _defined_kernels(module):
    """``{name: kernel}``: the CUDA kernels a module defines (dispatchers that are not device
    functions, written in that module)."""
    from numba.cuda.dispatcher import CUDADispatcher

    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device")
            and obj.py_func.__module__ == module.__name__}


FAMILIES = {"step", "tangent", "credit", "update_local", "update_mlp", "noise", "loop"}


def unlisted_kernels(modules) -> tuple[list, set]:
    """``(missing, families)``: the kernels a module defines but leaves out of its own
    CUDA_KERNELS, and the families (``leaky.kernels.<family>``) that define any kernel."""
    missing, families = [], set()
    for module in modules:
        listed = {id(kernel) for kernel, _ in getattr(module, "CUDA_KERNELS", [])}
        defined = _defined_kernels(module)
        if defined:
            families.add(module.__name__.split(".")[2])
        missing += [f"{module.__name__}.{name}" for name, k in defined.items() if id(k) not in listed]
    return missing, families


def test_every_kernel_module_is_listed():
    """Every kernel every module of leaky.kernels defines is in that module's CUDA_KERNELS
    (so the test below compiles it), and every known kernel family defines some."""
    missing, families = unlisted_kernels(_kernel_modules())
    assert not missing, f"kernels missing from their module's CUDA_KERNELS: {missing}"
    assert FAMILIES <= families, f"kernel families without CUDA kernels: {FAMILIES - families}"


def test_a_kernel_left_out_of_cuda_kernels_is_reported():
    """The check above can fail: a module whose CUDA_KERNELS leaves a kernel out is reported."""
    import types

    from leaky.kernels.step import cuda as step_cuda

    module = types.ModuleType(step_cuda.__name__)
    module.__dict__.update(vars(step_cuda))
    module.CUDA_KERNELS = []
    missing, families = unlisted_kernels([module])
    assert missing == ["leaky.kernels.step.cuda._step_kernel"] and families == {"step"}


@pytest.mark.parametrize("cc", [(8, 0), (9, 0)], ids=["sm_80", "sm_90"])
@pytest.mark.parametrize("kernel, sig", CASES)
def test_compiles_to_ptx(kernel, sig, cc):
    from numba import cuda

    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
