"""The tangent step (kernels/tangent): the cpu face against the float64 reference on awkward
shapes, the reference against kernels/step and against central finite differences, the
schedules bit for bit, and the input checks. The cuda face runs the same cases in
tests/cudasim/test_tangent_cuda.py (simulator process).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leaky.core.errors import ConfigError
from leaky.kernels import step as step_kernels
from leaky.kernels import tangent as tk
from tests.kernels.tangent_cases import OUTPUTS, assert_faces_agree, empty_out, random_tangent_case, run_face, tolerance


shapes = st.tuples(
    st.integers(1, 9),                      # B
    st.integers(3, 70),                     # N: more than two 32-neuron groups, not a multiple
    st.integers(0, 2),                      # n_inputs
    st.integers(1, 2),                      # n_outputs
    st.integers(1, 4),                      # ℓ
    st.sampled_from([0, 1, 3, 17]),         # k
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes,
       topology=st.sampled_from(["dense", "sparse", "layered"]),
       activation=st.sampled_from([0, 1, 2]),
       inhibition=st.sampled_from([0, 1]),
       pulse=st.booleans(),
       last=st.sampled_from(["decision", "full", "random"]),
       tau=st.sampled_from(["decision", "random"]),
       seed=st.integers(0, 2**31 - 1))
def test_cpu_face_matches_reference(shape, topology, activation, inhibition, pulse, last, tau, seed):
    B, N, n_in, n_out, ell, k = shape
    if topology == "layered" and n_in == 0:
        n_in = 1
    N = max(N, n_in + n_out + 1)
    rng = np.random.default_rng(seed)
    try:
        case = random_tangent_case(rng, B, N, n_in, n_out, ell, k, topology, activation,
                                   inhibition, pulse, last, tau, seed % 1000)
    except ConfigError:   # a random sparse mask that cuts an output off the sensors
        assume(False)
    assert_faces_agree(run_face("cpu", *case), run_face("numpy", *case), N)


@pytest.mark.parametrize("B, N, k, ell, topology", [
    (1, 1 + 64 + 1, 3, 2, "dense"),      # B = 1: dot tiles only
    (8, 33, 0, 3, "sparse"),
    (19, 100, 1, 2, "dense"),            # 8-row outer tiles and leftover rows
    (40, 130, 17, 3, "dense"),           # k = 17: rows of 18 sources
    (9, 40, 64, 2, "sparse"),            # k = 64: row blocks of 8 over 65 sources
    (64, 300, 1, 2, "layered"),          # above PARALLEL_MIN_WORK
])
@pytest.mark.parametrize("inhibition", [0, 1])
def test_cpu_schedules_agree_bit_for_bit(B, N, k, ell, topology, inhibition):
    """Every schedule (and so every thread count) computes the same numbers, and they are the
    reference's (the parallel compilation runs here even on one thread)."""
    rng = np.random.default_rng(B + N)
    case = random_tangent_case(rng, B, N, 1, 1, ell, k, topology, 0, inhibition, False,
                               "decision", "decision", seed=3)
    runs = [run_face("cpu", *case, schedule=s) for s in step_kernels.SCHEDULES]
    for other in runs[1:]:
        for key in OUTPUTS:
            np.testing.assert_array_equal(other[key], runs[0][key], err_msg=key)
    assert_faces_agree(runs[0], run_face("numpy", *case), N)


@pytest.mark.parametrize("face", ["numpy", "cpu"])
@pytest.mark.parametrize("inhibition, pulse", [(0, False), (1, False), (0, True), (1, True)])
def test_full_last_is_the_step_kernel(face, inhibition, pulse):
    """With last = ℓ−1 everywhere the primal is kernels/step's reference step with ξ = 0
    (the reference: to float64 rounding; the cpu face: to float32 accuracy)."""
    rng = np.random.default_rng(11)
    B, N, ell = 5, 23, 3
    V0, u, T, net, flags = random_tangent_case(rng, B, N, 2, 2, ell, 2, "dense", 0, inhibition,
                                               pulse, "full", "random")
    got = run_face(face, V0, u, T, net, flags)
    Vc, z, y, _ = step_kernels.step_reference(
        V0, u, np.zeros((ell, B, N)), step_kernels.StepNet(net.K, net.bias, net.leak, net.col_lo, net.col_hi),
        step_kernels.StepFlags(2, 0, inhibition, 0.7, pulse))
    tol = 1e-12 if face == "numpy" else tolerance(N)
    for key, want in (("Vc", Vc), ("z", z), ("y", y)):
        np.testing.assert_allclose(got[key], want, rtol=0, atol=tol * max(1.0, np.abs(want).max()),
                                   err_msg=key)
    if inhibition == 1:
        s = 1.0 / (1.0 + 0.7 * np.abs(z[:, :, 2:]).mean(axis=2))
        np.testing.assert_allclose(got["scale"], s, rtol=0, atol=tol)
    else:
        assert (got["scale"] == 1).all()


