"""The math every face shares, written once: the activation table and Adam.

**Activations.** Codes are small integers so that one compiled kernel serves every activation:

======  ==========  ===============  =====================
code    name        σ(y)             σ'(y)
======  ==========  ===============  =====================
0       tanh        tanh(y)          1 - tanh(y)²
1       relu        max(y, 0)        1 if y > 0 else 0
2       identity    y                1
======  ==========  ===============  =====================

One table, three forms of it: :func:`sigma` and :func:`sigma_grad` on NumPy or CuPy arrays
(the references, the composed alternatives and every learner written on the array module);
:func:`activate` and :func:`activate_grad` on scalars, compiled for the cpu faces and, as
``activate_cuda`` and ``activate_grad_cuda``, for the cuda faces; :func:`tanh32`, the
vectorisable float32 tanh of the cpu faces' inner loops.

Inhibition codes: 0 none (``y = z``), 1 divisive (``y = z / (1 + κ·mean|z|)``, the mean taken
over the non-sensor neurons of the batch row).

**Adam** (Kingma & Ba 2015), for every parameter θ with loss gradient g, at step t = 1, 2, …::

    m ← β₁ m + (1 − β₁) g          v ← β₂ v + (1 − β₂) g²
    θ ← θ − step_size · m / (√v + eps_hat),
    step_size = η √(1 − β₂ᵗ) / (1 − β₁ᵗ),   eps_hat = ε √(1 − β₂ᵗ)      (:func:`adam_scalars`)

which equals ``θ ← θ − η m̂ / (√v̂ + ε)`` with the bias-corrected moments (the paper's
efficient form). The defaults :data:`ADAM_BETA1`, :data:`ADAM_BETA2`, :data:`ADAM_EPS` serve
every optimiser of the library. :func:`adam_step` is one parameter's step inside a compiled
face (:func:`step_param` is it with the SGD alternative); :func:`adam_arrays` is the step of
whole NumPy or CuPy arrays in place (``leaky.learners.optim.Adam``, the composed
alternatives). The array form squares g before scaling it, ``(1 − β₂)·(g·g)``; the compiled
form scales first, ``((1 − β₂)·g)·g``: the same math, rounded as each was written before the
two shared this module.
"""

import math

import numpy as np
from numba import njit
from numba.extending import register_jitable

from leaky.kernels.jit import FASTMATH, cuda_device, shared

ACTIVATIONS = {"tanh": 0, "relu": 1, "identity": 2}
INHIBITIONS = {"none": 0, "divisive": 1}


# -- the activation table ----------------------------------------------------------------------

def sigma(y, code, xp=np):
    """σ(y) of activation ``code`` on a NumPy or CuPy array (``xp`` its module)."""
    if code == 0:
        return xp.tanh(y)
    if code == 1:
        return xp.maximum(y, 0.0)
    return y


def sigma_grad(y, code, xp=np):
    """σ'(y) of activation ``code`` on a NumPy or CuPy array, in ``y``'s dtype (relu'(0) = 0)."""
    if code == 0:
        t = xp.tanh(y)
        return 1.0 - t * t
    if code == 1:
        return (y > 0).astype(y.dtype)
    return xp.ones_like(y)


def activate(y, code):
    if code == 0:
        return math.tanh(y)
    if code == 1:
        return y if y > 0.0 else 0.0 * y
    return y


def activate_grad(y, code):
    """σ'(y), written in terms of the pre-activation ``y``."""
    if code == 0:
        t = math.tanh(y)
        return 1.0 - t * t
    if code == 1:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


activate, activate_cuda = shared(activate)
activate_grad, activate_grad_cuda = shared(activate_grad)


# Plain (not inlined) calls, for the row passes that call σ in several places
# (kernels/tangent/cpu.py): several inlined call sites of the multi-return activate in one
# function trip numba's pedantic IR check (NumbaIRAssumptionWarning); LLVM inlines them anyway.
@njit(cache=True, fastmath=FASTMATH)
def activate_call(y, code):
    return activate(y, code)


@njit(cache=True, fastmath=FASTMATH)
def activate_grad_call(y, code):
    return activate_grad(y, code)


