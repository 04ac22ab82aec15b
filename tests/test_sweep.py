"""``leaky sweep``: runs a grid, records failures as results, resumes, reports."""

import json

from leaky.cli import main
from leaky.sweep import read_records, summarise


def test_sweep_runs_resumes_and_reports(tmp_path, capsys):
    spec = {"env": "Pendulum-v1", "steps": 200, "seeds": [0, 1],
            "common": {"n_envs": 2, "hidden": [4], "eval_every": 100, "eval_episodes": 1},
            "variants": {"np": {"learner": "perturbation"},
                         "bad": {"learner": "perturbation", "learner_options": {"lr": -1}}}}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    out = tmp_path / "out.jsonl"
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    records = read_records(out)
    assert len(records) == 4
    assert all("error" in r for r in records if r["variant"] == "bad")
    s = summarise(records)
    assert s["np"]["seeds"] == [0, 1] and s["np"]["steps"] == [100, 200]
    assert main(["sweep", str(path), "--out", str(out), "--resume"]) == 0
    assert len(read_records(out)) == 4          # nothing ran twice
    capsys.readouterr()
    png = tmp_path / "c.png"
    assert main(["sweep", "--report", str(out), "--png", str(png)]) == 0
    table = capsys.readouterr().out
    assert "| np | 2 |" in table and "2 failed" in table and png.stat().st_size > 1000
