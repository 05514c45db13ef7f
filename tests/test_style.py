"""The code passes ruff with the project's configuration (pyproject.toml: pyflakes, pycodestyle at the
code's own width, import order)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import ROOT


def test_the_code_passes_ruff():
    checked = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "drm", "pipeline", "analysis", "tests", "benchmarks"],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