@njit(cache=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def tanh32(x):
    """float32 tanh to 3e-7 absolute: Eigen's rational minimax form (odd 13 / even 6).

    LLVM vectorises it (0.1 ns per element here); libm's ``tanhf`` is a scalar call (8.5 ns),
    which made activation passes cost as much as the GEMMs around them. NaN passes the clamp.
    """
    c = np.float32(7.90531110763549805)  # tanh(c) = 1 - 2.7e-7 in float32
    x = c if x > c else x
    x = -c if x < -c else x
    x2 = x * x
    p = x2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = x2 * p + np.float32(-8.60467152213735e-11)
    p = x2 * p + np.float32(5.12229709037114e-08)
    p = x2 * p + np.float32(1.48572235717979e-05)
    p = x2 * p + np.float32(6.37261928875436e-04)
    p = x2 * p + np.float32(4.89352455891786e-03)
    q = x2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = x2 * q + np.float32(2.26843463243900e-03)
    q = x2 * q + np.float32(4.89352518554385e-03)
    return x * p / q


# -- Adam ---------------------------------------------------------------------------------------

ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8


def _bias_corrected(lr, step, beta1, beta2, eps):
    """``(step_size, eps_hat)`` of Adam step ``step`` (no checks: also a CUDA device function)."""
    root = math.sqrt(1.0 - math.pow(beta2, step))
    return lr * root / (1.0 - math.pow(beta1, step)), eps * root


bias_corrected, bias_corrected_cuda = shared(_bias_corrected)


def adam_scalars(lr: float, step: int, beta1: float = ADAM_BETA1, beta2: float = ADAM_BETA2,
                 eps: float = ADAM_EPS) -> tuple[float, float]:
    """``(step_size, eps_hat)`` of Adam step ``step`` ≥ 1, the bias corrections folded in:
    ``θ −= step_size·m/(√v + eps_hat)`` equals ``θ −= lr·m̂/(√v̂ + ε)``."""
    if step < 1:
        raise ValueError(f"adam_scalars: step {step!r}, expected an Adam step >= 1")
    return bias_corrected(float(lr), float(step), float(beta1), float(beta2), float(eps))


def adam_step(m, v, g, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, eps_hat):
    """One Adam step of one parameter with loss gradient ``g``: ``(m', v', Δ)``, θ' = θ − Δ."""
    m = beta1 * m + one_minus_beta1 * g
    v = beta2 * v + one_minus_beta2 * g * g
    return m, v, step_size * m / (math.sqrt(v) + eps_hat)


adam_step, adam_step_cuda = shared(adam_step)


def step_param(theta, adam_m, adam_v, n, j, ascent, optimizer, lr, beta1, one_minus_beta1,
               beta2, one_minus_beta2, step_size, eps_hat):
    """One step of ``theta[n, j]``: SGD ascent (optimizer 0), or Adam descent on g = −ascent
    with the bias corrections folded into ``step_size`` and ``eps_hat``.

    Under SGD the moment arrays are not touched (they may be placeholders).
    """
    if optimizer == 0:
        theta[n, j] += lr * ascent
    else:
        m, v, d = adam_step(adam_m[n, j], adam_v[n, j], -ascent, beta1, one_minus_beta1, beta2,
                            one_minus_beta2, step_size, eps_hat)
        adam_m[n, j] = m
        adam_v[n, j] = v
        theta[n, j] -= d


def _step_param_cuda(theta, adam_m, adam_v, n, j, ascent, optimizer, lr, beta1, one_minus_beta1,
                     beta2, one_minus_beta2, step_size, eps_hat):
    if optimizer == 0:
        theta[n, j] += lr * ascent
    else:
        m, v, d = adam_step_cuda(adam_m[n, j], adam_v[n, j], -ascent, beta1, one_minus_beta1, beta2,
                                 one_minus_beta2, step_size, eps_hat)
        adam_m[n, j] = m
        adam_v[n, j] = v
        theta[n, j] -= d


step_param = register_jitable(inline="always")(step_param)
step_param_cuda = cuda_device(_step_param_cuda)


def adam_arrays(theta, m, v, grad, step_size, eps_hat, beta1=ADAM_BETA1, beta2=ADAM_BETA2) -> None:
    """One Adam step of the NumPy or CuPy array ``theta`` down ``grad``, in place (``m``, ``v``
    its moments; ``step_size``, ``eps_hat`` from :func:`adam_scalars`). Python-float scalars
    keep float32 arrays float32."""
    m *= beta1
    m += (1.0 - beta1) * grad
    v *= beta2
    v += (1.0 - beta2) * (grad * grad)
    theta -= step_size * m / (v ** 0.5 + eps_hat)   # ** 0.5: NumPy and CuPy alike
