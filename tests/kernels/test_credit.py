"""The credit update (kernels/credit): the cpu face against the float64 reference on awkward
shapes over several consecutive updates, the reference against its formulas computed directly,
the invariants (sensors, mask, outputs, apply) and the input checks. The cuda face runs the same
cases in tests/cudasim/test_credit_cuda.py (simulator process).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leaky.model.config import NetworkConfig
from leaky.core.errors import ConfigError
from leaky.kernels import credit as ck
from leaky.kernels.data import Topology
from leaky.kernels.scalar import adam_scalars
from leaky.model.network import Network

FACES = {"numpy": ck.credit_update_reference, "cpu": ck.credit_update_cpu}
PARAMS = ck.CreditParams._fields
OUTPUTS = PARAMS + ("G", "Gb")
DACT = {0: lambda y: 1.0 - np.tanh(y) ** 2, 1: lambda y: (y > 0) * 1.0, 2: lambda y: 1.0 + 0 * y}


def _f32(a):
    """Values float32 represents exactly, held in float64: every face sees the same inputs."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def random_credit_case(rng, B, N, n_in, n_out, ell, k, topology="dense", activation=0, rule=0,
                       apply=True, tau="decision", seed=0, moments_off_mask=False):
    """``(batch, params, top, sc)`` of one credit update, float64 arrays of float32 values.

    The mask, its ranges and the decision steps come from a Network of ``topology``
    (``layered``: one hidden layer, ℓ = 2), or ``tau="random"`` in [0, ℓ). Adam's moments are a
    mid-run state (v well above g²·(1−β₂), zero off the mask as the learner keeps them): there
    the step is a smooth function of the gradient, so float32 rounding cannot flip its sign the
    way m̂/√v̂ = ±1 at zero moments would. ``moments_off_mask``: non-zero moments off the mask
    too (where G is 0, so only the mask keeps Adam from moving K there).
    """
    extra = {}
    if topology == "sparse":
        extra["fan_in"] = max(1, N // 3)
    if topology == "layered":
        hidden = N - n_in - n_out
        extra["layer_sizes"] = (n_in,) + ((hidden,) if hidden else ()) + (n_out,)
        ell = len(extra["layer_sizes"]) - 1
    cfg = NetworkConfig(n_neurons=N, n_inputs=n_in, n_outputs=n_out, delay=ell, topology=topology,
                        seed=seed, **extra)
    net = Network(cfg, backend="numpy")   # raises ConfigError if a sparse mask cuts an output off
    mask = net.mask_np
    taus = (net.decision_step if tau == "decision" else rng.integers(0, ell, size=N)).astype(np.int32)
    batch = ck.CreditBatch(
        Vc=_f32(rng.uniform(-1, 1, (ell + 1, B, N))),
        y=_f32(rng.standard_normal((ell, B, N))),
        scale=_f32(rng.uniform(0.5, 1.0, (ell, B))),
        T=_f32(rng.standard_normal((k, B, N))),
        adot=_f32(rng.standard_normal((k, B, n_out))),
        g=_f32(rng.standard_normal((B, n_out))),
        dadv=_f32(rng.uniform(0.0, 1.0, (B, n_out))))
    moment_mask = 1.0 if moments_off_mask else mask
    params = ck.CreditParams(
        K=_f32(rng.standard_normal((N, N)) * mask),
        bias=_f32(0.3 * rng.standard_normal(N)),
        F=_f32(rng.standard_normal((N, n_out)) / np.sqrt(n_out)),
        mK=_f32(0.05 * rng.standard_normal((N, N)) * moment_mask),
        vK=_f32(rng.uniform(0.01, 0.05, (N, N)) * moment_mask),
        mb=_f32(0.05 * rng.standard_normal(N)),
        vb=_f32(rng.uniform(0.01, 0.05, N)))
    top = Topology(taus, mask, net.col_lo, net.col_hi)
    step_size, eps_hat = adam_scalars(0.05, 3, 0.8, 0.95, 1e-6)
    sc = ck.CreditScalars(n_in, activation, rule, 0.3, step_size, eps_hat, 0.8, 0.95, apply)
    return batch, params, top, sc


def to_face(face, batch, params, top):
    """The inputs as the face takes them (float32 C arrays; the reference: float64 copies)."""
    dtype = np.float64 if face == "numpy" else np.float32
    conv = lambda a: np.array(a, dtype=dtype, order="C")  # noqa: E731
    mask = top.mask.astype(np.float32)
    return (ck.CreditBatch(*map(conv, batch)), ck.CreditParams(*map(conv, params)),
            top._replace(mask=mask))


def run_updates(face, batch, params, top, sc, steps=1, xp=np):
    """``steps`` consecutive updates of ``face`` from the same state (Adam's step advancing),
    the batch unchanged; returns the float64 state after each as a list of dicts."""
    fn = FACES[face] if isinstance(face, str) else face
    b, p, t = to_face(face, batch, params, top)
    if xp is not np:
        b, p, t = (type(x)(*map(xp.asarray, x)) for x in (b, p, t))
    N = batch.Vc.shape[2]
    dtype = np.float64 if face == "numpy" else np.float32
    out = ck.CreditGrads(xp.full((N, N), np.nan, dtype=dtype), xp.full(N, np.nan, dtype=dtype))
    states = []
    for step in range(3, 3 + steps):
        step_size, eps_hat = adam_scalars(0.05, step, sc.beta1, sc.beta2, 1e-6)
        fn(b, p, t, sc._replace(step_size=step_size, eps_hat=eps_hat), out)
        host = lambda a: np.array(a.get() if hasattr(a, "get") else a, dtype=np.float64)  # noqa: E731
        states.append({**{name: host(a) for name, a in zip(PARAMS, p)},
                       "G": host(out.G), "Gb": host(out.Gb)})
    return states


# float32 faces against the float64 reference. G sums B products of O(1) terms (relative
# rounding up to B·2⁻²⁴) and each e up to k·n_out more; F the feedback rule's k·B terms; Adam's
# step m/(√v + ε̂) amplifies an error of G by at most (1−β₁)/√v ≈ 0.2/0.1 at v ≥ 0.01, times
# the step size. atol 2⁻²⁴·max(16, B + N + k), relative to each array's largest |value|:
# the worst seen over 300 random cases of 3 updates is a fifth of it.
def tolerance(B, N, k):
    return 2.0 ** -24 * max(16, B + N + k)


def assert_faces_agree(got, want, B, N, k):
    tol = tolerance(B, N, k)
    for key in want:
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(got[key], want[key], rtol=0, atol=tol * scale, err_msg=key)


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
