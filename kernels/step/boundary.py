"""The call boundary of the fused step: what every face takes and writes.

Every face is ``step_<face>(V0, u, xi, net, flags, out)``: the carried voltages ``V0 (B, N)``,
the encoded sensor input ``u (B, n_inputs)``, the noise ``xi (ℓ, B, N)``, and the named tuples
below. The faces' own options are keyword-only (``schedule`` of the cpu face, ``stream`` of the
cuda face).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class StepNet(NamedTuple):
    """What the step reads of the network (arrays of the face's module).

    K : (N, N) weights, stored masked;  bias, leak : (N,)
    col_lo, col_hi : (N,) int32, host arrays: the half-open range of presynaptic columns that
        can be non-zero in each row of K (the cpu face's tiles skip the rest; the reference
        reads neither, so the tests prove the skip exact)
    tile_lo, tile_hi : (⌈N/32⌉,) int32 device arrays: the union of those ranges per 32-neuron
        tile (``tile_ranges``); read by the cuda face only
    nnz : int, optional: ``presynaptic_count(col_lo, col_hi)``, counted once per network so the
        cpu face does not recount it at every call
    """

    K: Any
    bias: Any
    leak: Any
    col_lo: Any
    col_hi: Any
    tile_lo: Any = None
    tile_hi: Any = None
    nnz: int | None = None


class StepFlags(NamedTuple):
    """Scalars of the step: ``n_inputs``, the activation and inhibition codes of
    kernels/scalar.py, ``kappa`` and ``pulse`` (input mode ``pulse``; else ``clamp``)."""

    n_inputs: int
    activation: int
    inhibition: int
    kappa: float
    pulse: bool


class StepOut(NamedTuple):
    """The cache learning reads: ``V (ℓ+1, B, N)`` the voltages before every internal step and
    after the last, ``z, y, alpha (ℓ, B, N)`` pre-activations, after inhibition, actions."""

    V: Any
    z: Any
    y: Any
    alpha: Any
