"""The parameter list of every CUDA kernel, written once: names and Numba types, in order.

A :class:`KernelSpec` is the only place a kernel's arguments are listed. From it come

* the signatures ``tests/kernels/test_ptx.py`` compiles for sm_80 and sm_90 (each module's
  ``CUDA_KERNELS``, made by :func:`cuda_kernels`);
* the argument tuple of every launch (:meth:`KernelSpec.launch`): the arguments are named, and
  scalars are cast to the declared type, so an eager call, a captured program
  (``leaky/learners/graph.py``) and the PTX test all pass the same types (a Python float where a
  ``float32`` is declared would make Numba compile a float64 variant of the kernel);

and a test holds the names against the kernel's own parameter list. A family's public launch
builders (``step_launch``, ``update_local_launch``, …) return :class:`Launch` values, which the
eager ``*_cuda`` faces run at once and a captured program keeps: no module launches another
module's kernel object itself.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

F1, F2, F3 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]"
I1, L1 = "int32[::1]", "int64[::1]"

_SCALARS = {"int32": np.int32, "uint32": np.uint32, "int64": np.int64, "float32": np.float32,
            "float64": float, "boolean": bool}


class Launch(NamedTuple):
    """One kernel launch: ``kernel[grid, block, stream](*args)``."""

    kernel: Any
    grid: tuple
    block: tuple
    args: tuple


class KernelSpec:
    """A CUDA kernel and its parameters ``((name, numba type), …)`` in order."""

    def __init__(self, kernel, params: tuple[tuple[str, str], ...]):
        self.kernel = kernel
        self.params = tuple(params)
        self.names = tuple(name for name, _ in self.params)

    def signature(self) -> str:
        """The ``void(…)`` signature ``cuda.compile_ptx`` takes."""
        return f"void({', '.join(t for _, t in self.params)})"

    def args(self, values: dict) -> tuple:
        """The arguments in order from ``values`` (by name; extra names ignored), scalars cast
        to their declared types; a missing name is a ValueError."""
        missing = [n for n in self.names if n not in values]
        if missing:
            raise ValueError(f"{self.name}: missing arguments {missing}")
        return tuple(_SCALARS[t](values[n]) if t in _SCALARS else values[n] for n, t in self.params)

    def launch(self, grid, block, values: dict) -> Launch:
        """The :class:`Launch` of ``kernel[grid, block]`` (ints or tuples, as Numba takes them)."""
        return Launch(self.kernel, _dims(grid), _dims(block), self.args(values))

    @classmethod
    def typed(cls, kernel, types: tuple[str, ...]) -> "KernelSpec":
        """The spec of ``kernel`` with its own parameter names, in order, and ``types``."""
        import inspect

        fn = getattr(kernel, "py_func", kernel)
        names = tuple(inspect.signature(fn).parameters)
        if len(names) != len(types):
            raise ValueError(f"{fn.__name__}: {len(names)} parameters, {len(types)} types")
        return cls(kernel, tuple(zip(names, types)))

    @property
    def name(self) -> str:
        fn = getattr(self.kernel, "py_func", None)
        return getattr(fn, "__name__", "kernel")


def _dims(d):
    return tuple(d) if isinstance(d, (tuple, list)) else int(d)


def run(launch: Launch, stream=0) -> None:
    """Run one :class:`Launch` on ``stream`` (0: the default stream)."""
    launch.kernel[launch.grid, launch.block, stream](*launch.args)


def cuda_kernels(*specs: KernelSpec) -> list:
    """``[(kernel, [signature])]``: what a module lists as ``CUDA_KERNELS``."""
    return [(spec.kernel, [spec.signature()]) for spec in specs]
