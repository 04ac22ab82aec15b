"""``leaky sweep``: runs a grid, records failures as results, resumes, reports."""

import json

import pytest

from leaky.cli import main
from leaky.training.sweep import read_records, summarise


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


def _spec(tmp_path, variants, seeds=(0, 1)):
    spec = {"env": "Pendulum-v1", "steps": 40, "seeds": list(seeds),
            "common": {"n_envs": 2, "hidden": [4], "eval_every": 40, "eval_episodes": 1},
            "variants": variants}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_a_sweep_whose_tasks_all_fail_exits_1_and_says_why(tmp_path, capsys):
    spec = _spec(tmp_path, {"bad": {"learner": "perturbation", "learner_options": {"lr": -1}}})
    out = tmp_path / "out.jsonl"
    assert main(["sweep", spec, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("leaky sweep: error: all 2 tasks failed; the first, bad seed 0: ")
    assert "PerturbationConfig.lr: got -1" in err[-1]
    assert len(read_records(out)) == 2


def test_a_bug_inside_train_is_raised_not_recorded(tmp_path, monkeypatch):
    import leaky.training.loop

    def broken(cfg):
        return 1 / 0

    monkeypatch.setattr(leaky.training.loop, "train", broken)
    out = tmp_path / "out.jsonl"
    with pytest.raises(ZeroDivisionError):
        main(["sweep", _spec(tmp_path, {"np": {"learner": "perturbation"}}), "--out", str(out)])
    assert read_records(out) == []


def test_resume_retries_failed_tasks_on_request(tmp_path, capsys):
    """A task that failed (here: its checkpoint directory was missing) runs again with
    --resume --retry-failed; its new record replaces the failed one in the summary."""
    ck_dir = tmp_path / "ck"
    spec = _spec(tmp_path, {"np": {"learner": "perturbation"},
                            "ck": {"learner": "perturbation", "checkpoint": str(ck_dir / "run.npz")}},
                 seeds=[0])
    out = str(tmp_path / "out.jsonl")
    assert main(["sweep", spec, "--out", out]) == 0
    assert "1 of 2 tasks failed" in capsys.readouterr().err
    assert summarise(read_records(out))["ck"]["errors"]
    assert main(["sweep", spec, "--out", out, "--resume"]) == 0       # skips it: nothing new
    assert len(read_records(out)) == 2
    ck_dir.mkdir()
    assert main(["sweep", spec, "--out", out, "--resume", "--retry-failed"]) == 0
    records = read_records(out)
    assert len(records) == 3 and [r["variant"] for r in records] == ["np", "ck", "ck"]
    s = summarise(records)
    assert s["ck"]["errors"] == [] and s["ck"]["seeds"] == [0] and s["np"]["seeds"] == [0]
    capsys.readouterr()
    assert main(["sweep", spec, "--out", out, "--retry-failed"]) == 2
    assert "--retry-failed: expected it with --resume" in capsys.readouterr().err


def test_only_with_no_matching_variant_is_an_error(tmp_path, capsys):
    spec = _spec(tmp_path, {"np": {"learner": "perturbation"}})
    out = tmp_path / "out.jsonl"
    assert main(["sweep", spec, "--out", str(out), "--only", "nq"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--only: got ['nq']" in err[0] and "expected some of ['np']" in err[0]
    assert not out.exists()


def test_a_spec_field_that_is_not_a_train_config_field_is_refused_before_running(tmp_path, capsys):
    spec = _spec(tmp_path, {"np": {"learner": "perturbation", "learning_rate": 1}})
    assert main(["sweep", spec, "--out", str(tmp_path / "out.jsonl")]) == 2
    assert "variants.np: ['learning_rate'] are not TrainConfig fields" in capsys.readouterr().err


TWO_TASKS = {"env": "Pendulum-v1", "steps": 120, "seeds": [0, 1],
             "common": {"n_envs": 2, "hidden": [4], "eval_every": 60, "eval_episodes": 1},
             "variants": {"np": {"learner": "perturbation"}}}


def test_every_task_writes_its_trace_to_the_trace_dir(tmp_path, capsys):
    from leaky.trace import open_trace

    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TWO_TASKS))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out.jsonl"),
                 "--trace-dir", str(tmp_path / "traces")]) == 0
    for seed in (0, 1):
        with open_trace(str(tmp_path / "traces" / f"np-seed{seed}.h5")) as tr:
            assert tr.n_steps > 0


def test_address_without_ray_is_an_error(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TWO_TASKS))
    assert main(["sweep", str(path), "--out", str(tmp_path / "o.jsonl"), "--address", "auto"]) == 2
    assert "sweep --address: got 'auto' without --ray" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_a_two_task_sweep_on_a_local_ray(tmp_path, capsys):
    """The Ray backend end to end: a local Ray with two CPUs runs both tasks, each writes its
    trace, the results file holds both records, and a resumed sweep runs nothing."""
    pytest.importorskip("ray")
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(TWO_TASKS))
    out = tmp_path / "out.jsonl"
    args = ["sweep", str(path), "--out", str(out), "--ray", "--workers", "2", "--trace-dir", str(tmp_path / "t")]
    assert main(args) == 0
    records = read_records(out)
    assert sorted(r["seed"] for r in records) == [0, 1] and all("final" in r for r in records)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["np-seed0.h5", "np-seed1.h5"]
    assert main(args + ["--resume"]) == 0
    assert len(read_records(out)) == 2
