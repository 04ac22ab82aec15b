"""The import rules of docs/layout.md, enforced: kernels are pure, the layers import downwards.

Each rule is checked in a fresh interpreter (what a module loads depends on what was imported
before it) and on the source (an import inside a function loads nothing until it runs).
"""

import ast
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"

# What importing any kernel module may load besides numpy, numba (and llvmlite under it) and
# the standard library: the `leaky` package's own __init__ (BLAS threads and the errors), nothing
# of the library's API.
HEAVY = ("h5py", "gymnasium", "matplotlib", "tqdm", "cupy", "minari")
LEAKY_ALLOWED = {"leaky", "leaky.core", "leaky.core.threads", "leaky.core.errors"}


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; import json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _kernel_modules() -> list[str]:
    names = []
    for path in sorted(KERNELS.rglob("*.py")):
        rel = path.relative_to(KERNELS).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        names.append(".".join(["leaky.kernels", *parts]))
    return names


def test_importing_every_kernel_loads_no_library_api():
    """``import leaky.kernels.<anything>`` loads no h5py, gymnasium, learner or trace."""
    statement = "; ".join(f"import {name}" for name in _kernel_modules())
    loaded = _loaded_after(statement)
    heavy = [m for m in loaded if m.split(".")[0] in HEAVY]
    api = [m for m in loaded if m.startswith("leaky") and not m.startswith("leaky.kernels")
           and m not in LEAKY_ALLOWED]
    assert not heavy and not api, f"kernels loaded {heavy + api}"


@pytest.mark.parametrize("name", ["leaky.kernels.step", "leaky.kernels.update_local"])
def test_one_kernel_loads_only_its_own_family(name):
    loaded = _loaded_after(f"import {name}")
    assert not any(m.split(".")[0] in HEAVY for m in loaded)
    assert not any(m.startswith("leaky.") and not m.startswith("leaky.kernels") and m not in LEAKY_ALLOWED
                   for m in loaded)


def _imports(path: pathlib.Path) -> list[str]:
    """Every module a source file imports, at any depth (relative imports resolved to leaky.*)."""
    tree = ast.parse(path.read_text(), str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("leaky.<relative>")
            elif node.module:
                names.append(node.module)
    return names


# What a kernel module may import: numpy, numba and llvmlite (numba's code generator), the
# standard library, other kernel modules. numba.cuda is numba's.
KERNEL_ALLOWED_ROOTS = {"numpy", "numba", "llvmlite", "__future__"}


def test_kernel_sources_import_only_numpy_numba_and_each_other():
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for path in sorted(KERNELS.rglob("*.py")):
        for name in _imports(path):
            root = name.split(".")[0]
            if name.startswith("leaky.kernels") or root in KERNEL_ALLOWED_ROOTS or root in stdlib:
                continue
            bad.append(f"{path.relative_to(ROOT)}: {name}")
    assert not bad, "kernel modules import outside numpy/numba/the kernels: " + "; ".join(bad)


def test_a_forbidden_import_is_reported(tmp_path):
    """The source check can fail: a kernel file importing the API is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy as np\nfrom leaky.core.errors import ConfigError\n")
    names = _imports(bad)
    assert "leaky.core.errors" in names and not names[-1].startswith("leaky.kernels")


def test_design_links_in_the_code_resolve():
    """Every design-doc anchor (docs/design.md, then ``#`` and the anchor) a module or test cites names a heading of docs/design.md."""
    import re

    headings = [line.lstrip("#").strip() for line in (ROOT / "docs" / "design.md").read_text().splitlines()
                if line.startswith("#")]

    def slug(h):
        h = re.sub(r"[^\w\- ]", "", h.lower()).strip()
        return h.replace(" ", "-")

    anchors = {slug(h) for h in headings}
    cited, missing = 0, []
    for path in [*ROOT.glob("leaky/**/*.py"), *ROOT.glob("kernels/**/*.py"), *ROOT.glob("tests/**/*.py")]:
        for anchor in re.findall(r"docs/design\.md#([\w\-]+)", path.read_text()):
            cited += 1
            if anchor not in anchors:
                missing.append(f"{path.relative_to(ROOT)}: #{anchor}")
    assert not missing, f"unresolved design.md anchors: {missing}"
    assert not [p for p in [*ROOT.glob("leaky/**/*.py"), *ROOT.glob("kernels/**/*.py")]
                if "DESIGN.md" in p.read_text()], "a module still cites DESIGN.md; link docs/design.md"


def test_every_package_is_installed():
    """pyproject.toml lists every package of both layers (a non-editable install copies only those)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"leaky"} | {".".join(["leaky", *p.parent.relative_to(ROOT / "leaky").parts])
                         for p in (ROOT / "leaky").rglob("__init__.py")}
    found |= {".".join(["leaky.kernels", *p.parent.relative_to(KERNELS).parts]).rstrip(".")
              for p in KERNELS.rglob("__init__.py")}
    assert found == listed, f"pyproject.toml packages: missing {found - listed}, extra {listed - found}"


# leaky/'s layers, lowest first: a module may import its own layer and the layers below it
LAYERS = ["core", "model", "learners", "trace", "training", "bench", "cli"]
BELOW = {"core": set(), "model": {"core"}, "learners": {"model", "core"}, "trace": {"model", "core"},
         "training": {"learners", "model", "core", "trace"},
         "bench": {"training", "learners", "model", "core", "trace"},
         "cli": {"bench", "training", "learners", "model", "core", "trace"}}


def _layer_violations(root: pathlib.Path) -> list[str]:
    bad = []
    for layer in LAYERS:
        for path in sorted((root / "leaky" / layer).rglob("*.py")):
            for name in _imports(path):
                parts = name.split(".")
                if parts[0] != "leaky" or len(parts) < 2 or parts[1] == "kernels":
                    continue
                if parts[1] != layer and parts[1] not in BELOW[layer]:
                    bad.append(f"{path.relative_to(root)} imports {name}")
    return bad


def test_the_layers_of_leaky_import_only_downwards():
    """docs/layout.md's table: core < model < learners, trace < training < bench < cli."""
    bad = _layer_violations(ROOT)
    assert not bad, "; ".join(bad)


def test_an_upward_import_is_reported(tmp_path):
    (tmp_path / "leaky" / "model").mkdir(parents=True)
    (tmp_path / "leaky" / "model" / "network.py").write_text("from leaky.learners.local import LocalLearner\n")
    assert _layer_violations(tmp_path) == ["leaky/model/network.py imports leaky.learners.local"]


def _test_module_imports(root: pathlib.Path) -> list[str]:
    """``file: module`` for every import of a test module (``test_*.py``) by a file under
    ``root``: shared builders belong in ``*_cases.py`` modules."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.relative_to(root)}: {n}" for n in names
                      if n.startswith("tests.") and n.rsplit(".", 1)[-1].startswith("test_")]
    return found


def test_no_test_module_imports_another():
    assert not _test_module_imports(ROOT / "tests")


def test_an_import_of_a_test_module_is_reported(tmp_path):
    (tmp_path / "test_a.py").write_text("from tests.kernels.test_step import run_face\n")
    assert _test_module_imports(tmp_path) == ["test_a.py: tests.kernels.test_step"]
