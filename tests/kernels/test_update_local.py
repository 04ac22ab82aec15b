"""The fused local update (kernels/update_local/).

The cpu face against the float64 reference on awkward shapes (hypothesis), the reference against
the formulas of docs/design.md#3-every-neuron-is-an-agent computed directly (actor step; critic
step as the semi-gradient of ½e²),
invariants (h ≤ 0, sensors, views, dopamine), the transition builder, the shared value function,
and a contextual bandit the advantage critic must solve. The cuda face runs the same cases in
tests/cudasim/test_update_local_cuda.py (simulator process).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaky.core.errors import ConfigError
from leaky.kernels import update_local as ul
from leaky.learners.critics import UpdateConfig, build_transitions, dopamine_td, neuron_slices
from leaky.kernels.update_local import critic_layout
from leaky.kernels.update_local.boundary import _masks
from tests.kernels.update_local_cases import (ACT, DACT, MUTABLE, OUTPUTS, assert_faces_agree, call_update,
                                            random_update_case, run_face)

# ---------------------------------------------------------------------------------------------
# cpu face against the reference
# ---------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 6), N=st.integers(2, 41), ell=st.integers(1, 4),
       n_inputs=st.integers(0, 3), clock=st.sampled_from(ul.CLOCKS),
       view=st.sampled_from(sorted(ul.VIEWS)), family=st.sampled_from(sorted(ul.FAMILIES)),
       baseline=st.sampled_from(sorted(ul.BASELINES)),
       optimizer=st.sampled_from(sorted(ul.OPTIMIZERS)), activation=st.integers(0, 2),
       seed=st.integers(0, 2**31 - 1))
def test_cpu_face_matches_reference(B, N, ell, n_inputs, clock, view, family, baseline, optimizer,
                                    activation, seed):
    rng = np.random.default_rng(seed)
    case = random_update_case(rng, B, N, ell, min(n_inputs, N - 1), clock, view, family,
                              baseline, optimizer, activation)
    want = run_face(ul.update_local_reference, *case)
    got = run_face(ul.update_local_cpu, *case)
    assert_faces_agree(got, want, case[0])


@pytest.mark.parametrize("B, N, ell, clock, view", [
    (8, 32, 1, "causal", "all"), (16, 64, 2, "causal", "all"), (8, 96, 2, "internal", "all"),
    (8, 64, 2, "causal", "presynaptic"),     # panels for the rows of K only (klo = 0)
    (5, 64, 2, "causal", "all"),             # S not a multiple of 8: the packed copies instead
    (5, 96, 1, "internal", "presynaptic"),   # two-pass loops on packed copies, views masked
])
@pytest.mark.parametrize("family, baseline", [("advantage", "own"), ("linear", "own"),
                                              ("advantage", "dopamine"), ("linear", "dopamine")])
def test_cpu_face_whole_tiles_read_column_panels(B, N, ell, clock, view, family, baseline):
    """N a multiple of 32 and S of 8: the gradient tiles read the voltages as column panels;
    tiles of 32 consecutive neurons run the two-pass residual and slope loops."""
    rng = np.random.default_rng(B * 1000 + N)
    case = random_update_case(rng, B, N, ell, 3, clock, view, family, baseline)
    want = run_face(ul.update_local_reference, *case)
    got = run_face(ul.update_local_cpu, *case)
    assert_faces_agree(got, want, case[0])


@pytest.mark.parametrize("B, N, ell, clock", [(1, 3, 1, "causal"), (2, 9, 2, "internal"),
                                              (17, 70, 3, "internal"), (33, 65, 2, "causal")])
@pytest.mark.parametrize("family", ["advantage", "linear"])
def test_cpu_face_serial_and_parallel_paths(B, N, ell, clock, family):
    """Both compilations (below and above PARALLEL_MIN_WORK) agree with the reference."""
    rng = np.random.default_rng(B * 100 + N)
    case = random_update_case(rng, B, N, ell, 2, clock, "presynaptic", family)
    want = run_face(ul.update_local_reference, *case)
    got = run_face(ul.update_local_cpu, *case)
    assert_faces_agree(got, want, case[0])


def test_cpu_face_accepts_none_placeholders(rng):
    """``delta`` None (own critic) and Adam moments None (SGD) are accepted and unused."""
    args, params, cfg, flags = random_update_case(rng, 3, 7, 2, 1, optimizer="sgd")
    want = run_face(ul.update_local_reference, args, params, cfg, flags)
    f32 = {k: (v if v.dtype.kind == "i" else v.astype(np.float32)) for k, v in args.items()}
    p = {k: v.astype(np.float32) for k, v in params.items()}
    f32["delta"] = p["adam_m"] = p["adam_v"] = None
    call_update(ul.update_local_cpu, f32, p, cfg, flags["n_inputs"], flags["activation"], flags["step"])
    for key in ("K", "bias", "theta", "theta_bar", "diag"):
        np.testing.assert_allclose(p[key], want[key], atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------------------------
# the math, computed directly from the formulas of docs/design.md#3-every-neuron-is-an-agent
# ---------------------------------------------------------------------------------------------

def _slices(args, n):
    T = args["Vs"].shape[0]
    return np.arange(T) if args["tau"][n] < 0 else np.array([args["tau"][n]])


@pytest.mark.parametrize("family", ["advantage", "linear"])
@pytest.mark.parametrize("lr_critic", [0.0, 0.05])
@pytest.mark.parametrize("face", [ul.update_local_reference, ul.update_local_cpu],
                         ids=["reference", "cpu"])
def test_actor_step_is_designs_formula(face, family, lr_critic, rng):
    """ΔK[n, m] = η·mean_b[∂Q_n/∂α|_μ · σ'(y_n) · V_m] on the mask row; Δb_n with V_m → 1.

    The slope comes from the critic after its step (the returned θ); with lr_critic = 0 that
    is the critic as given.
    """
    B, N, ell, n_in = 5, 11, 3, 2
    args, params, cfg, flags = random_update_case(rng, B, N, ell, n_in, "causal", "presynaptic",
                                                  family, optimizer="sgd", lr_critic=lr_critic)
    out = run_face(face, args, params, cfg, flags)
    lay = critic_layout(N)
    for n in range(n_in, N):
        t = args["tau"][n]
        x = args["Vs"][t]                                     # (B, N) inputs of the weights
        feat = args["mask"][n] != 0
        u, p = out["theta"][n, lay.u], out["theta"][n, lay.p]
        slope = u + (x * feat) @ p if family == "advantage" else np.full(B, u)
        sp = DACT[flags["activation"]](args["ys"][t, :, n])
        dK = cfg.lr_actor * np.array([np.mean(slope * sp * x[:, m]) for m in range(N)]) * feat
        np.testing.assert_allclose(out["K"][n] - params["K"][n], dK, atol=2e-6)
        np.testing.assert_allclose(out["bias"][n] - params["bias"][n],
                                   cfg.lr_actor * np.mean(slope * sp), atol=2e-6)
        np.testing.assert_allclose(out["diag"][n, 2], slope.mean(), atol=2e-6)
    if lr_critic == 0.0:
        np.testing.assert_array_equal(out["theta"], params["theta"])


def _residuals(theta_row, args, n, cfg, activation, theta_bar_row):
    """Residuals e of neuron n, one transition at a time, as a function of its critic row."""
    T, B, N = args["Vs"].shape
    lay = critic_layout(N)
    act = ACT[activation]
    out = []
    feat = (args["mask"][n] != 0) if cfg.view == "presynaptic" else np.ones(N, bool)
    for t in _slices(args, n):
        for b in range(B):
            x, xn = args["Vs"][t, b] * feat, args["Vn"][t, b] * feat
            a = args["alphas"][t, b, n]
            mu = act(args["ys"][t, b, n])
            w, p = theta_row[lay.w], theta_row[lay.p]
            c, u, h = theta_row[lay.c], theta_row[lay.u], theta_row[lay.h]
            if cfg.baseline == "dopamine":
                A = (a - mu) * (u + p @ x) + 0.5 * h * (a - mu) ** 2 if cfg.family == "advantage" \
                    else u * (a - mu)
                e = args["delta"][t, b] - A
            else:
                wb, cb, ub = theta_bar_row[lay.w], theta_bar_row[lay.c], theta_bar_row[lay.u]
                if cfg.family == "advantage":
                    Q = w @ x + c + (a - mu) * (u + p @ x) + 0.5 * h * (a - mu) ** 2
                    target = args["r"][t, b] + args["cont"][t, b] * (wb @ xn + cb)
                else:
                    Q = w @ x + u * a + c
                    mu_next = act(args["yn"][t, b, n])
                    target = args["r"][t, b] + args["cont"][t, b] * (wb @ xn + ub * mu_next + cb)
                e = target - Q
            out.append(e)
    return np.array(out)


def _loss(theta_row, *rest):
    """½·mean e², targets held fixed: the critic step is its negative semi-gradient."""
    return 0.5 * np.mean(_residuals(theta_row, *rest) ** 2)


@pytest.mark.parametrize("family, baseline, view", [
    ("advantage", "own", "all"), ("advantage", "dopamine", "presynaptic"),
    ("linear", "own", "presynaptic"), ("linear", "dopamine", "all")])
def test_critic_step_is_the_semi_gradient(family, baseline, view, rng):
    """With SGD, Δθ = −lr_critic·∇θ ½mean e² (targets fixed), by central differences, on the
    parameters the configuration trains; every other entry is unchanged."""
    B, N, ell, n_in = 4, 6, 2, 1
    args, params, cfg, flags = random_update_case(rng, B, N, ell, n_in, "internal", view, family,
                                                  baseline, "sgd", activation=0)
    out = run_face(ul.update_local_reference, args, params, cfg, flags)
    lay = critic_layout(N)
    for n in range(n_in, N):
        row = params["theta"][n]
        trained, _ = _masks(ul.FAMILIES[family], ul.VIEWS[view], ul.BASELINES[baseline],
                               args["mask"][n] != 0)
        grad = np.zeros(lay.width)
        for j in np.flatnonzero(trained):
            eps = 1e-6
            up, dn = row.copy(), row.copy()
            up[j] += eps
            dn[j] -= eps
            grad[j] = (_loss(up, args, n, cfg, 0, params["theta_bar"][n])
                       - _loss(dn, args, n, cfg, 0, params["theta_bar"][n])) / (2 * eps)
        want = row - cfg.lr_critic * grad
        if family == "advantage":
            want[lay.h] = min(want[lay.h], 0.0)
        np.testing.assert_allclose(out["theta"][n], want, atol=1e-8)
        assert np.array_equal(out["theta"][n][~trained], row[~trained])
        e = _residuals(row, args, n, cfg, 0, params["theta_bar"][n])
        np.testing.assert_allclose(out["diag"][n, :2], [e.mean(), np.abs(e).mean()], rtol=1e-12)


def test_adam_scalars_fold_the_bias_corrections():
    cfg = UpdateConfig(optimizer="adam", lr_critic=0.01, beta1=0.9, beta2=0.99, eps=1e-3)
    m, v = np.array([0.3, -0.1, 1e-4]), np.array([0.2, 1e-3, 1e-8])
    for t in (1, 2, 10):
        step_size, eps_hat = cfg.adam_scalars(t)
        m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.99 ** t)
        np.testing.assert_allclose(step_size * m / (np.sqrt(v) + eps_hat),
                                   0.01 * m_hat / (np.sqrt(v_hat) + 1e-3), rtol=1e-12)
    with pytest.raises(ConfigError, match="step"):
        cfg.adam_scalars(0)


# ---------------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------------

FACES = [pytest.param(ul.update_local_reference, id="reference"),
         pytest.param(ul.update_local_cpu, id="cpu")]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("face", FACES)
def test_curvature_stays_non_positive(face, optimizer, rng):
    """A reward far above the critic pushes h up (e > 0, ∂Q/∂h = ½d² ≥ 0): it stops at 0."""
    args, params, cfg, flags = random_update_case(rng, 4, 7, 2, 1, optimizer=optimizer,
                                                  lr_critic=1.0)
    args["r"] = np.full_like(args["r"], 50.0)
    lay = critic_layout(7)
    params["theta"][:, lay.h] = -1e-3
    out = run_face(face, args, params, cfg, flags)
    assert (out["theta"][:, lay.h] <= 0).all()
    assert (out["theta"][1:, lay.h] == 0).all()


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("clock", ul.CLOCKS)
def test_sensors_are_not_agents(face, clock, rng):
    """Rows of sensor neurons (critic, target, moments, K, bias) stay as they were; diag 0."""
    n_in = 3
    args, params, cfg, flags = random_update_case(rng, 3, 8, 2, n_in, clock)
    out = run_face(face, args, params, cfg, flags)
    for key in MUTABLE:
        np.testing.assert_array_equal(out[key][:n_in], params[key][:n_in], err_msg=key)
        assert not np.array_equal(out[key][n_in:], params[key][n_in:]), key
    np.testing.assert_array_equal(out["diag"][:n_in], 0.0)


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_presynaptic_view_and_mask_are_respected(face, optimizer, rng):
    """Outside a presynaptic view nothing of w, p (nor their target or moments) changes, and K
    stays masked; inside, every entry moves."""
    N = 9
    args, params, cfg, flags = random_update_case(rng, 3, N, 2, 1, view="presynaptic",
                                                  optimizer=optimizer)
    out = run_face(face, args, params, cfg, flags)
    lay = critic_layout(N)
    for n in range(1, N):
        off = args["mask"][n] == 0
        for key in ("theta", "theta_bar") + (("adam_m", "adam_v") if optimizer == "adam" else ()):
            for part in (lay.w, lay.p):
                np.testing.assert_array_equal(out[key][n, part][off], params[key][n, part][off])
                assert (out[key][n, part][~off] != params[key][n, part][~off]).all(), key
        np.testing.assert_array_equal(out["K"][n][off], 0.0)


@pytest.mark.parametrize("face", FACES)
@pytest.mark.parametrize("family", ["advantage", "linear"])
def test_dopamine_leaves_the_own_value_alone(face, family, rng):
    """Under the shared baseline the neuron's w and c (and their moments) are not trained."""
    N = 6
    args, params, cfg, flags = random_update_case(rng, 2, N, 3, 1, "internal", family=family,
                                                  baseline="dopamine")
    out = run_face(face, args, params, cfg, flags)
    lay = critic_layout(N)
    for key in ("theta", "adam_m", "adam_v"):
        np.testing.assert_array_equal(out[key][:, lay.w], params[key][:, lay.w])
        np.testing.assert_array_equal(out[key][:, lay.c], params[key][:, lay.c])
    assert (out["theta"][1:, lay.u] != params["theta"][1:, lay.u]).all()
    if family == "linear":
        np.testing.assert_array_equal(out["theta"][:, lay.p], params["theta"][:, lay.p])


def test_config_is_validated():
    with pytest.raises(ConfigError, match="family"):
        UpdateConfig(family="mlp")
    with pytest.raises(ConfigError, match="lr_actor"):
        UpdateConfig(lr_actor=float("nan"))
    with pytest.raises(ConfigError, match="tau_soft"):
        UpdateConfig(tau_soft=1.5)
    with pytest.raises(ConfigError, match="clock"):
        neuron_slices(np.zeros(3), "wall")


# ---------------------------------------------------------------------------------------------
# learner-side helpers
# ---------------------------------------------------------------------------------------------

def _two_caches(backend, B=3, seed=0):
    from leaky.model.network import Network

    net = Network.layered([2, 5, 4, 1], backend=backend, seed=seed)
    rng = np.random.default_rng(seed)
    dtype = net.backend.dtype
    V = net.reset(B)
    noise = lambda: (0.2 * rng.standard_normal((net.delay, B, net.n_neurons))).astype(dtype)  # noqa
    V, _, c0 = net.step(V, rng.standard_normal((B, 2)).astype(dtype), noise())
    _, _, c1 = net.step(V, rng.standard_normal((B, 2)).astype(dtype), noise())
    return net, c0, c1


@pytest.mark.parametrize("clock", ul.CLOCKS)
def test_build_transitions(clock):
    net, c0, c1 = _two_caches("numpy")
    ell, B, N = c0.alpha.shape
    reward = np.array([1.0, -2.0, 0.5])
    terminated = np.array([False, True, False])
    tr = build_transitions(c0, c1, reward, terminated, 0.9, clock, np)
    np.testing.assert_array_equal(tr.V, c0.V[:ell])
    np.testing.assert_array_equal(tr.y, c0.y)
    np.testing.assert_array_equal(tr.alpha, c0.alpha)
    alive = np.array([1.0, 0.0, 1.0])
    if clock == "causal":
        np.testing.assert_array_equal(tr.V_next, c1.V[:ell])
        np.testing.assert_array_equal(tr.y_next, c1.y)
        np.testing.assert_array_equal(tr.reward, np.tile(reward, (ell, 1)))
        np.testing.assert_allclose(tr.cont, np.tile(0.9 * alive, (ell, 1)))
    else:
        for tau in range(ell):
            nxt_V = c0.V[tau + 1] if tau < ell - 1 else c1.V[0]
            nxt_y = c0.y[tau + 1] if tau < ell - 1 else c1.y[0]
            np.testing.assert_array_equal(tr.V_next[tau], nxt_V)
            np.testing.assert_array_equal(tr.y_next[tau], nxt_y)
            last = tau == ell - 1
            np.testing.assert_array_equal(tr.reward[tau], reward if last else 0.0)
            np.testing.assert_allclose(tr.cont[tau], 0.9 ** (1 / ell) * (alive if last else 1.0))
    for field in tr[:7]:          # delta stays None: the dopamine baseline fills it in
        assert field.flags.c_contiguous and field.dtype == np.float64
    tau = neuron_slices(net.decision_step, clock)
    assert tau.dtype == np.int32
    np.testing.assert_array_equal(tau, net.decision_step if clock == "causal" else -1)


def test_network_transitions_through_cpu_face_match_reference():
    """End to end as the learner will call it: a cpu network's caches → transitions → update."""
    from leaky.model.network import StepCache

    net, c0, c1 = _two_caches("numpy", B=4, seed=2)
    c0, c1 = (StepCache(*(np.asarray(a, np.float32) for a in (c.V, c.z, c.y, c.alpha)))
              for c in (c0, c1))                          # what a cpu network's step returns
    ell, B, N = c0.alpha.shape
    tr = build_transitions(c0, c1, np.ones(B), np.zeros(B, bool), 0.95, "causal", np)
    assert all(f.dtype == np.float32 for f in tr[:7])
    lay = critic_layout(N)
    rng = np.random.default_rng(0)
    params = dict(K=net.K.astype(np.float32), bias=net.b.astype(np.float32),
                  theta=(0.1 * rng.standard_normal((N, lay.width))).astype(np.float32),
                  adam_m=np.zeros((N, lay.width), np.float32),
                  adam_v=np.zeros((N, lay.width), np.float32), diag=np.zeros((N, 3), np.float32))
    params["theta"][:, lay.h] = -0.5
    params["theta_bar"] = params["theta"].copy()
    args = dict(Vs=tr.V, ys=tr.y, alphas=tr.alpha, Vn=tr.V_next, yn=tr.y_next, r=tr.reward,
                cont=tr.cont, delta=tr.reward, tau=neuron_slices(net.decision_step, "causal"),
                mask=net.mask_np, col_lo=net.col_lo, col_hi=net.col_hi)
    cfg = UpdateConfig(lr_critic=0.01, lr_actor=0.01, optimizer="sgd")
    flags = dict(n_inputs=2, activation=0, step=1)
    want = run_face(ul.update_local_reference, args, params, cfg, flags)
    got = run_face(ul.update_local_cpu, args, params, cfg, flags)
    assert_faces_agree(got, want, args)
    assert not np.array_equal(got["K"], params["K"])


def test_dopamine_td_is_td0_with_sgd(rng):
    T, B, N = 2, 5, 4
    x, xn = rng.standard_normal((T, B, N)), rng.standard_normal((T, B, N))
    r, cont = rng.standard_normal((T, B)), rng.uniform(0, 1, (T, B))
    w, c = rng.standard_normal(N), np.array([0.3])
    w0, c0 = w.copy(), c.copy()
    delta = dopamine_td(w, c, x, xn, r, cont, 0.1)
    want = np.array([[r[t, b] + cont[t, b] * (w0 @ xn[t, b] + c0[0]) - (w0 @ x[t, b] + c0[0])
                      for b in range(B)] for t in range(T)])
    np.testing.assert_allclose(delta, want, rtol=1e-12)
    np.testing.assert_allclose(w, w0 + 0.1 * np.mean(want[..., None] * x, axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(c, c0 + 0.1 * want.mean(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# a contextual bandit: the acceptance test of the advantage critic and its actor step
# ---------------------------------------------------------------------------------------------

def _bandit(rng, n_updates, lr_actor, B=64, d=3, noise=0.3):
    """One agent neuron behind ``d`` sensors; reward −(α − a*(x))², a*(x) = A·x, done at once.

    Returns the neuron's final weights and a probe: states, its slopes u + p·x and the true
    ∂r/∂α at α = μ, −2(μ − a*(x)).
    """
    N = d + 1
    A = np.array([0.5, -0.3, 0.2])
    mask = np.zeros((N, N))
    mask[d, :d] = 1.0
    col_lo = np.zeros(N, np.int32)
    col_hi = np.array([0] * d + [d], np.int32)
    tau = np.zeros(N, np.int32)
    lay = critic_layout(N)
    K = np.zeros((N, N))
    bias = np.zeros(N)
    theta = np.zeros((N, lay.width))
    theta[:, lay.h] = -1.0
    theta_bar = theta.copy()
    adam_m, adam_v = np.zeros_like(theta), np.zeros_like(theta)
    diag = np.zeros((N, 3))
    cfg = UpdateConfig(family="advantage", view="all", baseline="own", optimizer="adam",
                       lr_critic=0.02, lr_actor=lr_actor, tau_soft=0.05)

    def states(n):
        V = np.zeros((1, n, N))
        V[0, :, :d] = rng.uniform(-1, 1, (n, d))
        V[0, :, d] = rng.uniform(-1, 1, n)          # the neuron's own (irrelevant) voltage
        return V

    for step in range(1, n_updates + 1):
        Vs = states(B)
        y = Vs[0] @ K[d] + bias[d]
        ys = np.zeros((1, B, N))
        ys[0, :, d] = y
        alphas = ys.copy()
        alphas[0, :, d] = np.tanh(y) + noise * rng.standard_normal(B)
        r = -(alphas[0, :, d] - Vs[0, :, :d] @ A) ** 2
        ul.update_local_reference(ul.Transitions(Vs, ys, alphas, Vs, ys, r[None], np.zeros((1, B))),
                                  ul.Topology(tau, mask, col_lo, col_hi), ul.ActorRows(K, bias),
                                  ul.CriticState(theta, theta_bar, adam_m, adam_v), cfg.scalars(d, 0, step),
                                  ul.UpdateOut(diag))
    probe = states(500)[0]
    mu = np.tanh(probe @ K[d] + bias[d])
    slope = theta[d, lay.u] + probe @ theta[d, lay.p]
    return K, bias, probe, slope, -2 * (mu - probe[:, :d] @ A)


def test_bandit_slope_learns_the_reward_gradient():
    """Actor frozen: the critic's slope u + p·x tracks ∂r/∂α = −2(μ − a*(x)) across states."""
    rng = np.random.default_rng(0)
    *_, slope, true = _bandit(rng, 400, lr_actor=0.0)
    assert np.corrcoef(slope, true)[0, 1] > 0.9


def test_bandit_actor_step_reduces_the_error():
    """Actor on: μ(x) approaches a*(x) (mean squared error at least 10× smaller)."""
    rng = np.random.default_rng(1)
    A = np.array([0.5, -0.3, 0.2])
    probe = rng.uniform(-1, 1, (500, 3))
    before = np.mean((0.0 - probe @ A) ** 2)            # K = 0, b = 0: μ = 0
    K, bias, *_ = _bandit(rng, 400, lr_actor=0.02)
    after = np.mean((np.tanh(probe @ K[3, :3] + bias[3]) - probe @ A) ** 2)
    assert after < before / 10


def test_cpu_workspace_reused_between_calls_gives_the_same_updates():
    """A workspace kept between calls (as LocalLearner keeps one) holds no state: two updates
    through one workspace equal two updates that each allocate their own."""
    rng = np.random.default_rng(5)
    cases = [random_update_case(rng, 8, 64, 2, 3, "causal", "all", "advantage") for _ in range(2)]
    work = ul.cpu_workspace(2, 8, 64)
    assert all(args["Vs"].shape == work[0].shape for args, *_ in cases)   # the workspace is used
    for args, params, cfg, flags in cases:
        fresh = run_face(ul.update_local_cpu, args, params, cfg, flags)
        reused = run_face(ul.update_local_cpu, args, params, cfg, flags, work=work)
        for key in OUTPUTS:
            np.testing.assert_array_equal(reused[key], fresh[key], err_msg=key)


@pytest.mark.parametrize("family, baseline, view, clock", [
    ("advantage", "own", "all", "causal"), ("advantage", "dopamine", "presynaptic", "causal"),
    ("linear", "own", "presynaptic", "causal"), ("linear", "dopamine", "all", "internal"),
    ("advantage", "own", "presynaptic", "internal")])
def test_critic_values_are_each_neurons_value_and_residual(family, baseline, view, clock, rng):
    """What a trace records per neuron (leaky.learners.records): the critic value and the residual of
    the update's own formulas, transition by transition; slice τ_n (causal) or the last one."""
    B, N, ell, n_inputs = 5, 11, 3, 2
    args, params, cfg, flags = random_update_case(rng, B, N, ell, n_inputs, clock=clock, view=view,
                                                  family=family, baseline=baseline)
    tr = ul.Transitions(args["Vs"], args["ys"], args["alphas"], args["Vn"], args["yn"], args["r"],
                        args["cont"], args["delta"])
    top = ul.Topology(args["tau"], args["mask"], args["col_lo"], args["col_hi"])
    q, td = ul.critic_values(tr, top, ul.CriticState(params["theta"], params["theta_bar"]),
                             cfg.scalars(n_inputs, flags["activation"], 1), np)
    assert q.shape == td.shape == (B, N)
    assert np.isnan(q[:, :n_inputs]).all() and np.isnan(td[:, :n_inputs]).all()
    lay = critic_layout(N)
    slices = ul.record_slices(args["tau"], ell)
    for n in range(n_inputs, N):
        one = dict(args, tau=np.full(N, slices[n], np.int32))     # neuron n's reported slice
        e = _residuals(params["theta"][n], one, n, cfg, flags["activation"], params["theta_bar"][n])
        np.testing.assert_allclose(td[:, n], e, rtol=1e-12, atol=1e-12)
        t = slices[n]
        feat = (args["mask"][n] != 0) if view == "presynaptic" else np.ones(N, bool)
        x, th = args["Vs"][t] * feat, params["theta"][n]
        a = args["alphas"][t, :, n]
        d = a - ACT[flags["activation"]](args["ys"][t, :, n])
        A = d * (th[lay.u] + x @ th[lay.p]) + 0.5 * th[lay.h] * d * d if family == "advantage" \
            else th[lay.u] * d
        if baseline == "dopamine":
            want = A
        elif family == "advantage":
            want = x @ th[lay.w] + th[lay.c] + A
        else:
            want = x @ th[lay.w] + th[lay.u] * a + th[lay.c]
        np.testing.assert_allclose(q[:, n], want, rtol=1e-12, atol=1e-12)
