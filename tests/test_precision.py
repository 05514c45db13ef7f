"""benchmarks/precision.py (the TF32 study run on a GPU): on a CPU, where the flag does nothing, both arms agree exactly."""

from __future__ import annotations

import importlib.util

from tests.helpers import ROOT


def test_the_precision_study_finds_no_difference_where_tf32_does_not_exist():
    spec = importlib.util.spec_from_file_location("precision", ROOT / "benchmarks" / "precision.py")
    precision = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(precision)
    result = precision.compare("cpu", epochs=40, seeds=2, width=16)
    assert [r["run"] for r in result["runs"]] == list(precision.RUNS)
    for r in result["runs"]:
        assert r["energy_rel_diff_max"] == 0 and r["transitions_changed"] == 0 and r["u2_max_abs_diff_rel"] == 0
    assert result["tf32_default_allowed"]
