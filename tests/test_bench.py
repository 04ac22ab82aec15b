"""``leaky bench``: runs, reports consistent ratios, and refuses a wrong kernel."""

import json

import numpy as np
import pytest

from leaky import bench
from leaky.cli import main


def test_bench_step_quick_json(capsys):
    assert main(["bench", "step", "--quick", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "cpu" in data["machine"]
    rows = data["rows"]
    kernels = {(r["kernel"], r["backend"]) for r in rows}
    assert {("fused", "cpu"), ("composed", "numpy"), ("sgemm (ceiling)", "numpy")} <= kernels
    for r in rows:
        assert r["seconds"] > 0 and r["gflops"] > 0
        flops = 2.0 * r["delay"] * r["B"] * r["N"] * r["N"]
        assert r["gflops"] == pytest.approx(flops / r["seconds"] / 1e9, rel=1e-9)


def test_bench_table_and_unknown_suite(capsys):
    assert main(["bench", "ceiling"]) == 0
    out = capsys.readouterr().out
    assert "sgemm" in out and "copy" in out
    assert main(["bench", "warp"]) == 2


def test_check_refuses_a_wrong_result():
    want = tuple(np.zeros((2, 3, 4)) for _ in range(4))
    got = tuple(w.astype(np.float32) for w in want)
    bench._check(got, want, 4, "same")
    bad = (got[0] + 1e-2,) + got[1:]
    with pytest.raises(AssertionError, match="differs from the reference"):
        bench._check(bad, want, 4, "bad")
