"""The step kernel's cpu face against the float64 reference, on awkward shapes.

The cuda face runs the same cases in tests/cudasim/test_step_cuda.py (simulator process).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leaky.core.errors import ConfigError
from leaky.kernels import step as step_kernels
from tests.kernels.step_cases import assert_faces_agree, random_step_case, run_face

shapes = st.tuples(
    st.integers(1, 9),    # B
    st.integers(3, 70),   # N (70: more than one 64-neuron block, not a multiple)
    st.integers(0, 2),    # n_inputs
    st.integers(1, 2),    # n_outputs
    st.integers(1, 5),    # delay
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes,
       topology=st.sampled_from(["dense", "sparse", "layered"]),
       activation=st.sampled_from(["tanh", "relu", "identity"]),
       inhibition=st.sampled_from(["none", "divisive"]),
       input_mode=st.sampled_from(["clamp", "pulse"]),
       seed=st.integers(0, 2**31 - 1))
def test_cpu_face_matches_reference(shape, topology, activation, inhibition, input_mode, seed):
    B, N, n_in, n_out, delay = shape
    rng = np.random.default_rng(seed)
    if topology == "layered" and n_in == 0:
        n_in = 1
    N = max(N, n_in + n_out + 1)
    try:
        cfg, V0, obs, xi = random_step_case(rng, B, N, n_in, n_out, delay, topology=topology,
                                            activation=activation, inhibition=inhibition,
                                            input_mode=input_mode, seed=seed % 1000)
    except ConfigError:  # a random sparse mask that cuts an output off the sensors
        assume(False)
    bias = rng.standard_normal(N) * 0.5
    want, a_want = run_face("numpy", cfg, V0, obs, xi, bias)
    got, a_got = run_face("cpu", cfg, V0, obs, xi, bias)
    assert_faces_agree(got, want, N)
    np.testing.assert_allclose(a_got, a_want, atol=1e-5)


@pytest.mark.parametrize("B, N", [(1, 1), (1, 5), (4, 64), (5, 65), (33, 130), (64, 300)])
def test_cpu_face_serial_and_parallel_paths(rng, B, N):
    """Both compiled variants (below and above PARALLEL_MIN_WORK) agree with the reference."""
    n_out = 1
    n_in = 0 if N == 1 else 1
    cfg, V0, obs, xi = random_step_case(rng, B, N, n_in, n_out, 3, inhibition="divisive")
    want, _ = run_face("numpy", cfg, V0, obs, xi)
    got, _ = run_face("cpu", cfg, V0, obs, xi)
    assert_faces_agree(got, want, N)


def test_every_output_written(rng):
    """Poisoned outputs are fully overwritten (no element left unwritten)."""
    cfg, V0, obs, xi = random_step_case(rng, 7, 41, 2, 2, 3)
    from leaky.model.network import Network

    net = Network(cfg, backend="cpu")
    f32 = np.float32
    out = step_kernels.StepOut(*(np.full(s, np.nan, f32) for s in [(4, 7, 41), (3, 7, 41), (3, 7, 41), (3, 7, 41)]))
    step_kernels.step_cpu(V0.astype(f32), obs.astype(f32), xi.astype(f32),
                          step_kernels.StepNet(net.K, net.b, net.leak, net.col_lo, net.col_hi),
                          step_kernels.StepFlags(2, 0, 0, 1.0, False), out)
    assert all(np.isfinite(o).all() for o in out)


def test_tile_ranges_cover_rows():
    lo = np.array([0, 2, 5, 0, 0], np.int32)
    hi = np.array([3, 4, 9, 0, 0], np.int32)
    tlo, thi = step_kernels.tile_ranges(lo, hi, tile=2)
    assert list(tlo) == [0, 5, 0] and list(thi) == [4, 9, 0]
