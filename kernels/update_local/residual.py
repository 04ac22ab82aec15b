"""The scalar math the cpu and cuda faces share: one transition's critic residual."""

from __future__ import annotations

from leaky.kernels.jit import shared

# ---------------------------------------------------------------------------------------------
# scalar math shared by the cpu and cuda faces
# ---------------------------------------------------------------------------------------------

def _residual(family, baseline, a, d, wx, px, wbx, c, u, h, cb, ub, mu_next, r, cont, delta, half):
    """TD error (own critic) or regression residual (dopamine) of one transition.

    ``half`` is ½ in the caller's float type (a float64 literal would promote float32 math).
    """
    if baseline == 0:
        if family == 1:
            return r + cont * (wbx + cb) - (wx + c + d * (u + px) + half * h * d * d)
        return r + cont * (wbx + ub * mu_next + cb) - (wx + u * a + c)
    if family == 1:
        return delta - (d * (u + px) + half * h * d * d)
    return delta - u * d


_residual, _residual_cuda = shared(_residual)
