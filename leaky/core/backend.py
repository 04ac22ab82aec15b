"""Backends: where arrays live and which face of each kernel runs.

=========  ===================  =========  ===============================================
name       array module         dtype      kernels
=========  ===================  =========  ===============================================
numpy      NumPy                float64    the ``reference`` faces (the definition)
cpu        NumPy                float32    the ``cpu`` faces (``numba.njit``, parallel)
cuda       CuPy (NumPy in the   float32    the ``cuda`` faces (``numba.cuda.jit``)
           CUDA simulator)
=========  ===================  =========  ===============================================

``auto`` picks ``cuda`` when ``cupy.cuda.is_available()`` and ``cpu`` otherwise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from leaky.core.errors import ConfigError

BACKENDS = ("numpy", "cpu", "cuda")


def cuda_simulator() -> bool:
    """True when Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def gpu_available() -> bool:
    """True when CuPy imports and sees a CUDA device (never raises)."""
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:
        return False


@dataclass(frozen=True)
class Backend:
    """Array module, dtype and kernel face of one backend."""

    name: str
    xp: ModuleType
    dtype: Any

    @property
    def on_gpu(self) -> bool:
        return self.xp is not np

    def asarray(self, x, dtype=None):
        return self.xp.ascontiguousarray(self.xp.asarray(x, dtype=dtype or self.dtype))

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=dtype or self.dtype)

    def empty(self, shape, dtype=None):
        return self.xp.empty(shape, dtype=dtype or self.dtype)

    def rng(self, seed):
        """A seeded generator whose ``standard_normal(size)`` returns backend arrays."""
        return Generator(self, seed)

    def synchronize(self) -> None:
        if self.on_gpu:
            self.xp.cuda.get_current_stream().synchronize()


class Generator:
    """Seeded normal draws on the backend (NumPy's PCG64, or CuPy's generator on a GPU)."""

    def __init__(self, backend: Backend, seed):
        self.backend = backend
        self.seed = seed
        if backend.on_gpu:
            self._rng = backend.xp.random.default_rng(seed)
        else:
            self._rng = np.random.default_rng(seed)

    def state(self):
        """The generator's state as uint64 words (NumPy's PCG64), or None on a GPU (CuPy's
        generators expose none): what a checkpoint keeps."""
        if self.backend.on_gpu:
            return None
        from leaky.core.rngstate import pcg64_words

        return pcg64_words(self._rng)

    def set_state(self, words, resume_key: int = 0) -> None:
        """Continue from :meth:`state`'s ``words``; on a GPU (or without words) draw a fresh
        stream spawned from the seed and ``resume_key`` instead."""
        from leaky.core.rngstate import int_seed, set_pcg64_words

        if words is not None and not self.backend.on_gpu:
            set_pcg64_words(self._rng, words)
            return
        seed = self.seed if isinstance(self.seed, np.random.SeedSequence) else np.random.SeedSequence(int(self.seed))
        seq = np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + (int(resume_key),))
        xp = self.backend.xp if self.backend.on_gpu else np
        self._rng = xp.random.default_rng(int_seed(seq))

    def standard_normal(self, size):
        return self._rng.standard_normal(size, dtype=self.backend.dtype)

    def normal(self, scale, size):
        return self.standard_normal(size) * self.backend.dtype.type(scale)

    def random(self, size):
        """Uniform draws in [0, 1) in the backend's dtype."""
        return self._rng.random(size, dtype=self.backend.dtype)

    def integers(self, low, high, size):
        """Integers in [low, high), NumPy's convention (so a replay buffer samples with either)."""
        return self._rng.integers(low, high, size=size)

    def permutation(self, n):
        return self._rng.permutation(n)

    def rademacher(self, size):
        """±1 with probability ½ each (backend dtype): one random bit per value."""
        if self.backend.on_gpu:
            return self._rng.integers(0, 2, size=size).astype(self.backend.dtype) * 2 - 1
        n = int(np.prod(size))
        words = self._rng.bit_generator.random_raw((n + 63) // 64).astype(np.uint64)
        return _signs(words, n, self.backend.dtype.type(1)).reshape(size)


def get_backend(name: str = "auto") -> Backend:
    """The :class:`Backend` called ``name`` (``numpy``, ``cpu``, ``cuda`` or ``auto``)."""
    if isinstance(name, Backend):
        return name
    if name == "auto":
        name = "cuda" if gpu_available() else "cpu"
    if name == "numpy":
        return Backend("numpy", np, np.dtype(np.float64))
    if name == "cpu":
        return Backend("cpu", np, np.dtype(np.float32))
    if name == "cuda":
        if cuda_simulator():
            return Backend("cuda", np, np.dtype(np.float32))
        if not gpu_available():
            raise ConfigError(
                "backend='cuda' needs a CUDA GPU visible to CuPy (cupy.cuda.is_available() is "
                "False); use backend='cpu', 'auto', or run the CUDA simulator with "
                "NUMBA_ENABLE_CUDASIM=1")
        import cupy

        return Backend("cuda", cupy, np.dtype(np.float32))
    raise ConfigError(f"backend must be one of 'auto', {', '.join(map(repr, BACKENDS))}; got {name!r}")


def to_numpy(x):
    """A NumPy copy (or view) of a backend array; NumPy arrays pass through."""
    if hasattr(x, "get") and not isinstance(x, np.ndarray):
        return x.get()
    return np.asarray(x)


def _signs(words, n, one):
    from leaky.kernels.noise import signs_from_bits

    out = np.empty(n, dtype=type(one))
    signs_from_bits(words, out)
    return out
