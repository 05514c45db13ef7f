"""The layers as the README draws them: `drm` imports neither `pipeline` nor `analysis`, and
`analysis` imports `drm`, never `pipeline` (read from the sources, so a lazy import counts too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported(package: str) -> dict[str, set[str]]:
    """Per module of `package`, the top-level packages it imports (anywhere in the file)."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[str(path.relative_to(ROOT))] = names
    return out


@pytest.mark.parametrize("package, forbidden", [("drm", {"pipeline", "analysis"}), ("analysis", {"pipeline"})])
def test_a_layer_imports_nothing_above_it(package, forbidden):
    offending = {module: sorted(names & forbidden) for module, names in imported(package).items() if names & forbidden}
    assert offending == {}


def _sources():
    for package in ("drm", "pipeline", "analysis"):
        yield from sorted((ROOT / package).rglob("*.py"))


def test_modules_and_functions_fit_on_a_screen():
    """STYLE.md: modules of 100-400 lines (a little over is a judgement, not a split), functions of at most ~60."""
    long_modules = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > 420}
    long_functions = {
        f"{p.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1
        for p in _sources()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
    }
    assert long_modules == {} and long_functions == {}


# Where a problem's name may stand as data, not as a branch: the paper's counts, the paper's default
# problem of a configuration and of the CLI, the bench's two fixed configurations.
NAMED_AS_DATA = {"analysis/paper.py", "drm/config.py", "pipeline/cli.py", "pipeline/bench.py"}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_no_code_outside_the_problems_names_a_problem():
    """A problem's name as a string outside drm/problems (a comparison, a set or dict of names, a match)
    is what the Problem should say; only the data above may name one."""
    from drm.problems import PROBLEMS

    names = set(PROBLEMS)
    naming = []
    for path in _sources():
        where = str(path.relative_to(ROOT))
        if path.is_relative_to(ROOT / "drm" / "problems") or where in NAMED_AS_DATA:
            continue
        tree = ast.parse(path.read_text())
        skip = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names and id(node) not in skip:
                naming.append(f"{where}:{node.lineno} {node.value!r}")
            elif isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant) and node.value.value in names:
                naming.append(f"{where}:{node.lineno} case {node.value.value!r}")
    assert naming == []