def _perturbed_outputs(V0, u, T, net, flags, eps, j):
    """V_ℓ of kernels/step's reference with every agent's activity at its decision step
    moved by eps·T[j] (ξ is added to α: the perturbation the tangent is the derivative of)."""
    n_in, act, inhibition, kappa, pulse, ell = flags
    k, B, N = T.shape
    xi = np.zeros((ell, B, N))
    for n in range(n_in, N):
        xi[net.tau[n], :, n] = eps * T[j, :, n]
    Vc, *_ = step_kernels.step_reference(
        V0, u, xi, step_kernels.StepNet(net.K, net.bias, net.leak, net.col_lo, net.col_hi),
        step_kernels.StepFlags(n_in, act, inhibition, kappa, pulse))
    return Vc[-1]


@pytest.mark.parametrize("topology, inhibition, pulse, ell", [
    ("layered", 0, False, 2), ("dense", 0, False, 3), ("sparse", 0, True, 4),
    ("dense", 1, False, 3), ("dense", 1, True, 2)])
def test_reference_tangent_is_the_derivative(topology, inhibition, pulse, ell):
    """Vdot is the directional derivative of the last voltages with respect to every agent's
    activity at its decision step: central differences of the unpruned step (kernels/step)
    agree to O(ε²). With last = tau (pruning) the outputs' tangents, what learning reads, are
    still exact; under inhibition last = ℓ−1 and every neuron's tangent is."""
    rng = np.random.default_rng(5)
    B, N, k = 3, 14, 2
    case = random_tangent_case(rng, B, N, 2, 2, ell, k, topology, 0, inhibition, pulse, seed=2)
    V0, u, T, net, flags = case
    got = run_face("numpy", *case)
    rows = slice(None) if inhibition == 1 else slice(N - 2, N)
    eps = 1e-5
    for j in range(k):
        fd = (_perturbed_outputs(*case, eps, j) - _perturbed_outputs(*case, -eps, j)) / (2 * eps)
        assert np.abs(fd[:, rows]).max() > 1e-3           # the perturbation reaches the outputs
        np.testing.assert_allclose(got["Vdot"][j][:, rows], fd[:, rows], rtol=0, atol=1e-7)


def test_sensors_get_no_tangent_and_pruned_neurons_hold():
    """T on the sensors is ignored; a neuron past its last step keeps its voltage and tangent
    and has z = y = 0 there (cpu face; the comparison tests hold the same for every face)."""
    rng = np.random.default_rng(3)
    V0, u, T, net, flags = random_tangent_case(rng, 6, 40, 3, 1, 3, 2, "dense", 0, 0, True,
                                               "random", "random")
    T2 = T.copy()
    T2[:, :, :3] = 99.0
    a, b = run_face("cpu", V0, u, T, net, flags), run_face("cpu", V0, u, T2, net, flags)
    for key in OUTPUTS:
        np.testing.assert_array_equal(a[key], b[key])
    for t in range(3):
        dead = net.last < t
        assert (a["z"][t][:, dead] == 0).all() and (a["y"][t][:, dead] == 0).all()
        np.testing.assert_array_equal(a["Vc"][t + 1][:, dead], a["Vc"][t][:, dead])


def test_bad_inputs_raise_value_error():
    rng = np.random.default_rng(0)
    V0, u, T, net, flags = random_tangent_case(rng, 3, 12, 2, 1, 2, 1, "dense", last="full")
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    net32 = net._replace(K=f32(net.K), bias=f32(net.bias), leak=f32(net.leak))
    args = (f32(V0), f32(u), f32(T))
    ok = empty_out(2, 1, 3, 12)
    tk.tangent_step_cpu(*args, net32, flags, ok)
    bad = [
        (args, net32, flags, ok._replace(work=None)),
        (args, net32, flags, ok._replace(Vdot=np.zeros((2, 3, 12), np.float32))),
        ((V0, args[1], args[2]), net32, flags, ok),                              # float64
        ((args[0][:, :5], args[1], args[2]), net32, flags, ok),
        (args, net32._replace(tau=net.tau.astype(np.int64)), flags, ok),
        (args, net32._replace(last=np.zeros(12, np.int32) - 1), flags, ok),      # last < tau
        (args, net32._replace(last=np.full(12, 2, np.int32)), flags, ok),        # last > ℓ−1
        (args, net32._replace(last=np.zeros(12, np.int32), tau=np.zeros(12, np.int32)),
         flags._replace(inhibition=1), ok),                                      # divisive: ℓ−1
        (args, net32, flags._replace(activation=5), ok),
        (args, net32, flags._replace(n_inputs=12), ok),
    ]
    for a, n, fl, o in bad:
        with pytest.raises(ValueError, match="tangent step"):
            tk.tangent_step_cpu(*a, n, fl, o)
    with pytest.raises(ValueError, match="tangent step"):
        tk.tangent_step_reference(V0, u, T, net._replace(last=np.zeros(12, np.int32) - 1), flags)
