"""kernels/spec.py: every KernelSpec names its kernel's own parameters, in order, and builds the
launch arguments by name with the declared scalar types."""

import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import leaky.kernels
from leaky.kernels.spec import KernelSpec


def _specs():
    found = {}
    for info in pkgutil.walk_packages(leaky.kernels.__path__, "leaky.kernels."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(obj, KernelSpec):
                found[f"{module.__name__}.{name}"] = obj
    return found


SPECS = _specs()


def _listed_without_spec(specs):
    """``module.kernel`` of every kernel a module lists in ``CUDA_KERNELS`` that no spec of
    ``specs`` launches (its signature then was written by hand)."""
    with_spec = {id(spec.kernel) for spec in specs.values()}
    missing = []
    for info in pkgutil.walk_packages(leaky.kernels.__path__, "leaky.kernels."):
        module = importlib.import_module(info.name)
        for kernel, _ in getattr(module, "CUDA_KERNELS", []):
            if id(kernel) not in with_spec:
                missing.append(f"{module.__name__}.{getattr(kernel, '__name__', kernel)}")
    return missing


def test_every_family_launches_through_a_spec():
    """Every CUDA kernel's signature comes from a KernelSpec, and every family has one."""
    families = {name.split(".")[2] for name in SPECS}
    assert {"step", "tangent", "credit", "update_local", "update_mlp", "loop"} <= families
    assert not _listed_without_spec(SPECS)


def test_a_hand_written_signature_is_reported():
    """The check above can fail: a kernel listed without its spec is named."""
    name = "leaky.kernels.update_mlp.cuda.MLP_SPEC"
    rest = {k: v for k, v in SPECS.items() if k not in (name, "leaky.kernels.update_mlp.MLP_SPEC")}
    assert any("update_mlp" in m for m in _listed_without_spec(rest))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_spec_names_are_the_kernel_parameters(name):
    spec = SPECS[name]
    assert spec.names == tuple(inspect.signature(spec.kernel.py_func).parameters)


def test_launch_casts_scalars_and_reports_missing_names():
    def kernel(a, n, x, flag):
        pass

    spec = KernelSpec(kernel, (("a", "float32[::1]"), ("n", "int32"), ("x", "float32"), ("flag", "boolean")))
    a = np.zeros(3, np.float32)
    launch = spec.launch((1,), (32,), {"flag": 1, "x": 0.5, "n": 7, "a": a, "unused": None})
    assert launch.args[0] is a and type(launch.args[1]) is np.int32 and type(launch.args[2]) is np.float32
    assert launch.args[3] is True and spec.signature() == "void(float32[::1], int32, float32, boolean)"
    with pytest.raises(ValueError, match="missing arguments"):
        spec.launch((1,), (32,), {"a": a})
