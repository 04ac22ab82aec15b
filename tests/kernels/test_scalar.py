"""kernels/scalar.py: the one activation table and the one Adam, in every form they take.

The array forms (``sigma``, ``sigma_grad``, ``adam_arrays``: the references, the composed
alternatives, every learner) and the scalar forms compiled into the faces (``activate``,
``activate_grad``, ``adam_step``, ``step_param``) must be the same math; ``adam_scalars`` must
fold Kingma & Ba's bias corrections exactly.
"""

import math

import numpy as np
import pytest
from numba import njit

from leaky.kernels import scalar

Y = np.array([-3.0, -0.5, -0.0, 0.0, 1e-8, 0.7, 4.0])


@pytest.mark.parametrize("name, code", sorted(scalar.ACTIVATIONS.items()))
def test_array_and_scalar_forms_are_one_table(name, code):
    """σ and σ' on arrays equal the compiled scalar forms element by element (float64, to the
    last bit of tanh)."""
    want = np.array([scalar.activate(float(y), code) for y in Y])
    want_grad = np.array([scalar.activate_grad(float(y), code) for y in Y])
    # NumPy's vectorised tanh and libm's may differ in the last bit: one ulp, rtol 1e-15
    np.testing.assert_allclose(scalar.sigma(Y, code), want, rtol=1e-15, atol=0)
    np.testing.assert_allclose(scalar.sigma_grad(Y, code), want_grad, rtol=1e-15, atol=0)
    assert scalar.sigma_grad(Y.astype(np.float32), code).dtype == np.float32


def test_the_table_is_tanh_relu_identity():
    np.testing.assert_array_equal(scalar.sigma(Y, 0), np.tanh(Y))
    np.testing.assert_array_equal(scalar.sigma(Y, 1), np.maximum(Y, 0.0))
    np.testing.assert_array_equal(scalar.sigma(Y, 2), Y)
    np.testing.assert_array_equal(scalar.sigma_grad(Y, 1), (Y > 0) * 1.0)   # relu'(0) = 0


@pytest.mark.parametrize("t", [1, 2, 7, 1000])
def test_adam_scalars_fold_the_bias_corrections(t):
    lr, b1, b2, eps = 3e-3, 0.8, 0.95, 1e-6
    m, v = np.array([0.3, -0.1, 1e-4]), np.array([0.2, 1e-3, 1e-9])
    step_size, eps_hat = scalar.adam_scalars(lr, t, b1, b2, eps)
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    np.testing.assert_allclose(step_size * m / (np.sqrt(v) + eps_hat), lr * m_hat / (np.sqrt(v_hat) + eps),
                               rtol=1e-12)
    assert isinstance(step_size, float) and isinstance(eps_hat, float)   # float32 arrays stay float32
    with pytest.raises(ValueError, match="step"):
        scalar.adam_scalars(lr, 0)


@njit
def _steps(theta, m, v, g, b1, b2, step_size, eps_hat):
    for j in range(theta.shape[1]):
        scalar.step_param(theta, m, v, 0, j, -g[j], 1, 0.0, b1, 1 - b1, b2, 1 - b2, step_size, eps_hat)


def test_the_compiled_step_is_the_array_step():
    """``step_param`` (what the compiled faces run, on the ascent −g) is ``adam_arrays``."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal(9)
    theta, m, v = rng.standard_normal(9), 0.1 * rng.standard_normal(9), rng.uniform(0.01, 0.1, 9)
    step_size, eps_hat = scalar.adam_scalars(1e-2, 3)
    want = [a.copy() for a in (theta, m, v)]
    scalar.adam_arrays(*want, g, step_size, eps_hat)
    got = [a.copy()[None] for a in (theta, m, v)]
    _steps(*got, g, scalar.ADAM_BETA1, scalar.ADAM_BETA2, step_size, eps_hat)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a[0], b, rtol=1e-15, atol=0)


def test_sgd_step_touches_no_moment():
    theta = np.zeros((1, 3))
    m = v = np.full((1, 3), np.nan)
    for j in range(3):
        scalar.step_param(theta, m, v, 0, j, 2.0, 0, 0.5, 0.9, 0.1, 0.999, 0.001, 1.0, 1e-8)
    np.testing.assert_array_equal(theta, [[1.0, 1.0, 1.0]])
    assert math.isnan(m[0, 0])
