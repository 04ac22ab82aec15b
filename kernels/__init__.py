"""Compute kernels of leaky, one family per module, each with three faces.

``reference`` (NumPy, float64: the definition), ``cpu`` (``numba.njit``, fused, parallel) and
``cuda`` (``numba.cuda.jit``, fused, launched on CuPy arrays, or on NumPy arrays under
``NUMBA_ENABLE_CUDASIM=1``). Importing this package never compiles a CUDA kernel and works
without a GPU; the ``cuda`` faces import ``numba.cuda`` lazily.
"""
