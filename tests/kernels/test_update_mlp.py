"""The fused MLP-critic update (kernels/update_mlp/).

The cpu face against the float64 reference on awkward shapes (hypothesis): compiled for float64
it must agree to 1e-12 (the same algorithm), compiled for float32 within a stated roundoff bound.
The reference against central finite differences in float64: the critic step is the
semi-gradient of ½δ², ``slopes_mlp`` is ∂Q/∂α, the actor step is the gradient of
``mean Q_n(x, σ(K_n·V + b_n))`` in the row of K. Invariants (sensors, actor off, the
presynaptic view), the layout and initialisation, and TD policy evaluation on a Markov chain of
voltages. The cuda face runs the same cases in tests/cudasim/test_update_mlp_cuda.py.
"""

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leaky.core.errors import ConfigError
from leaky.kernels import update_mlp as um
from leaky.learners.critics import MLPUpdateConfig, init_mlp_critics
from leaky.kernels.update_mlp import mlp_layout, unpack_mlp
from tests.kernels.update_local_cases import call_update, column_ranges
from tests.kernels.update_mlp_cases import (ACT, MUTABLE, OUTPUTS, assert_faces_agree,
                                          random_mlp_case, run_face, tolerance)

# ---------------------------------------------------------------------------------------------
# cpu face against the reference
# ---------------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(B=st.integers(1, 5), N=st.integers(2, 13), H=st.integers(1, 9), ell=st.integers(1, 3),
       n_inputs=st.integers(0, 3), clock=st.sampled_from(um.CLOCKS),
       view=st.sampled_from(sorted(um.VIEWS)), optimizer=st.sampled_from(sorted(um.OPTIMIZERS)),
       activation=st.integers(0, 2), actor=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_cpu_face_matches_reference(B, N, H, ell, n_inputs, clock, view, optimizer, activation,
                                    actor, seed):
    rng = np.random.default_rng(seed)
    case = random_mlp_case(rng, B, N, H, ell, min(n_inputs, N - 1), clock, view, optimizer,
                           activation, actor)
    want = run_face(um.update_mlp_reference, *case)
    exact = run_face(um.update_mlp_cpu, *case, dtype=np.float64)
    assert_faces_agree(exact, want, 1e-12)           # float64: the same algorithm, to roundoff
    got = run_face(um.update_mlp_cpu, *case)
    assert_faces_agree(got, want, tolerance(case[0], H))


@pytest.mark.parametrize("B, N, H, ell, clock, optimizer", [
    (1, 3, 1, 1, "causal", "sgd"),        # smallest: one transition, one hidden unit
    (2, 9, 5, 2, "internal", "adam"),
    (33, 20, 7, 2, "causal", "sgd"),
    (16, 27, 16, 3, "internal", "adam"),   # 4.4e6 multiply-adds: the parallel compilation
])
def test_cpu_face_serial_and_parallel_paths(B, N, H, ell, clock, optimizer):
    rng = np.random.default_rng(B * 100 + N)
    S = (ell if clock == "internal" else 1) * B
    assert (um.update_work(S, N, H) >= um.PARALLEL_MIN_WORK) == (N == 27)
    case = random_mlp_case(rng, B, N, H, ell, 2, clock, "presynaptic", optimizer)
    want = run_face(um.update_mlp_reference, *case)
    got = run_face(um.update_mlp_cpu, *case)
    assert_faces_agree(got, want, tolerance(case[0], H))


@pytest.mark.parametrize("B, N, H, ell, clock, view", [
    (37, 70, 17, 2, "causal", "presynaptic"),   # S past a block of 16, N past the 32-feature
    (21, 45, 33, 3, "internal", "all"),          # gradient tile, H past one 16-unit tile
    (16, 64, 16, 2, "mixed", "presynaptic"),     # whole blocks; slices and all T·B rows at once
    (3, 40, 5, 1, "mixed", "all"),
])
def test_cpu_face_blocks_tiles_and_padding(B, N, H, ell, clock, view):
    """Shapes past one tile in every direction: transitions in blocks of 16 (the last one
    padded), features in gradient tiles of 32 (V's rows padded, the presynaptic window shifted
    at the right edge), hidden units in tiles of 16 (zero units past H), and neurons on both
    clocks in one call (panels per slice and over all T·B rows)."""
    rng = np.random.default_rng(B * 1000 + N)
    case = random_mlp_case(rng, B, N, H, ell, 2, "internal" if clock == "internal" else "causal",
                           view, "adam", density=0.3)
    args = case[0]
    if clock == "mixed":
        args["tau"][rng.uniform(size=N) < 0.5] = -1
    if view == "presynaptic":          # a mask row that ends at the last column
        args["mask"][N - 2, N - 3:] = 1.0
        args["col_lo"], args["col_hi"] = column_ranges(args["mask"])
    want = run_face(um.update_mlp_reference, *case)
    assert_faces_agree(run_face(um.update_mlp_cpu, *case, dtype=np.float64), want, 1e-12)
    assert_faces_agree(run_face(um.update_mlp_cpu, *case), want, tolerance(args, H))


