"""Sweep specs (YAML): typed, frozen, validated strictly before anything starts.

Every error is a `SpecError` naming the field (dotted path) and what is allowed; the CLI prints it
as one line and exits 2. Cross-field checks (ε > 0 with relu, …) run over every grid point, and
over every corner of a sampled space, by resolving the point's `TrainConfig`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drm.config import ConfigError, TrainConfig
from drm.metrics import measured_for
from drm.problems import PROBLEMS
from pipeline._spec_fields import (
    AGGREGATES,
    PARAMS,
    Dimension,
    Objective,
    Range,
    Resources,
    Scheduler,
    Search,
    SpecError,
    cast,
    integer,
    known,
    mapping,
    parse_dimension,
    parse_objective,
    parse_pack,
    parse_quick,
    parse_resources,
    parse_scheduler,
    parse_search,
    parse_value,
)

__all__ = ["AGGREGATES", "PARAMS", "Objective", "Range", "Resources", "Scheduler", "Search", "SpecError", "SweepSpec", "load_spec", "parse_spec"]

_TOP = ("name", "problem", "fixed", "space", "seeds", "search", "objective", "resources", "quick", "scheduler", "checkpoint_every",
        "max_failures", "pack", "figures")
FIGURES = ("trial", "seed", "none")  # an MLflow profile figure per parent run, per seed, or none
# What decides what a sweep trains is hashed for --resume; how it is shown is not.
_UNHASHED = ("figures",)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # fullmatch: no trailing newline, at most 100


@dataclass(frozen=True)
class SweepSpec:
    name: str
    problem: str
    fixed: dict[str, Any]
    space: dict[str, Dimension]
    seeds: int
    search: Search
    objective: Objective
    resources: Resources
    scheduler: Scheduler | None = None
    checkpoint_every: int | None = None  # steps between checkpoints (default: every 30 s of training)
    max_failures: int = 2
    quick: dict[str, Any] | None = None
    # Dimensions a trial carries whole: every value of them trains in the trial's packed models
    # (members differ in frequency and ε), so the search runs over the other dimensions only.
    pack: tuple[str, ...] = ()
    figures: str = "trial"  # FIGURES

    @property
    def is_grid(self) -> bool:
        return all(isinstance(d, tuple) for d in self.space.values())

    @property
    def searched(self) -> dict[str, Dimension]:
        """The dimensions the sampler picks (the space less the packed ones)."""
        return {k: d for k, d in self.space.items() if k not in self.pack}

    def grid_points(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Every point of a grid space (or of the dimensions `names`), in a stable order."""
        names = list(self.space) if names is None else names
        return [dict(zip(names, values)) for values in itertools.product(*(self.space[n] for n in names))]

    @property
    def num_trials(self) -> int:
        return len(self.grid_points(list(self.searched))) if self.search.sampler == "grid" else int(self.search.num_samples or 0)

    def trial_config(self, point: dict[str, Any]) -> TrainConfig:
        """The resolved configuration of one point of the space."""
        return TrainConfig(problem=self.problem, **{**self.fixed, **point}).resolve()

    def searched_point(self, params: dict[str, Any]) -> dict[str, Any]:
        """The searched point of a Tune trial's config: the sampler's parameters, or a repair's `point`."""
        params = params.get("point", params)
        return {k: params[k] for k in self.searched}

    def trial_configs(self, point: dict[str, Any]) -> list[TrainConfig]:
        """The configurations one trial trains: its searched point × every value of the packed dimensions."""
        return [self.trial_config({**point, **packed}) for packed in self.grid_points(list(self.pack))]

    def trial_steps(self) -> tuple[int, bool]:
        """(trials × seeds × epochs summed over trials, exact?). Sampled epochs count at their mean."""
        if self.search.sampler == "grid":
            return sum(self.trial_config(p).epochs for p in self.grid_points()) * self.seeds, True
        epochs = self.space.get("epochs")
        if isinstance(epochs, Range):
            mean = (epochs.low + epochs.high) / 2
        elif isinstance(epochs, tuple):
            mean = sum(epochs) / len(epochs)
        else:
            mean = self.trial_config(self.corners()[0]).epochs
        per_trial = len(self.grid_points(list(self.pack)))
        return int(round(self.num_trials * per_trial * self.seeds * mean)), False

    def corners(self) -> list[dict[str, Any]]:
        """Every categorical choice × both ends of every range: what a sampled space can reach."""
        names = list(self.space)
        options = [d if isinstance(d, tuple) else (cast(d, d.low), cast(d, d.high)) for d in (self.space[n] for n in names)]
        return [dict(zip(names, values)) for values in itertools.product(*options)]

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain data (what is saved beside the sweep and hashed for --resume)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def hashed(self) -> dict[str, Any]:
        """What decides the sweep's rows (`as_dict` less how they are shown): what --resume compares."""
        return {k: v for k, v in self.as_dict().items() if k not in _UNHASHED}

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.hashed(), sort_keys=True).encode()).hexdigest()[:16]

    def with_quick(self) -> SweepSpec:
        """The spec's `quick:` overrides applied, as a separate sweep `<name>-quick`."""
        q = self.quick or {}
        space = dict(self.space)
        space.update(q.get("space", {}))
        fixed = dict(self.fixed)
        if "epochs" in q:
            space.pop("epochs", None)
            fixed["epochs"] = q["epochs"]
        search = self.search
        if "num_samples" in q:
            search = dataclasses.replace(search, num_samples=q["num_samples"])
        spec = dataclasses.replace(
            self, name=f"{self.name}-quick", fixed=fixed, space=space, seeds=q.get("seeds", self.seeds), search=search, quick=None
        )
        ranged = [k for k, d in space.items() if isinstance(d, Range) and (search.sampler == "grid" or k in self.pack)]
        if ranged:
            why = "a packed dimension" if ranged[0] in self.pack else "a grid"
            raise SpecError(f"quick.space.{ranged[0]}", f"{why} needs a list, not a range; allowed: a list")
        spec._check_points()
        return spec

    def _check_points(self) -> None:
        points = self.grid_points() if self.is_grid else self.corners()
        for point in points:
            try:
                self.trial_config(point)
            except ConfigError as e:
                where = "fixed" if e.field in self.fixed else "space"
                raise SpecError(f"{where}.{e.field}", f"{e.message} (at {_show(point)})") from None
        if self.scheduler is not None:
            epochs = self.space.get("epochs")
            if isinstance(epochs, Range) or (isinstance(epochs, tuple) and len(set(epochs)) > 1):
                raise SpecError("scheduler", "a scheduler needs one number of epochs across the space; allowed: fix epochs")
            total = self.trial_config(points[0]).epochs
            if self.scheduler.grace_period > total:
                raise SpecError("scheduler.grace_period", f"{self.scheduler.grace_period} is past the {total} epochs; allowed: 1..{total}")


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a spec file (SpecError on any problem, naming the field)."""
    from pipeline import yaml_strict

    path = Path(path)
    if not path.is_file():
        raise SpecError("spec", f"no such file {str(path)!r}")
    try:
        raw = yaml_strict.load(path.read_bytes())
    except UnicodeDecodeError as e:
        byte = f"byte {e.object[e.start]:#04x} at offset {e.start}"
        raise SpecError("spec", f"{str(path)!r} is not UTF-8 text ({byte}); allowed: a YAML file") from None
    except yaml_strict.DuplicateKey as e:
        raise SpecError("spec", f"{e}; allowed: each key once") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError("spec", f"not valid YAML{where}") from None
    return parse_spec(raw)


def parse_spec(raw: Any) -> SweepSpec:
    """Validate plain data (as read from YAML) into a SweepSpec."""
    raw = mapping("spec", raw)
    known("spec", raw, _TOP)
    for required in ("name", "problem", "space", "seeds"):
        if required not in raw:
            raise SpecError(required, "is required")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError("name", f"{name!r} is not allowed; allowed: 1 to 100 letters, digits, '_', '.', '-' (a letter or digit first)")
    problem = raw["problem"]
    if not isinstance(problem, str) or problem not in PROBLEMS:
        raise SpecError("problem", f"unknown {problem!r}; allowed: {', '.join(PROBLEMS)}")
    fixed = {k: parse_value(f"fixed.{k}", k, v) for k, v in known("fixed", mapping("fixed", raw.get("fixed", {})), PARAMS).items()}
    space_raw = known("space", mapping("space", raw["space"]), PARAMS)
    if not space_raw:
        raise SpecError("space", "is empty; allowed: at least one parameter with a list or a {low, high} range")
    space = {k: parse_dimension(f"space.{k}", k, v) for k, v in space_raw.items()}
    both = sorted(set(fixed) & set(space))
    if both:
        raise SpecError(f"space.{both[0]}", "is also in fixed; allowed: one of the two")
    search = parse_search(raw.get("search", {}), space)
    objective = parse_objective(raw.get("objective", {}))
    measured = {m.name for m in measured_for(PROBLEMS[problem])}
    for m in objective.metric:
        if m not in measured:
            allowed = ", ".join(sorted(measured))
            raise SpecError("objective.metric", f"{m!r} is not measured for {problem} ({PROBLEMS[problem].dim}D); allowed: {allowed}")
    spec = SweepSpec(
        name=name,
        problem=problem,
        fixed=fixed,
        space=space,
        seeds=integer("seeds", raw["seeds"], low=1),
        search=search,
        objective=objective,
        resources=parse_resources(raw.get("resources", {})),
        scheduler=parse_scheduler(raw["scheduler"]) if raw.get("scheduler") is not None else None,
        checkpoint_every=integer("checkpoint_every", raw["checkpoint_every"], low=1) if "checkpoint_every" in raw else None,
        max_failures=integer("max_failures", raw.get("max_failures", 2), low=0),
        quick=parse_quick(raw.get("quick"), space),
        pack=parse_pack(raw.get("pack"), space, search, raw.get("scheduler")),
        figures=_figures(raw.get("figures", "trial")),
    )
    spec._check_points()
    return spec


def _figures(value: Any) -> str:
    if value not in FIGURES:
        raise SpecError("figures", f"{value!r} is not allowed; allowed: {', '.join(FIGURES)} (trial: one per configuration, seeds overlaid)")
    return value


def _show(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'none' if v is None else v}" for k, v in point.items())
