"""The credit update (kernels/credit): the cpu face against the float64 reference on awkward
shapes over several consecutive updates, the reference against its formulas computed directly,
the invariants (sensors, mask, outputs, apply) and the input checks. The cuda face runs the same
cases in tests/cudasim/test_credit_cuda.py (simulator process).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leaky.core.errors import ConfigError
from leaky.kernels import credit as ck
from tests.kernels.credit_cases import DACT, assert_faces_agree, random_credit_case, run_updates, to_face


shapes = st.tuples(
    st.integers(1, 9),                      # B
    st.integers(3, 70),                     # N: more than two 32-neuron tiles, not a multiple
    st.integers(0, 2),                      # n_inputs
    st.integers(1, 2),                      # n_outputs
    st.integers(1, 4),                      # ℓ
    st.sampled_from([0, 1, 3, 17]),         # k (0: dfa only)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=shapes,
       topology=st.sampled_from(["dense", "sparse", "layered"]),
       activation=st.sampled_from([0, 1, 2]),
       rule=st.sampled_from([0, 1, 2]),
       apply=st.booleans(),
       tau=st.sampled_from(["decision", "random"]),
       seed=st.integers(0, 2**31 - 1))
def test_cpu_face_matches_reference(shape, topology, activation, rule, apply, tau, seed):
    B, N, n_in, n_out, ell, k = shape
    if rule != 2:
        k = max(k, 1)
    if topology == "layered" and n_in == 0:
        n_in = 1
    N = max(N, n_in + n_out + 1)
    rng = np.random.default_rng(seed)
    try:
        case = random_credit_case(rng, B, N, n_in, n_out, ell, k, topology, activation, rule,
                                  apply, tau, seed % 1000)
    except ConfigError:   # a random sparse mask that cuts an output off the sensors
        assume(False)
    got = run_updates("cpu", *case, steps=3)
    want = run_updates("numpy", *case, steps=3)
    for g, w in zip(got, want):
        assert_faces_agree(g, w, B, N, k)


@pytest.mark.parametrize("B, N, k, rule, topology", [
    (1, 40, 1, 0, "dense"), (33, 64, 3, 1, "dense"), (7, 96, 0, 2, "sparse"),
    (64, 300, 1, 1, "dense"), (20, 130, 2, 0, "layered")])
def test_cpu_face_large_shapes(B, N, k, rule, topology):
    """Tiles of 32 neurons with leftover columns, the parallel compilation (above
    PARALLEL_MIN_WORK) and the serial one."""
    rng = np.random.default_rng(B + N)
    case = random_credit_case(rng, B, N, 3, 1, 2, k, topology, 0, rule, True, seed=1)
    for g, w in zip(run_updates("cpu", *case, steps=2), run_updates("numpy", *case, steps=2)):
        assert_faces_agree(g, w, B, N, k)


def test_reference_is_the_formulas():
    """The reference's e, G, Gb and F against the module docstring's formulas, written out."""
    rng = np.random.default_rng(4)
    B, N, n_in, n_out, ell, k = 5, 11, 2, 2, 2, 3
    for rule in (0, 1, 2):
        batch, params, top, sc = random_credit_case(rng, B, N, n_in, n_out, ell, k, "dense", 0,
                                                    rule, False, tau="random")
        got = run_updates("numpy", batch, params, top, sc)[0]
        Vc, y, scale, T, adot, g, dadv = batch
        F = params.F.copy()
        d = np.einsum("bo,jbo->jb", g, adot)
        for n in range(N):
            t = top.tau[n]
            if n < n_in:
                assert (got["G"][n] == 0).all() and got["Gb"][n] == 0
                continue
            if n >= N - n_out:
                e = g[:, n - (N - n_out)] * dadv[:, n - (N - n_out)]
            elif rule == 0:
                e = sum(d[j] * T[j, :, n] for j in range(k)) / k
            else:
                if rule == 1:
                    F[n] = 0.7 * F[n] + 0.3 * sum(adot[j, b] * T[j, b, n]
                                                  for j in range(k) for b in range(B)) / (k * B)
                e = g @ F[n]
            gz = e * DACT[0](y[t, :, n]) * scale[t]
            np.testing.assert_allclose(got["Gb"][n], gz.mean(), rtol=1e-12, atol=1e-14)
            for m in range(N):
                want = (gz * Vc[t, :, m]).mean() * (top.mask[n, m] != 0)
                np.testing.assert_allclose(got["G"][n, m], want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got["F"], F, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("face", ["numpy", "cpu"])
def test_invariants(face):
    """Sensor rows and entries off the mask are never written (K and moments), the outputs'
    e is exact (F unused for them), F moves only under feedback and only on hidden rows, and
    apply=False changes nothing but G, Gb and F."""
    rng = np.random.default_rng(9)
    B, N, n_in, n_out = 6, 37, 3, 2
    for rule in (0, 1, 2):
        for apply in (True, False):
            batch, params, top, sc = random_credit_case(rng, B, N, n_in, n_out, 3, 2, "sparse", 1,
                                                        rule, apply, tau="random", seed=4,
                                                        moments_off_mask=True)
            got = run_updates(face, batch, params, top, sc)[0]
            off = top.mask == 0
            for key in ("K", "mK", "vK"):
                np.testing.assert_array_equal(got[key][:n_in], params._asdict()[key][:n_in])
                np.testing.assert_array_equal(got[key][off], params._asdict()[key][off])
                if apply:
                    assert not np.array_equal(got[key][n_in:], params._asdict()[key][n_in:])
            assert (got["G"][:n_in] == 0).all() and (got["G"][off] == 0).all()
            for key in ("bias", "mb", "vb"):
                np.testing.assert_array_equal(got[key][:n_in], params._asdict()[key][:n_in])
            if not apply:
                for key in ("K", "bias", "mK", "vK", "mb", "vb"):
                    np.testing.assert_array_equal(got[key], params._asdict()[key], err_msg=key)
            hidden = slice(n_in, N - n_out)
            fixed = np.ones(N, bool)
            if rule == 1:
                fixed[hidden] = False
                assert not np.array_equal(got["F"][hidden], params.F[hidden])
            np.testing.assert_array_equal(got["F"][fixed], params.F[fixed])
    # the outputs' G does not depend on F or T: only on g·dadv
    batch, params, top, sc = random_credit_case(rng, B, N, n_in, n_out, 2, 2, "dense", 0, 2, False)
    a = run_updates(face, batch, params, top, sc)[0]
    b = run_updates(face, batch._replace(T=batch.T + 1.0, adot=batch.adot * 2),
                    params._replace(F=params.F * 3.0), top, sc)[0]
    np.testing.assert_array_equal(a["G"][N - n_out:], b["G"][N - n_out:])


def test_bad_inputs_raise_value_error():
    rng = np.random.default_rng(0)
    batch, params, top, sc = random_credit_case(rng, 4, 12, 2, 1, 2, 1, "dense", 0, 0, True)
    b, p, t = to_face("cpu", batch, params, top)
    out = ck.CreditGrads(np.zeros((12, 12), np.float32), np.zeros(12, np.float32))
    ck.credit_update_cpu(b, p, t, sc, out)
    k0 = b._replace(T=np.zeros((0, 4, 12), np.float32), adot=np.zeros((0, 4, 1), np.float32))
    bad = [
        (k0, p, t, sc, out),                                                  # perturb, k = 0
        (k0, p, t, sc._replace(rule=1), out),                                 # feedback, k = 0
        (b, p, t, sc._replace(rule=7), out),
        (b, p, t, sc._replace(activation=-1), out),
        (b._replace(g=b.g.astype(np.float64)), p, t, sc, out),
        (b._replace(y=b.y[:1]), p, t, sc, out),
        (b, p._replace(F=np.zeros((12, 2), np.float32)), t, sc, out),
        (b, p, t._replace(tau=t.tau.astype(np.int64)), sc, out),
        (b, p, t._replace(tau=np.full(12, 2, np.int32)), sc, out),            # tau ≥ ℓ
        (b, p, t, sc, out._replace(G=np.zeros((12, 12), np.float32).T)),     # not C-contiguous
        (b, p, t, sc._replace(n_inputs=12), out),
    ]
    for args in bad:
        with pytest.raises(ValueError, match="credit update"):
            ck.credit_update_cpu(*args)
    with pytest.raises(ValueError, match="k >= 1"):
        ck.credit_update_reference(*to_face("numpy", k0, params, top), sc,
                                   ck.CreditGrads(np.zeros((12, 12)), np.zeros(12)))
    # dfa needs no tangents
    ck.credit_update_cpu(k0, p, t, sc._replace(rule=2), out)


def test_cpu_face_does_not_depend_on_the_thread_count():
    """One thread (the serial compilation) and every thread (the parallel one, tiles as tasks)
    give the same numbers bit for bit."""
    import numba

    rng = np.random.default_rng(2)
    case = random_credit_case(rng, 40, 200, 3, 1, 3, 2, "dense", 0, 1, True, tau="random")
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_updates("cpu", *case, steps=2)
    finally:
        numba.set_num_threads(threads)
    every = run_updates("cpu", *case, steps=2)
    for a, b in zip(one, every):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
