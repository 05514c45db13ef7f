"""What a run is called in MLflow: a parent by the parameters its sweep varies, a child by its seed.

"depth 5 · i 2 · ε 0 · 100k" reads as the paper writes a setting; the same parameters are also
tags (`tags.depth = '5'`), so the UI's search box and its "Group by" work on them, and a
`configuration` tag (the parent's name) groups the seeds of one configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# `drmfm train` varies nothing: its runs are named by the parameters the paper's figures vary.
DEFAULT_NAMED = ("depth", "fourier", "epsilon", "epochs")
# How a parameter is written in a name; a parameter not here is written "<name> <value>".
_SHORT = {"fourier": "i", "epsilon": "ε", "transition_threshold": "τ", "rho": "ρ"}


def tag_value(value: Any) -> str:
    """A parameter's value as a tag, as a user would type it in a search: 5, 0, 0.00625, none, relu."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _epochs(n: int) -> str:
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= size and n % size == 0:
            return f"{n // size}{suffix}"
    return f"{n} epochs"


def _part(name: str, value: Any, exact: bool) -> str:
    if name == "epochs" and value is not None:
        return _epochs(int(value))
    if name == "fourier" and value is None:
        return "no map"
    if name in ("activation", "fourier_map", "dtype"):
        return tag_value(value)
    if not exact and isinstance(value, float) and not value.is_integer():
        value = float(f"{value:.4g}")  # a sampled lr reads 0.004669, not 0.004669295331523649
    return f"{_SHORT.get(name, name)} {tag_value(value)}"


def parent_name(params: dict[str, Any], named: tuple[str, ...], exact: bool = False) -> str:
    """The parent run's name: the `named` parameters (a sweep's varying ones, in its spec's order),
    floats to 4 significant digits unless `exact` (two sampled configurations may then read alike)."""
    parts = [_part(n, params.get(n), exact) for n in named if n in params]
    return " · ".join(parts) or "configuration"


def child_name(seed: int) -> str:
    return f"seed {seed}"


def parameter_tags(params: dict[str, Any], named: tuple[str, ...]) -> dict[str, str]:
    """The `named` parameters as tags, and the configuration's name with exact values (what "Group
    by" groups seeds by: two configurations never share it)."""
    tags = {n: tag_value(params.get(n)) for n in named if n in params}
    tags["configuration"] = parent_name(params, named, exact=True)
    return tags


# The experiment's runs view: a shared view state (an experiment tag the UI reads when its URL says
# `viewStateShareKey=drmfm`) that puts the parents' medians and the varying parameters on screen,
# where by default a wide dataset column pushes every metric off it.
VIEW_KEY = "drmfm"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"


@dataclass(frozen=True)
class Layout:
    """How a sweep's runs are named and shown: the parameters its configurations differ in (spec
    order) and the objective Tune optimises (its metric and aggregate over seeds)."""

    named: tuple[str, ...] = DEFAULT_NAMED
    objective: str = "energy"
    agg: str = "median"

    @classmethod
    def of(cls, spec) -> Layout:
        """A sweep spec's: its dimensions that take more than one value (a one-value list names nothing)."""
        named = tuple(k for k, d in spec.space.items() if not (isinstance(d, tuple) and len(d) == 1))
        return cls(named, spec.objective.metric[0], spec.objective.agg)

    def view(self) -> str:
        """The view state (JSON) of the runs: transitions, the objective as Tune aggregates it, then the named parameters."""
        metrics = dict.fromkeys(["transitions_median", "transitions_iqr", f"{self.objective}_{self.agg}", "energy_median", "n_ok"])
        columns = [f"metrics.`{m}`" for m in metrics] + [f"tags.`{n}`" for n in self.named]
        return json.dumps({"selectedColumns": columns, "columnOrder": ["attributes.`Run Name`", *columns], "runsExpanded": {}})
