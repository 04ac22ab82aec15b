"""Code in README.md and docs/ runs (docs that cannot rot)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [(f, i, code) for f in FILES
          for i, code in enumerate(re.findall(r"```python\n(.*?)```", f.read_text(), flags=re.S))]


@pytest.mark.parametrize("path, index, code", BLOCKS, ids=[f"{f.name}#{i}" for f, i, _ in BLOCKS])
def test_python_block_runs(path, index, code, capsys):
    exec(compile(code, f"{path.name}#{index}", "exec"), {"__name__": "__docs__"})


def test_readme_has_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(commands) >= 2
    test_command = commands[1].strip()
    assert test_command in (ROOT / ".ci" / "run").read_text()
