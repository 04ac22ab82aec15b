"""Bad input gets one line: ``leaky CMD: error: …`` naming the argument, the value and what was
expected, exit 2, no traceback; every learner option is checked when its config is made."""

import dataclasses
import subprocess
import sys

import pytest

from leaky.cli import main
from leaky.core.errors import ConfigError
from tests.trace.trace_cases import REPO

TRAIN = ["train", "--steps", "8", "--envs", "2", "--hidden", "4", "--no-progress"]


def _one_error_line(capsys, argv, command="train"):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"leaky {command}: error: ") and "Traceback" not in captured.err
    return lines[0]


@pytest.mark.parametrize("extra, names", [
    (["--set", "lr_actor=abc"], ["--set lr_actor=abc", "'abc'", "expected a finite number >= 0"]),
    (["--set", "lr_actor=nan"], ["--set lr_actor=nan", "expected a finite number"]),
    (["--set", "lr_actor=[1]"], ["--set lr_actor=[1]", "[1]", "expected a finite number"]),
    (["--learner", "ddpg", "--set", "tau=abc"], ["--set tau=abc", "DDPGConfig.tau", "in (0, 1]"]),
    (["--set", "batch_size=1.5"], ["--set batch_size=1.5", "1.5", "expected an int >= 1"]),
    (["--set", "gamma=true"], ["--set gamma=true", "True", "in [0, 1]"]),
    (["--set", "hidden_noise_scale=-1"], ["--set hidden_noise_scale=-1", "-1", ">= 0"]),
    (["--eval-every", "-5"], ["--eval-every", "-5", "expected an int >= 1"]),
    (["--eval-every", "0"], ["--eval-every", "got 0", "expected an int >= 1"]),
    (["--hidden", "-3"], ["--hidden", "(-3,)", "ints >= 1"]),
    (["--set", "learning_rate=1"], ["learning_rate", "not fields of LocalConfig", "expected some of"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("-") else None)
def test_train_arguments(capsys, extra, names):
    line = _one_error_line(capsys, TRAIN + extra)
    for name in names:
        assert name in line, line


def test_a_checkpoint_that_cannot_be_written_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for path in (tmp_path / "file" / "ck.npz", tmp_path / "missing" / "ck.npz"):
        line = _one_error_line(capsys, TRAIN + ["--steps", "100000", "--checkpoint", str(path)])
        assert "--checkpoint" in line and str(path) in line and "expected a file in an existing, writable" in line
    line = _one_error_line(capsys, TRAIN + ["--checkpoint", str(tmp_path)])
    assert "a directory; expected a file path" in line


def test_plot_out_that_cannot_be_written(tmp_path, capsys):
    from tests.trace.trace_cases import write_run

    run = tmp_path / "run.h5"
    write_run(run, 30, env_id="Pendulum-v1")
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "plots"
    line = _one_error_line(capsys, ["plot", str(run), "--out", str(out)], "plot")
    assert "--out" in line and str(out) in line and "expected a directory" in line


def test_sweep_report_of_a_missing_file_and_ray_without_ray(tmp_path, capsys, monkeypatch):
    line = _one_error_line(capsys, ["sweep", "--report", str(tmp_path / "none.jsonl")], "sweep")
    assert "--report" in line and "none.jsonl" in line and "expected a results file" in line
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)   # Ray not installed (the test extras install it)
    spec = tmp_path / "spec.json"
    spec.write_text('{"env": "Pendulum-v1", "steps": 8, "seeds": [0], "variants": {"a": {}}}')
    out = tmp_path / "out.jsonl"
    line = _one_error_line(capsys, ["sweep", str(spec), "--out", str(out), "--ray"], "sweep")
    assert "--ray" in line and "pip install 'leaky[ray]'" in line
    assert not out.exists()                     # refused before the results file was touched


def test_a_closed_pipe_is_not_a_traceback(tmp_path):
    """``leaky inspect run.h5 | head``: the reader goes away before leaky writes; leaky stops
    quietly with 141 (128 + SIGPIPE), as a C tool killed by SIGPIPE would."""
    from tests.trace.trace_cases import write_run

    run = tmp_path / "run.h5"
    write_run(run, 30, env_id="Pendulum-v1")
    p = subprocess.Popen([sys.executable, "-m", "leaky", "inspect", str(run), "--json"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()                                  # as `head` does once it has its lines
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141
    assert err == ""


# -- configs: every option checked when its config is made ---------------------------------------

def _configs():
    from leaky.learners.ddpg import DDPGConfig
    from leaky.learners.local import LocalConfig
    from leaky.learners.perturbation import PerturbationConfig
    from leaky.training.loop import TrainConfig
    from leaky.learners.value import ValueConfig

    return [LocalConfig, DDPGConfig, PerturbationConfig, ValueConfig, TrainConfig]


def test_local_config_checks_its_options_when_made():
    from leaky.learners.local import LocalConfig

    with pytest.raises(ConfigError, match=r"LocalConfig\.lr_actor: got -1\.0, expected a finite number >= 0"):
        LocalConfig(lr_actor=-1.0, tau_soft=7.0)
    with pytest.raises(ConfigError, match=r"LocalConfig\.tau_soft: got 7\.0, expected a finite number in \[0, 1\]"):
        LocalConfig(tau_soft=7.0)


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__name__)
def test_every_field_of_every_config_refuses_garbage(cls):
    """A list where a number, a choice, a flag or a string is expected: each field names itself."""
    for f in dataclasses.fields(cls):
        with pytest.raises(ConfigError, match=rf"^{cls.__name__}\.{f.name}: got "):
            cls(**{f.name: [object()]})


def test_a_field_without_a_rule_is_a_programming_error():
    from leaky.core.validate import Real, MissingRule, check_fields

    @dataclasses.dataclass(frozen=True)
    class Options:
        lr: float = 0.1
        added_later: int = 3

        def __post_init__(self):
            check_fields(self, {"lr": Real(low=0.0)})

    with pytest.raises(MissingRule, match="Options.added_later has no validation rule"):
        Options()


def test_rules_normalise_json_values():
    from leaky.learners.ddpg import DDPGConfig
    from leaky.learners.local import LocalConfig

    assert LocalConfig(replay_size=1e5).replay_size == 100_000
    assert isinstance(LocalConfig(replay_size=1e5).replay_size, int)
    assert DDPGConfig(hidden=[16, 8]).hidden == (16, 8)
    with pytest.raises(ConfigError, match=r"DDPGConfig\.hidden: got \[\]"):
        DDPGConfig(hidden=[])


def test_a_config_subclass_with_more_fields_extends_the_rules():
    """What a new learner whose config subclasses DDPGConfig does: its new field must have a
    rule, and then is checked like the others."""
    from leaky.learners.ddpg import DDPG_RULES, DDPGConfig
    from leaky.core.validate import MissingRule, Real

    @dataclasses.dataclass(frozen=True)
    class SharedCriticConfig(DDPGConfig):
        feedback_rate: float = 0.1

    with pytest.raises(MissingRule, match=r"SharedCriticConfig\.feedback_rate has no validation rule; "
                                          r"add one to SharedCriticConfig\.RULES"):
        SharedCriticConfig()
    SharedCriticConfig.RULES = {**DDPG_RULES, "feedback_rate": Real(low=0.0)}
    assert SharedCriticConfig(feedback_rate=0.5, tau=0.1).feedback_rate == 0.5
    with pytest.raises(ConfigError, match=r"SharedCriticConfig\.feedback_rate: got -1"):
        SharedCriticConfig(feedback_rate=-1)
    with pytest.raises(ConfigError, match=r"SharedCriticConfig\.tau: got 'abc'"):
        SharedCriticConfig(tau="abc")
