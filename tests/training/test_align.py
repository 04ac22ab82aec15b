"""``leaky align`` (the paper's Experiment 1): the statistics, the estimators' row gradients
against the kernels' own actor steps, the run and the command line."""

import json
import math

import numpy as np
import pytest

from leaky import Network, NetworkConfig
from leaky.training.align import (AlignConfig, CriticEstimator, SharedEstimator, align, measure, pearson,
                         plot_alignment, row_statistics, _forward_flags)
from leaky.cli import main
from leaky.learners.ddpg import DDPGConfig, DDPGLearner, actor_forward
from leaky.core.errors import ConfigError
from leaky.kernels import update_local as ul
from leaky.learners import critics
from leaky.kernels import update_mlp as um
from leaky.learners.shared_critic import layer_groups

TINY = dict(steps=300, hidden=(4, 3), batch_size=32, learning_starts=64, every=40)


def test_row_statistics_of_known_rows():
    R = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.0, -1.0, 0.0]])
    Rb = np.array([0.0, 3.0, 0.5])
    mask = np.array([[0, 0, 0], [1, 1, 0], [1, 1, 0]])   # column 2 is masked out of rows 1 and 2
    G = np.array([[0.0, 0.0, 0.0], [2.0, 4.0, 9.0], [-1.0, 1.0, 9.0]])   # 9: outside the mask, ignored
    Gb = np.array([0.0, 6.0, -0.5])
    s = row_statistics(G, Gb, R, Rb, mask, np.array([1, 2]))
    np.testing.assert_allclose(s["row_cos"], [1.0, -1.0])
    np.testing.assert_allclose(s["row_corr"], [1.0, -1.0])
    np.testing.assert_allclose(s["sign"], [1.0, 0.0])
    assert math.isnan(pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))   # a constant slope: undefined
    np.testing.assert_allclose(pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]), 0.9933, atol=1e-4)


def _setup(seed=0, B=16):
    """A float64 layered network, DDPG on it, a replay minibatch and its greedy forward pass."""
    net = Network(NetworkConfig.layered([3, 5, 4, 1], seed=seed), backend="numpy")
    ddpg = DDPGLearner(net, DDPGConfig(hidden=(8,), batch_size=B, learning_starts=0, buffer_size=64,
                                       seed=seed))
    rng = np.random.default_rng(seed)
    N = net.n_neurons
    obs = rng.standard_normal((B, 3))
    V = np.zeros((B, N))
    ddpg.observe(obs, rng.uniform(-1, 1, (B, 1)), rng.standard_normal(B), rng.standard_normal((B, 3)),
                 np.zeros(B, bool), np.zeros(B, bool), V, V)
    batch = ddpg.buffer.sample(B, np.random.default_rng(1))
    tape = actor_forward(ddpg.actor_params(), batch.V, net.encode(batch.obs), ell=net.delay, xp=np,
                         **_forward_flags(net))
    return net, ddpg, batch, tape


@pytest.mark.parametrize("name", ["advantage", "linear", "mlp"])
def test_critic_row_gradient_is_the_kernels_actor_step(name):
    """The per-neuron critics' G is the step their own update kernel takes with lr_actor = 1 and
    the critic frozen (lr_critic = 0): the alignment measures the rule that trains, not a
    re-derivation of it. float64 reference faces: rtol 1e-9."""
    net, ddpg, batch, tape = _setup()
    cfg = AlignConfig(estimators=(name,), backend="numpy")
    est = CriticEstimator(name, net, cfg, seed=3)
    rng = np.random.default_rng(5)
    est.learner.theta[...] = 0.3 * rng.standard_normal(est.learner.theta.shape)
    G, Gb, slope = est.gradient(batch, tape)
    ell = net.delay
    K, b = net.K.copy(), net.b.copy()
    theta = est.learner.theta.copy()
    tau = critics.neuron_slices(net.decision_step, est.local.clock).astype(np.int32)
    alphas = np.tanh(tape.y)                          # greedy: d = 0, the slope is taken at μ
    zeros = np.zeros(tape.y.shape[:2])
    state = (ul.Transitions(tape.V[:ell], tape.y, alphas, tape.V[:ell], tape.y, zeros, zeros),
             ul.Topology(tau, net.mask, net.col_lo, net.col_hi), ul.ActorRows(K, b),
             ul.CriticState(theta, theta.copy(), np.zeros_like(theta), np.zeros_like(theta)))
    out = ul.UpdateOut(np.zeros((net.n_neurons, 3)))
    if name == "mlp":
        ucfg = critics.MLPUpdateConfig(view=est.local.view, optimizer="sgd", lr_critic=0.0, lr_actor=1.0,
                                       tau_soft=0.0)
        um.update_mlp_reference(*state, ucfg.scalars(3, 0, 1), out)
    else:
        ucfg = critics.UpdateConfig(family=est.local.family, view=est.local.view, optimizer="sgd",
                                    lr_critic=0.0, lr_actor=1.0, tau_soft=0.0)
        ul.update_local_reference(*state, ucfg.scalars(3, 0, 1), out)
    np.testing.assert_allclose(G, K - net.K, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Gb, b - net.b, rtol=1e-9, atol=1e-12)
    assert np.abs(G).sum() > 0 and np.all(slope[:, :3] == 0)


