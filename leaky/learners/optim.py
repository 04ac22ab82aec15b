"""Adam over a list of backend arrays, updated in place.

For every parameter θ with gradient g, at step t = 1, 2, … (Kingma & Ba 2015, Algorithm 1)::

    m ← β₁ m + (1 − β₁) g          v ← β₂ v + (1 − β₂) g²
    θ ← θ − η · m̂ / (√v̂ + ε),      m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

The moments live on the parameters' array module (NumPy or CuPy) in their dtype; the update is
a handful of element-wise operations per array, no kernels of its own.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from leaky.core.backend import to_numpy
from leaky.core.errors import ConfigError, InputError
from leaky.kernels.scalar import ADAM_BETA1, ADAM_BETA2, ADAM_EPS, adam_arrays, adam_scalars


class Adam:
    """Adam with bias correction; ``step`` changes the parameter arrays in place.

    Parameters
    ----------
    params : sequence of arrays
        The parameters (NumPy or CuPy); only their shapes and dtypes are read here, so the same
        optimizer can later step arrays that replaced them (same shapes).
    lr : float
        η, the step size.
    betas : (float, float)
        β₁, β₂, decay rates of the first and second moment estimates.
    eps : float
        ε, added to √v̂.
    """

    def __init__(self, params: Sequence[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (ADAM_BETA1, ADAM_BETA2), eps: float = ADAM_EPS):
        if not (lr > 0 and np.isfinite(lr)):
            raise ConfigError(f"Adam.lr: got {lr!r}, expected a finite value > 0")
        if not all(0.0 <= beta < 1.0 for beta in betas) or len(betas) != 2:
            raise ConfigError(f"Adam.betas: got {betas!r}, expected two values in [0, 1)")
        if not eps > 0:
            raise ConfigError(f"Adam.eps: got {eps!r}, expected a value > 0")
        self.lr = float(lr)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.m = [p * 0 for p in params]
        self.v = [p * 0 for p in params]
        self.t = 0

    def step(self, params: Sequence[Any], grads: Sequence[Any]) -> None:
        """One Adam step: ``params[i] -= lr · m̂ᵢ / (√v̂ᵢ + ε)`` in place."""
        if len(params) != len(self.m) or len(grads) != len(self.m):
            raise InputError(f"Adam.step: got {len(params)} parameters and {len(grads)} gradients, "
                             f"expected {len(self.m)} of each")
        self.t += 1
        beta1, beta2 = self.betas
        # bias corrections folded into the step size (the paper's "efficient version"), as
        # Python floats: a float64 NumPy scalar would promote float32 arrays
        step_size, eps_hat = adam_scalars(self.lr, self.t, beta1, beta2, self.eps)
        for p, g, m, v in zip(params, grads, self.m, self.v):
            adam_arrays(p, m, v, g, step_size, eps_hat, beta1, beta2)

    def state_dict(self) -> dict:
        """The moments and the step count as NumPy arrays: ``{"t", "m.0", "v.0", …}``."""
        d = {"t": np.asarray(self.t, dtype=np.int64)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            d[f"m.{i}"] = to_numpy(m).copy()
            d[f"v.{i}"] = to_numpy(v).copy()
        return d

    def load_state_dict(self, d: dict) -> None:
        """Restore what :meth:`state_dict` returned (shapes must match)."""
        for i in range(len(self.m)):
            for key, store in ((f"m.{i}", self.m), (f"v.{i}", self.v)):
                if key not in d:
                    raise InputError(f"Adam.load_state_dict: missing {key!r}")
                value = np.asarray(d[key])
                if value.shape != tuple(store[i].shape):
                    raise InputError(f"Adam.load_state_dict: {key} has shape {value.shape}, "
                                     f"expected {tuple(store[i].shape)}")
                store[i][...] = _like(store[i], value)
        self.t = int(d["t"])


def _like(ref, value):
    """``value`` (NumPy) on ``ref``'s array module and dtype."""
    if isinstance(ref, np.ndarray):
        return value.astype(ref.dtype)
    import cupy

    return cupy.asarray(value, dtype=ref.dtype)
