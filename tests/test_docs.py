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


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


LINKS = [(f, target) for f in FILES
         for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", f.read_text(), flags=re.S))
         if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("path, target", LINKS, ids=[f"{f.name}->{t}" for f, t in LINKS])
def test_relative_links_resolve(path, target):
    """Every relative link of README.md and docs/ names a file of the project, and an anchor
    into a Markdown file names one of its headings."""
    file, _, anchor = target.partition("#")
    dest = (path.parent / file).resolve() if file else path
    assert dest.exists(), f"{path.name}: {target}: no such file"
    if anchor and dest.suffix == ".md":
        assert anchor in anchors(dest), f"{path.name}: {target}: no heading with that anchor"