def test_exact_credit_aligns_exactly_and_perturbation_converges():
    """Output neurons know their own ∂a/∂α under every shared rule: their rows are BPTT's
    (cos = corr = sign = 1). Hidden rows of perturb approach BPTT's as k grows."""
    net, ddpg, batch, tape = _setup(B=16)
    cfg = AlignConfig(backend="numpy")
    ests = [SharedEstimator(name, net, ddpg, cfg, seed=i) for i, name in
            enumerate(["perturb1", "perturb64", "dfa"])]
    groups = layer_groups(net)
    row = measure(ests, ddpg, batch, groups)
    out = groups["out"] - 3
    for name in ("perturb1", "perturb64", "dfa"):
        assert row[f"{name}.cos_out"] == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(row[f"{name}.row_corr"][out], 1.0, atol=1e-9)
        np.testing.assert_allclose(row[f"{name}.sign"][out], 1.0)
    assert row["perturb64.cos_all"] > row["perturb1.cos_all"]
    assert row["perturb64.cos_all"] > 0.7


def test_estimators_do_not_change_ddpgs_run():
    """Actor steps off: the network DDPG trains, and so its returns and losses, are the same
    whichever estimators watch it (every random stream is its own)."""
    a = align(AlignConfig(**TINY, estimators=("perturb1",)))
    b = align(AlignConfig(**TINY, estimators=("advantage", "feedback", "linear")))
    assert a.updates == b.updates > 0
    np.testing.assert_array_equal(a.table["step"], b.table["step"])
    np.testing.assert_array_equal(a.table["critic_loss"], b.table["critic_loss"])
    assert a.episode_returns == b.episode_returns
    s = b.summary()
    assert set(s) == {"advantage", "feedback", "linear"}
    assert set(s["advantage"]) == {"tau0", "tau1", "out", "all"}
    assert s["advantage"]["tau0"]["slope_corr"]["n"] > 0
    assert s["linear"]["tau0"]["slope_corr"]["n"] == 0          # constant slope: pooled only
    assert s["linear"]["tau0"]["slope_corr_pooled"]["n"] > 0
    assert s["feedback"]["out"]["row_cos"]["median"] == pytest.approx(1.0, abs=1e-5)


def test_command_prints_layers_and_writes_trace_and_png(tmp_path, capsys):
    from leaky.trace import TraceReader

    trace, png = tmp_path / "run.h5", tmp_path / "align.png"
    argv = ["align", "--steps", "200", "--hidden", "4", "3", "--batch-size", "32", "--learning-starts",
            "48", "--every", "40", "--estimators", "mlp,perturb8", "--no-progress", "--json",
            "--trace", str(trace), "--png", str(png)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["measurements"] >= 5
    assert set(out["estimators"]) == {"mlp", "perturb8"}
    for layer in ("tau0", "tau1", "out", "all"):
        assert -1.0 <= out["estimators"]["perturb8"][layer]["row_corr"]["median"] <= 1.0
    assert png.stat().st_size > 10_000
    with TraceReader(trace) as tr:
        t = tr.training()
    assert t["mlp.row_corr"].shape == (out["measurements"], 8)      # 4 + 3 hidden + 1 output
    assert t["perturb8.cos_all"].shape == (out["measurements"],)
    assert main(argv[:10] + ["--steps", "120", "--every", "40", "--estimators", "perturb8", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "perturb8   tau1" in text and "row corr" in text


@pytest.mark.parametrize("flag, value, expected", [
    ("--estimators", "advantage,nope", "--estimators: got 'advantage,nope', expected distinct names from"),
    ("--every", "0", "--every: got 0, expected an int >= 1 (AlignConfig.every)"),
])
def test_bad_options_are_one_line(flag, value, expected, capsys):
    assert main(["align", flag, value, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("leaky align: error: ") and expected in err[0]


def test_config_checks_its_fields():
    with pytest.raises(ConfigError, match="AlignConfig.noise_std"):
        AlignConfig(noise_std=0.0)
    assert AlignConfig(estimators="mlp,dfa").estimators == ("mlp", "dfa")


def test_plot_of_an_empty_table_is_written(tmp_path):
    groups = {"tau0": np.array([3, 4]), "out": np.array([5])}
    table = {"step": np.zeros(0, dtype=np.int64), "dfa.row_corr": np.zeros((0, 3))}
    plot_alignment(table, groups, 3, ("dfa",), str(tmp_path / "empty.png"))
    assert (tmp_path / "empty.png").exists()
