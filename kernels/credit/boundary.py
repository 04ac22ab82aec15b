"""The call boundary of the credit update: the named tuples every face takes, and their checks.

Every face is ``credit_update_<face>(batch, params, top, sc, out)``: a :class:`CreditBatch`, the
:class:`CreditParams` it steps in place, the network's ``kernels.data.Topology`` (``tau`` the
decision steps), :class:`CreditScalars` and the :class:`CreditGrads` it writes; the cuda face
takes ``stream`` too (keyword-only).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from leaky.kernels.data import Topology

RULES = {"perturb": 0, "feedback": 1, "dfa": 2}


class CreditBatch(NamedTuple):
    """The minibatch a credit update reads (see the module docstring for shapes)."""

    Vc: Any
    y: Any
    scale: Any
    T: Any
    adot: Any
    g: Any
    dadv: Any


class CreditParams(NamedTuple):
    """What a credit update changes in place: K, bias, F and Adam's moments of K and bias."""

    K: Any
    bias: Any
    F: Any
    mK: Any
    vK: Any
    mb: Any
    vb: Any


class CreditGrads(NamedTuple):
    """What a credit update writes: the ascent directions G (N, N) and Gb (N,)."""

    G: Any
    Gb: Any


class CreditScalars(NamedTuple):
    """Scalars of one update.

    n_inputs, activation : sensors count and kernels/scalar.py activation code
    rule : code of :data:`RULES`;  feedback_rate : β of the feedback rule
    step_size, eps_hat, beta1, beta2 : Adam with the bias corrections of its step folded in
        (``kernels.scalar.adam_scalars``);  apply : take the Adam step (False: only G, Gb and F)
    """

    n_inputs: int
    activation: int
    rule: int
    feedback_rate: float
    step_size: float
    eps_hat: float
    beta1: float
    beta2: float
    apply: bool


def check_inputs(batch: CreditBatch, params: CreditParams, top: Topology, sc: CreditScalars,
                 out: CreditGrads) -> None:
    """ValueError unless every array has the shape, dtype and layout the compiled faces take
    (float32, C-contiguous; int32 index arrays), the codes are known and the rule has the
    tangents it needs. Reads no array values."""
    if sc.rule not in RULES.values():
        raise ValueError(f"credit update: rule {sc.rule!r}, expected one of {RULES}")
    if sc.activation not in (0, 1, 2):
        raise ValueError(f"credit update: activation {sc.activation!r}, expected 0, 1 or 2")
    Vc, y, scale, T, adot, g, dadv = batch
    if T.ndim != 3 or Vc.ndim != 3 or g.ndim != 2:
        raise ValueError(f"credit update: T, Vc, g have {T.ndim}, {Vc.ndim}, {g.ndim} dimensions, "
                         "expected 3, 3, 2")
    k, B, N = T.shape
    ell = Vc.shape[0] - 1
    n_out = g.shape[1]
    n_in = sc.n_inputs
    if ell < 1 or not (0 <= n_in and 1 <= n_out <= N - n_in):
        raise ValueError(f"credit update: ell = {ell}, n_inputs = {n_in}, n_out = {n_out} for N = {N}; "
                         "expected ell >= 1 and 1 <= n_out <= N - n_inputs")
    if k == 0 and sc.rule != RULES["dfa"]:
        raise ValueError("credit update: the perturb and feedback rules need k >= 1 tangents")
    want = {"Vc": (Vc, (ell + 1, B, N)), "y": (y, (ell, B, N)), "scale": (scale, (ell, B)),
            "T": (T, (k, B, N)), "adot": (adot, (k, B, n_out)), "g": (g, (B, n_out)),
            "dadv": (dadv, (B, n_out)), "K": (params.K, (N, N)), "bias": (params.bias, (N,)),
            "F": (params.F, (N, n_out)), "mK": (params.mK, (N, N)), "vK": (params.vK, (N, N)),
            "mb": (params.mb, (N,)), "vb": (params.vb, (N,)), "G": (out.G, (N, N)),
            "Gb": (out.Gb, (N,))}
    for name, (a, shape) in want.items():
        if tuple(a.shape) != shape:
            raise ValueError(f"credit update: {name} has shape {tuple(a.shape)}, expected {shape}")
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"credit update: {name} is {a.dtype}"
                             f"{'' if a.flags.c_contiguous else ', not C-contiguous'}; expected a "
                             "C-contiguous float32 array")
    if tuple(top.mask.shape) != (N, N) or not top.mask.flags.c_contiguous:
        raise ValueError(f"credit update: mask has shape {tuple(top.mask.shape)}, expected a "
                         f"C-contiguous ({N}, {N}) array")
    for name in ("tau", "col_lo", "col_hi"):
        a = getattr(top, name)
        if tuple(a.shape) != (N,) or a.dtype != np.int32:
            raise ValueError(f"credit update: {name} is {a.dtype} of shape {tuple(a.shape)}, "
                             f"expected int32 of shape ({N},)")


@njit(cache=True)
def tau_is_valid(tau, ell):
    """Whether every decision step is in ``[0, ℓ)`` (what indexes ``y[tau]`` and ``Vc[tau]``)."""
    for n in range(tau.shape[0]):
        if tau[n] < 0 or tau[n] >= ell:
            return False
    return True
