"""``leaky table``: normalised scores from sweep results, the random return, the spec's errors."""

import json

import numpy as np
import pytest

from leaky.cli import main
from leaky.core.errors import ConfigError
from leaky.training.table import build, load_table_spec, markdown, normalise, random_return

SEED_ROW = {"name": "pendulum", "values": [0.946, 1.021, 0.663, 1.055, 0.099, 0.951]}


def _record(variant, seed, final, env="Pendulum-v1", steps=1000, **extra):
    return {"variant": variant, "seed": seed, "config": {"env": env, "steps": steps},
            "evaluations": [{"step": steps, "mean": final}], "final": final, "update_ms": 1.0, **extra}


def _write(tmp_path, records, reference=-150.0, random_episodes=2, name="pendulum"):
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = {"random_episodes": random_episodes,
            "tasks": [{"name": name, "env": "Pendulum-v1", "results": "results.jsonl",
                       "reference": {"return": reference, "source": "a test"}, "seed_row": SEED_ROW}]}
    path = tmp_path / "table.json"
    path.write_text(json.dumps(spec))
    return path


def test_scores_are_normalised_per_seed_with_random_0_and_reference_1(tmp_path):
    # random -1150, reference -150: a final of -650 is half way, -150 is 1, -1150 is 0
    records = [_record("a", 0, -650.0), _record("a", 1, -150.0), _record("a", 2, -1150.0),
               _record("b", 0, -1650.0), _record("b", 0, -400.0, note="retried: the latest counts")]
    path = _write(tmp_path, records)
    rows = build(load_table_spec(str(path)), root=str(tmp_path), random_returns={"Pendulum-v1": -1150.0})
    a, b = rows[0]["variants"]["a"], rows[0]["variants"]["b"]
    np.testing.assert_allclose(a["normalised"], [0.5, 1.0, 0.0])
    assert a["mean"] == pytest.approx(0.5) and a["best"] == pytest.approx(1.0)
    assert a["std"] == pytest.approx(np.std([0.5, 1.0, 0.0]))
    np.testing.assert_allclose(b["normalised"], [0.75])
    table = markdown(rows)
    assert "| pendulum (Pendulum-v1) | 1k | 3/1 | 0.50 ± 0.41 (1.00) | 0.75 ± 0.00 (0.75) | pendulum | 0.946 (1.021) |" in table
    assert "| pendulum | -1150.0 | -150 | a test | -650.0, -150.0, -1150.0 | -400.0 |" in table


def test_failed_runs_are_listed_and_left_out_of_the_means(tmp_path):
    records = [_record("a", 0, -650.0), {"variant": "a", "seed": 1, "config": {"env": "Pendulum-v1", "steps": 1000},
                                         "error": "DivergenceError: it diverged"}]
    rows = build(load_table_spec(str(_write(tmp_path, records))), root=str(tmp_path),
                 random_returns={"Pendulum-v1": -1150.0})
    assert rows[0]["variants"]["a"]["normalised"] == [0.5]
    assert "- pendulum a: DivergenceError: it diverged" in markdown(rows)


def test_random_return_is_seeded_and_the_command_measures_it(tmp_path, capsys):
    r = random_return("Pendulum-v1", episodes=2)
    assert r == random_return("Pendulum-v1", episodes=2)
    assert -2000 < r < -500                       # a random pendulum mostly hangs and spins
    path = _write(tmp_path, [_record("a", 0, -150.0)], reference=-150.0)
    assert main(["table", str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["random"] == pytest.approx(r) and rows[0]["variants"]["a"]["normalised"] == [1.0]


def test_normalise_refuses_a_reference_equal_to_random():
    with pytest.raises(ConfigError, match="equals the random return"):
        normalise([1.0], 5.0, 5.0)


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s.pop("tasks"), "expected 'tasks', a non-empty list"),
    (lambda s: s["tasks"][0].pop("reference"), r"missing \['reference'\]"),
    (lambda s: s["tasks"][0]["reference"].pop("source"), "expected {'return': a number, 'source'"),
    (lambda s: s["tasks"][0]["seed_row"]["values"].pop(), "with 6 values"),
])
def test_a_bad_table_spec_names_what_is_wrong(tmp_path, mutate, message):
    path = _write(tmp_path, [_record("a", 0, -150.0)])
    spec = json.loads(path.read_text())
    mutate(spec)
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match=message):
        load_table_spec(str(path))


def test_a_missing_results_file_or_another_env_is_refused(tmp_path, capsys):
    path = _write(tmp_path, [_record("a", 0, -150.0, env="InvertedPendulum-v5")])
    with pytest.raises(ConfigError, match="holds runs on \\['InvertedPendulum-v5'\\]; expected only 'Pendulum-v1'"):
        build(load_table_spec(str(path)), root=str(tmp_path), random_returns={"Pendulum-v1": 0.0})
    (tmp_path / "results.jsonl").unlink()
    assert main(["table", str(path)]) == 2
    assert "no results file" in capsys.readouterr().err
