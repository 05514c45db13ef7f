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
    for path in sorted((ROOT / package).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        out[path.name] = names
    return out


@pytest.mark.parametrize("package, forbidden", [("drm", {"pipeline", "analysis"}), ("analysis", {"pipeline"})])
def test_a_layer_imports_nothing_above_it(package, forbidden):
    offending = {module: sorted(names & forbidden) for module, names in imported(package).items() if names & forbidden}
    assert offending == {}