def test_cpu_face_accepts_none_moments_under_sgd(rng):
    args, params, cfg, flags = random_mlp_case(rng, 3, 7, 4, 2, 1, optimizer="sgd")
    want = run_face(um.update_mlp_reference, args, params, cfg, flags)
    p = {k: v.astype(np.float32) for k, v in params.items()}
    a = {k: (v if v.dtype.kind == "i" else v.astype(np.float32)) for k, v in args.items()}
    p["adam_m"] = p["adam_v"] = None
    call_update(um.update_mlp_cpu, a, p, cfg, 1, 0, 1)
    for key in ("K", "bias", "theta", "theta_bar", "diag"):
        np.testing.assert_allclose(p[key], want[key], rtol=0, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------------------------------------
# the reference against finite differences (float64)
# ---------------------------------------------------------------------------------------------

def q_direct(theta_n, H, X, a):
    """Q of one critic from the named views (independent of the packed offsets the faces use)."""
    p = unpack_mlp(theta_n[None, :], H)
    W1, b1, W2, b2, w3, b3 = (p[k][0] for k in ("W1", "b1", "W2", "b2", "w3", "b3"))
    N = X.shape[1]
    h1 = np.tanh(X @ W1[:, :N].T + np.outer(a, W1[:, N]) + b1)
    h2 = np.tanh(h1 @ W2.T + b2)
    return h2 @ w3 + b3


def central_difference(f, x, h=1e-6):
    """∂f/∂x by central differences, entry by entry (f scalar, x a float64 vector)."""
    grad = np.empty_like(x)
    for i in range(x.size):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (f(xp) - f(xm)) / (2 * h)
    return grad


@pytest.mark.parametrize("clock, view", [("causal", "all"), ("internal", "presynaptic")])
def test_critic_step_is_the_semi_gradient_of_half_squared_td(clock, view):
    """SGD with lr 1, no target move: Δθ_n = −∂/∂θ_n mean ½(r + cont·Q̄ − Q_θ)², Q̄ held fixed."""
    rng = np.random.default_rng(3)
    B, N, H, ell, n_in = 3, 5, 3, 2, 1
    args, params, cfg, flags = random_mlp_case(rng, B, N, H, ell, n_in, clock, view, "sgd",
                                               lr_critic=1.0, tau_soft=0.0, actor=False)
    got = run_face(um.update_mlp_reference, args, params, cfg, flags)
    for n in range(n_in, N):
        ts = np.arange(ell) if args["tau"][n] < 0 else [args["tau"][n]]
        feat = args["mask"][n] != 0 if view == "presynaptic" else np.ones(N, dtype=bool)
        X = args["Vs"][ts].reshape(-1, N) * feat
        Xn = args["Vn"][ts].reshape(-1, N) * feat
        a = args["alphas"][ts, :, n].reshape(-1)
        target = (args["r"][ts].reshape(-1) + args["cont"][ts].reshape(-1)
                  * q_direct(params["theta_bar"][n], H, Xn, np.tanh(args["yn"][ts, :, n].reshape(-1))))

        def loss(theta_n):
            return np.mean(0.5 * (target - q_direct(theta_n, H, X, a)) ** 2)

        step = got["theta"][n] - params["theta"][n]
        np.testing.assert_allclose(step, -central_difference(loss, params["theta"][n]),
                                   rtol=1e-6, atol=1e-8)
        delta = target - q_direct(params["theta"][n], H, X, a)
        np.testing.assert_allclose(got["diag"][n, :2], [delta.mean(), np.abs(delta).mean()],
                                   rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(got["theta_bar"], params["theta_bar"])   # tau_soft = 0


@pytest.mark.parametrize("view", sorted(um.VIEWS))
def test_slopes_are_dq_dalpha_at_the_greedy_action(view, rng):
    B, N, H, n_in = 4, 6, 5, 2
    args, params, _, _ = random_mlp_case(rng, B, N, H, 1, n_in)
    V, y = args["Vs"][0], args["ys"][0]
    got = um.slopes_mlp_reference(V, y, args["mask"], params["theta"], n_in, 0, view)
    for n in range(n_in, N):
        feat = args["mask"][n] != 0 if view == "presynaptic" else np.ones(N, dtype=bool)
        for b in range(B):
            def q(alpha):
                return q_direct(params["theta"][n], H, (V[b] * feat)[None, :], alpha)[0]
            np.testing.assert_allclose(got[b, n], central_difference(q, np.tanh(y[b, n:n + 1]))[0],
                                       rtol=1e-6, atol=1e-9)
    assert (got[:, :n_in] == 0).all()


@pytest.mark.parametrize("clock, activation", [("causal", 0), ("internal", 2)])
def test_actor_step_is_the_gradient_of_q_through_the_neurons_own_weights(clock, activation):
    """With the critic frozen (lr_critic 0) and y = K V + b (no inhibition):
    ΔK[n] = ∂/∂K[n] mean_b Q_n(x_b, σ(K[n]·V_b + b_n)) on the mask, Δb_n likewise."""
    rng = np.random.default_rng(11)
    B, N, H, ell, n_in = 3, 6, 4, 2, 1
    args, params, cfg, flags = random_mlp_case(rng, B, N, H, ell, n_in, clock, "all", "sgd",
                                               activation, lr_critic=0.0, lr_actor=1.0)
    args["ys"] = args["Vs"] @ params["K"].T + params["bias"]
    got = run_face(um.update_mlp_reference, args, params, cfg, flags)
    np.testing.assert_array_equal(got["theta"], params["theta"])
    sig = ACT[activation]
    for n in range(n_in, N):
        ts = np.arange(ell) if args["tau"][n] < 0 else [args["tau"][n]]
        V = args["Vs"][ts].reshape(-1, N)

        def J(kb):
            return q_direct(params["theta"][n], H, V, sig(V @ kb[:N] + kb[N])).mean()

        grad = central_difference(J, np.append(params["K"][n], params["bias"][n]))
        on = args["mask"][n] != 0
        np.testing.assert_allclose((got["K"][n] - params["K"][n])[on], grad[:N][on],
                                   rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(got["K"][n][~on], params["K"][n][~on])
        np.testing.assert_allclose(got["bias"][n] - params["bias"][n], grad[N], rtol=1e-6, atol=1e-9)


def test_diag_slope_is_the_mean_slope_of_the_updated_critic(rng):
    args, params, cfg, flags = random_mlp_case(rng, 4, 7, 3, 1, 2, "causal", "presynaptic")
    got = run_face(um.update_mlp_reference, args, params, cfg, flags)
    slopes = um.slopes_mlp_reference(args["Vs"][0], args["ys"][0], args["mask"], got["theta"], 2,
                                     0, "presynaptic")
    np.testing.assert_allclose(got["diag"][:, 2], slopes.mean(axis=0), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------------

def test_actor_off_leaves_the_weights_and_nothing_else_changes(rng):
    args, params, cfg, flags = random_mlp_case(rng, 3, 8, 5, 2, 2, "internal")
    on = run_face(um.update_mlp_cpu, args, params, cfg, flags)
    off_cfg = MLPUpdateConfig(**{**cfg.__dict__, "actor": False})
    off = run_face(um.update_mlp_cpu, args, params, off_cfg, flags)
    np.testing.assert_array_equal(off["K"], params["K"])
    np.testing.assert_array_equal(off["bias"], params["bias"])
    assert not np.array_equal(on["K"][2:], params["K"][2:])
    for key in ("theta", "theta_bar", "adam_m", "adam_v", "diag"):
        np.testing.assert_array_equal(off[key], on[key], err_msg=key)


@pytest.mark.parametrize("face", [um.update_mlp_reference, um.update_mlp_cpu])
def test_sensors_are_not_agents(face, rng):
    n_in = 3
    args, params, cfg, flags = random_mlp_case(rng, 2, 6, 3, 2, n_in)
    got = run_face(face, args, params, cfg, flags)
    for key in MUTABLE:
        np.testing.assert_array_equal(got[key][:n_in], params[key][:n_in], err_msg=key)
        assert not np.array_equal(got[key][n_in:], params[key][n_in:]), key
    assert (got["diag"][:n_in] == 0).all()


def test_presynaptic_view_ignores_voltages_outside_the_mask_row(rng):
    N, n = 6, 2
    args, params, cfg, flags = random_mlp_case(rng, 3, N, 4, 2, 1, "internal", "presynaptic")
    args["mask"][n] = [1, 0, 1, 0, 1, 0]
    args["col_lo"], args["col_hi"] = column_ranges(args["mask"])
    base = run_face(um.update_mlp_reference, args, params, cfg, flags)
    moved = {k: v.copy() for k, v in args.items()}
    for m in (1, 3, 5):
        moved["Vs"][..., m] += 0.5
        moved["Vn"][..., m] -= 0.5
    other = run_face(um.update_mlp_reference, moved, params, cfg, flags)
    for key in OUTPUTS:
        np.testing.assert_array_equal(other[key][n], base[key][n], err_msg=key)
    assert not np.array_equal(other["theta"][1], base["theta"][1])   # a neuron that sees them


# ---------------------------------------------------------------------------------------------
# layout, initialisation, configuration, errors
# ---------------------------------------------------------------------------------------------

def test_layout_views_and_initialisation():
    N, H = 5, 3
    crit = init_mlp_critics(N, H, seed=0)
    lay = mlp_layout(N, H)
    assert crit.theta.shape == (N, lay.width) == (N, H * (N + 1) + H * H + 3 * H + 1)
    assert crit.theta.dtype == np.float64 and crit.n_neurons == N and crit.hidden == H
    p = crit.params()
    shapes = {k: v.shape for k, v in p.items()}
    assert shapes == {"W1": (N, H, N + 1), "b1": (N, H), "W2": (N, H, H), "b2": (N, H),
                      "w3": (N, H), "b3": (N,)}
    for v in p.values():
        assert np.shares_memory(v, crit.theta)
    assert np.abs(p["W1"]).max() <= 1 / np.sqrt(N + 1) and np.abs(p["w3"]).max() <= 1 / np.sqrt(H)
    np.testing.assert_array_equal(crit.theta_bar, crit.theta)
    p["W2"][1, 2, 0] = 7.0                                # row 1, unit 2, input 0
    assert crit.theta[1, lay.W2 + 2 * H] == 7.0
    assert unpack_mlp(crit.theta[1:2], H)["W2"][0, 2, 0] == 7.0     # one row: N from the width
    assert not crit.adam_m.any() and not crit.adam_v.any()
    np.testing.assert_array_equal(init_mlp_critics(N, H, seed=0).theta[0], crit.theta[0])
    assert init_mlp_critics(N, H, seed=0, dtype=np.float32).theta.dtype == np.float32


@pytest.mark.parametrize("N, H", [(1, 1), (7, 1), (3, 64), (40, 9)])
def test_hidden_size_is_recovered_from_the_row_width(N, H):
    assert um.mlp_hidden(N, mlp_layout(N, H).width) == H


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="fits no hidden size"):
        um.mlp_hidden(5, 100)
    with pytest.raises(ConfigError, match="view"):
        MLPUpdateConfig(view="some")
    with pytest.raises(ConfigError, match="tau_soft"):
        MLPUpdateConfig(tau_soft=2.0)
    with pytest.raises(ConfigError, match="step"):
        MLPUpdateConfig().adam_scalars(0)
    rng = np.random.default_rng(0)
    args, params, cfg, flags = random_mlp_case(rng, 1, 3, um.MAX_HIDDEN + 1, 1, 1)
    with pytest.raises(ValueError, match="MAX_HIDDEN"):
        run_face(um.update_mlp_cuda, args, params, cfg, flags)


# ---------------------------------------------------------------------------------------------
# TD policy evaluation on a Markov chain of voltages
# ---------------------------------------------------------------------------------------------

def test_td_evaluates_a_fixed_policy_on_a_markov_chain():
    """A cycle of 5 voltage states, reward R(s), γ = 0.8, one agent neuron acting μ(s) + noise.

    The actions do not change the chain, so Q_n(x_s, μ_s) must converge to the closed form
    V = (I − γP)⁻¹R. Measured (1500 Adam steps of 16 transitions): the TD loss (mean ½δ² over
    the states at α = μ) falls from 0.27 to 2e-6, and the worst value error is 0.3 % of max|V|;
    asserted: a fall by 100× and 2 %.
    """
    rng = np.random.default_rng(0)
    N, n_in, H, n_states, gamma, B = 4, 3, 16, 5, 0.8, 16
    X = rng.uniform(-1, 1, (n_states, N))
    y_state = 0.7 * rng.standard_normal(n_states)
    X[:, n_in] = np.tanh(y_state)                    # the agent's own voltage (leak 1)
    R = rng.uniform(-1, 1, n_states)
    nxt = (np.arange(n_states) + 1) % n_states
    P = np.eye(n_states)[nxt]
    value = np.linalg.solve(np.eye(n_states) - gamma * P, R)

    crit = init_mlp_critics(N, H, seed=1, dtype=np.float32)
    K = np.zeros((N, N), np.float32)
    bias = np.zeros(N, np.float32)
    mask = np.ones((N, N), np.float32)
    col_lo, col_hi = column_ranges(mask)
    tau = np.zeros(N, np.int32)
    diag = np.zeros((N, 3), np.float32)
    cfg = MLPUpdateConfig(optimizer="adam", lr_critic=3e-3, tau_soft=0.05, actor=False)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)[None]  # noqa: E731

    def td_loss():
        theta = crit.theta[n_in].astype(np.float64)
        q = q_direct(theta, H, X, np.tanh(y_state))
        return np.mean(0.5 * (R + gamma * q[nxt] - q) ** 2), q

    loss0, _ = td_loss()
    start = time.perf_counter()
    for step in range(1, 1501):
        s = rng.integers(0, n_states, B)
        ys = np.zeros((B, N))
        ys[:, n_in] = y_state[s]
        yn = np.zeros((B, N))
        yn[:, n_in] = y_state[nxt[s]]
        alphas = np.tanh(ys) + 0.1 * rng.standard_normal((B, N))
        tr = um.Transitions(f32(X[s]), f32(ys), f32(alphas), f32(X[nxt[s]]), f32(yn), f32(R[s]),
                            f32(np.full(B, gamma)))
        um.update_mlp_cpu(tr, um.Topology(tau, mask, col_lo, col_hi), um.ActorRows(K, bias),
                          um.CriticState(crit.theta, crit.theta_bar, crit.adam_m, crit.adam_v),
                          cfg.scalars(n_in, 0, step), um.UpdateOut(diag))
    elapsed = time.perf_counter() - start
    loss, q = td_loss()
    assert loss < loss0 / 100, (loss0, loss)
    np.testing.assert_allclose(q, value, atol=0.02 * np.abs(value).max())
    assert not K.any() and not bias.any()            # the policy stayed fixed
    assert elapsed < 20


@pytest.mark.parametrize("view, clock", [("all", "causal"), ("presynaptic", "causal"),
                                         ("presynaptic", "internal")])
def test_critic_values_are_each_neurons_q_and_td_error(view, clock):
    """What a trace records per neuron (leaky.learners.records): Q_n(x, α) and
    δ = r + cont·Q̄_n(x', μ_n(x')) − Q_n(x, α), one critic at a time through the reference."""
    from leaky.kernels.update_local import Transitions, record_slices

    rng = np.random.default_rng(11)
    B, N, H, ell, n_inputs = 4, 9, 5, 3, 2
    args, params, cfg, flags = random_mlp_case(rng, B, N, H, ell, n_inputs, clock=clock, view=view)
    tr = Transitions(args["Vs"], args["ys"], args["alphas"], args["Vn"], args["yn"], args["r"],
                     args["cont"])
    top = um.Topology(args["tau"], args["mask"], args["col_lo"], args["col_hi"])
    q, td = um.critic_values(tr, top, um.CriticState(params["theta"], params["theta_bar"]),
                             cfg.scalars(n_inputs, flags["activation"], 1), np)
    assert np.isnan(q[:, :n_inputs]).all() and np.isnan(td[:, :n_inputs]).all()
    act = ACT[flags["activation"]]
    for n, t in zip(range(n_inputs, N), record_slices(args["tau"], ell)[n_inputs:]):
        feat = (args["mask"][n] != 0) if view == "presynaptic" else np.ones(N, bool)
        Q, _, _ = um.mlp_forward_reference(params["theta"][n], np.column_stack(
            [args["Vs"][t] * feat, args["alphas"][t, :, n]]), H)
        Qbar, _, _ = um.mlp_forward_reference(params["theta_bar"][n], np.column_stack(
            [args["Vn"][t] * feat, act(args["yn"][t, :, n])]), H)
        np.testing.assert_allclose(q[:, n], Q, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(td[:, n], args["r"][t] + args["cont"][t] * Qbar - Q,
                                   rtol=1e-12, atol=1e-12)
