"""A sampled range in the count models (analysis.design): one slope, not a contrast per value, as the
sweep's saved spec says; a listed factor keeps its contrasts however many values it has."""

from __future__ import annotations

import numpy as np

from analysis.data import RANGES
from analysis.design import design
from analysis.effects import trend_tests
from tests.helpers import frame


def _rows(lr: np.ndarray):
    rows = frame({(d, 2): np.arange(len(lr)) % 3 for d in (2, 3)})
    rows["lr"] = np.tile(lr, 2)
    return rows


def test_a_range_a_sampler_drew_from_is_one_log_slope():
    rows = _rows(10 ** np.linspace(-4, -2, 40))
    rows.attrs[RANGES] = frozenset({"lr"})  # as analysis.data.load puts it from a saved spec
    x = design(rows)
    assert "log_lr" in x.columns and not [c for c in x.columns if c.startswith("lr=")]
    assert np.allclose(x["log_lr"], np.log(rows["lr"] / rows["lr"].min()))
    assert [t["within"] for t in trend_tests(rows, "transitions", "depth")] == [""]  # pooled over lr, not 40 cells of one run each


def test_a_listed_factor_keeps_a_contrast_per_value_and_a_folder_without_spec_goes_by_its_values():
    listed = _rows(np.repeat([1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1], 4))
    listed.attrs[RANGES] = frozenset()  # the spec lists ten values: a grid
    assert sum(c.startswith("lr=") for c in design(listed).columns) == 9
    unknown = _rows(10 ** np.linspace(-4, -2, 40))  # no spec saved: more than MAX_LEVELS values read as a range
    assert "log_lr" in design(unknown).columns
