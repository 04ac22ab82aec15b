"""``leaky bench``: runs, reports rates consistent with its counts, and refuses a wrong kernel."""

import json

import numpy as np
import pytest

from leaky import bench
from leaky.bench.timing import _check
from leaky.cli import main
from leaky.kernels import step as step_kernels
from leaky.kernels import update_local as ul


def _run_json(capsys, *argv):
    assert main(["bench", *argv, "--quick", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "cpu" in data["machine"] and "threads" in data["machine"]
    for r in data["rows"]:
        assert r["seconds"] > 0
        assert r["gflops"] == pytest.approx(r["flops"] / r["seconds"] / 1e9, rel=1e-9)
        assert r["gbps"] == pytest.approx(r["bytes"] / r["seconds"] / 1e9, rel=1e-9)
    return data["rows"]


def test_bench_step_quick_json(capsys):
    rows = _run_json(capsys, "step")
    kernels = {(r["kernel"], r["backend"]) for r in rows}
    assert {("fused", "cpu"), ("composed", "numpy"), ("sgemm (ceiling)", "numpy"),
            ("sgemm blocks", "numpy")} <= kernels
    for r in rows:
        assert r["gflops"] > 0 and r["ceiling_fraction"] > 0
        if "dense" in r["note"] or "(ceiling)" in r["kernel"]:
            assert r["flops"] == 2.0 * r["delay"] * r["B"] * r["N"] * r["N"]
    # a parallel schedule is also timed serially, so its gain is visible
    for B, N, ell in bench.QUICK_GRID:
        if step_kernels.cpu_schedule(B, ell, N * N)[0] != "serial":
            notes = {r["note"] for r in rows if r["kernel"] == "fused" and (r["B"], r["N"]) == (B, N)}
            assert any("schedule serial" in n for n in notes)


def test_bench_update_quick_json(capsys):
    rows = _run_json(capsys, "update")
    kernels = {(r["suite"], r["kernel"], r["backend"]) for r in rows}
    families = {r["note"].split(";")[0] for r in rows if r["kernel"] in ("fused", "composed")}
    assert families == {"advantage critics", "mlp critics H = 16"}
    assert {("update", "fused", "cpu"), ("update", "composed", "numpy"),
            ("update", "roofline (ceiling)", "numpy"), ("update", "local learner", "cpu"),
            ("update", "ddpg learner", "cpu")} <= kernels
    learners = {r["kernel"]: r for r in rows if "learner" in r["kernel"] or r["kernel"] == "sb3 ddpg"}
    local, ddpg = learners["local learner"], learners["ddpg learner"]
    assert local["samples_per_s"] == pytest.approx(local["B"] / local["seconds"])
    assert local["vs_baseline"] == pytest.approx(ddpg["seconds"] / local["seconds"])
    # equal parameter counts, to within one hidden unit of the DDPG critic
    n_local, n_ddpg = (int(r["note"].split()[0]) for r in (local, ddpg))
    H = int(ddpg["note"].split("critic ")[1].split("-")[0])
    assert abs(n_local - n_ddpg) <= 2 * H + 8
    if "sb3 ddpg" in learners:        # stable-baselines3 installed: its DDPG at the same size
        sb3 = learners["sb3 ddpg"]
        H3 = int(sb3["note"].split("critic ")[1].split("-")[0])
        assert abs(int(sb3["note"].split()[0]) - n_local) <= 4 * H3


def test_sb3_parameter_count_formula():
    # SB3's DDPG, net_arch [H, H], obs 3, action 1: actor 3→H→H→1 and critic 4→H→H→1
    H = 5
    assert bench.sb3_params(H, 3, 1) == (4 * H + (H + 1) * H + H + 1) + (5 * H + (H + 1) * H + H + 1)


def test_bench_train_splits_the_loop(capsys):
    rows = _run_json(capsys, "train")
    loops = {r["kernel"]: r for r in rows}
    assert {"loop local", "loop local + trace", "loop ddpg"} <= set(loops)
    for r in rows:
        assert set(r["split"]) == {"env", "act", "learn", "logging", "other"}
        assert sum(r["split"].values()) == pytest.approx(1.0, abs=1e-6)
        assert r["samples_per_s"] == pytest.approx(r["B"] / r["seconds"], rel=1e-6)
    assert loops["loop local"]["split"]["logging"] == 0 < loops["loop local + trace"]["split"]["logging"]


def test_bench_table_and_unknown_suite(capsys):
    assert main(["bench", "ceiling"]) == 0
    out = capsys.readouterr().out
    assert "sgemm" in out and "copy" in out
    assert main(["bench", "warp"]) == 2
    if bench._trace_module() is None:
        assert main(["bench", "trace"]) == 2
    else:
        assert "trace" in bench.SUITES


def test_check_refuses_a_wrong_result():
    want = tuple(np.zeros((2, 3, 4)) for _ in range(4))
    got = tuple(w.astype(np.float32) for w in want)
    _check(got, want, 4, "same")
    bad = (got[0] + 1e-2,) + got[1:]
    with pytest.raises(AssertionError, match="differs from the reference"):
        _check(bad, want, 4, "bad")


@pytest.mark.parametrize("family", ["advantage", "linear"])
@pytest.mark.parametrize("clock", ["causal", "internal"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_composed_update_is_the_reference(family, clock, optimizer):
    """The alternative the update faces are timed against computes the same update."""
    from tests.kernels.update_local_cases import call_update, random_update_case, run_face

    rng = np.random.default_rng(7)
    args, params, cfg, flags = random_update_case(rng, 9, 23, 3, 2, clock=clock, family=family,
                                                  optimizer=optimizer)
    want = run_face(ul.update_local_reference, args, params, cfg, flags)
    p = {k: np.array(v, dtype=np.float32) for k, v in params.items()}
    a = {k: (v if v.dtype.kind == "i" else v.astype(np.float32)) for k, v in args.items()}
    call_update(lambda *t: ul.update_local_composed(*t[:5]), a, p, cfg, flags["n_inputs"],
                flags["activation"], flags["step"])
    for key in ("K", "bias", "theta", "theta_bar") + (("adam_m", "adam_v") if optimizer == "adam" else ()):
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(p[key], want[key], rtol=0, atol=1e-5 * scale, err_msg=key)


@pytest.mark.parametrize("clock", ["causal", "internal"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("actor", [True, False])
def test_composed_mlp_update_is_the_reference(clock, optimizer, actor):
    from leaky.kernels import update_mlp as um
    from tests.kernels.update_local_cases import call_update
    from tests.kernels.update_mlp_cases import random_mlp_case, run_face

    rng = np.random.default_rng(5)
    args, params, cfg, flags = random_mlp_case(rng, 7, 19, 5, 3, 2, clock=clock, optimizer=optimizer,
                                               actor=actor)
    want = run_face(um.update_mlp_reference, args, params, cfg, flags)
    p = {k: np.array(v, dtype=np.float32) for k, v in params.items()}
    a = {k: (v if v.dtype.kind == "i" else v.astype(np.float32)) for k, v in args.items()}
    call_update(lambda *t: um.update_mlp_composed(*t[:5]), a, p, cfg, flags["n_inputs"],
                flags["activation"], flags["step"])
    for key in ("K", "bias", "theta", "theta_bar") + (("adam_m", "adam_v") if optimizer == "adam" else ()):
        scale = max(1.0, float(np.abs(want[key]).max()))
        np.testing.assert_allclose(p[key], want[key], rtol=0, atol=1e-5 * scale, err_msg=key)


@pytest.mark.parametrize("B, N, topology", [(1, 70, "dense"), (6, 130, "sparse"), (13, 300, "dense"),
                                            (33, 67, "layered"), (43, 100, "sparse")])
def test_cpu_step_schedules_agree_exactly(B, N, topology):
    """The bench times forced schedules: each one is the same computation, bit for bit (dot
    tiles only at B = 1, 6, 13; outer-product tiles and left-over rows at B = 33, 43)."""
    from leaky.model.network import Network
    from tests.kernels.step_cases import assert_faces_agree, random_step_case

    rng = np.random.default_rng(B)
    cfg, V0, obs, xi = random_step_case(rng, B, N, 2, 1, 3, topology=topology, inhibition="divisive")
    net = Network(cfg, backend="cpu")
    f32 = np.float32
    snet = step_kernels.StepNet(net.K, net.b, net.leak, net.col_lo, net.col_hi)
    flags = step_kernels.StepFlags(2, 0, 1, cfg.kappa, False)
    outs = []
    for schedule in step_kernels.SCHEDULES:
        out = step_kernels.StepOut(*(np.full(s, np.nan, f32)
                                     for s in [(cfg.delay + 1, B, N)] + [(cfg.delay, B, N)] * 3))
        step_kernels.step_cpu(V0.astype(f32), obs.astype(f32), xi.astype(f32), snet, flags, out,
                              schedule=schedule)
        outs.append(out)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)
    want = step_kernels.step_reference(V0, obs, xi, snet, flags)
    names = ("V", "z", "y", "alpha")
    assert_faces_agree(dict(zip(names, outs[0])), dict(zip(names, want)), N)
    with pytest.raises(ValueError, match="schedule"):
        step_kernels.cpu_schedule(B, 3, N * N, "diagonal")


def test_bench_markdown_table(capsys):
    assert main(["bench", "ceiling", "--markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = [l for l in lines if l.startswith("|")]
    assert table[0].startswith("| suite | kernel") and table[1].startswith("|---")
    assert {l.split("|")[2].strip() for l in table[2:]} >= {"sgemm", "copy"}


def test_bench_credit_rows_run_tiny():
    """The shared-critic rows: every kernel face beside its composed alternative, and the
    actor steps and learner updates of both rules beside DDPG's, with consistent ratios (the
    bench checks each face against the reference before timing; no timed assertions here)."""
    rows = bench.bench_credit([(20, 9, 2)], repeats=1)
    got = {(r.kernel, r.backend) for r in rows}
    want = {("tangent step k=0", "cpu"), ("tangent step k=0", "numpy"), ("tangent step k=1", "cpu"),
            ("tangent step k=1", "numpy"), ("actor_forward", "numpy"), ("credit update", "cpu"),
            ("credit update", "numpy"), ("ddpg actor step", "cpu"), ("ddpg learner update", "cpu")}
    for rule in bench.CREDIT_RULES:
        for kind in ("actor step", "learner update"):
            want |= {(f"{rule} {kind}", "cpu"), (f"{rule} {kind}", "numpy")}
    assert want <= got
    base = {r.kernel.split()[-1]: r.seconds for r in rows if r.kernel.startswith("ddpg")}
    for r in rows:
        assert r.seconds > 0 and r.B == 9 and r.N == 20
        if r.kernel.endswith(("actor step", "learner update")) and not r.kernel.startswith("ddpg"):
            assert r.vs_baseline == pytest.approx(base[r.kernel.split()[-1]] / r.seconds)
            assert r.samples_per_s == pytest.approx(r.B / r.seconds)
        if r.kernel.startswith(("tangent", "credit")):
            assert r.gflops > 0 and r.ceiling_fraction > 0 and r.vs_composed > 0


def test_bench_solve_reports_wall_time_to_the_target(capsys):
    """The solve rows: one per learner; at a tiny budget the target is not reached, and the row
    says so with the best return instead of a time to solve."""
    assert main(["bench", "solve", "--quick", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["kernel"] for r in rows] == ["ddpg", "local"]
    for r in rows:
        assert r["suite"] == "solve" and r["seconds"] > 0 and r["N"] == 800
        assert "not reached in 800 env steps" in r["note"]
