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
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drm.config import PACKABLE, ConfigError, TrainConfig
from drm.problems import PROBLEMS

SAMPLERS = ("grid", "random", "tpe", "qmc", "gp")
AGGREGATES = ("median", "mean", "min", "max")
METRICS = ("energy", "transitions", "bands", "transitions_wall", "transitions_per_period", "boundary_l2", "loss_final")
# Fields a sweep may fix or vary: the configuration of a trial, less the problem (one per sweep).
PARAMS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "problem")
_TOP = ("name", "problem", "fixed", "space", "seeds", "search", "objective", "resources", "quick", "scheduler", "checkpoint_every",
        "max_failures", "pack")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # fullmatch: no trailing newline, at most 100


class SpecError(ConfigError):
    """A spec field outside what is allowed (`field` is its dotted path); `str()` is the CLI's one line."""


@dataclass(frozen=True)
class Range:
    """A numeric range {low, high[, step][, log]}: sampled, never a grid."""

    low: float
    high: float
    step: float | None = None
    log: bool = False
    integer: bool = False


Dimension = tuple[Any, ...] | Range  # a tuple of choices, or a range


@dataclass(frozen=True)
class Search:
    sampler: str = "grid"
    num_samples: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Objective:
    metric: tuple[str, ...] = ("energy",)
    mode: tuple[str, ...] = ("min",)
    agg: str = "median"


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class Scheduler:
    """ASHA on the reported objective; needs one number of epochs across the space."""

    type: str = "asha"
    grace_period: int = 1
    reduction_factor: int = 2


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
        options = [d if isinstance(d, tuple) else (_cast(d, d.low), _cast(d, d.high)) for d in (self.space[n] for n in names)]
        return [dict(zip(names, values)) for values in itertools.product(*options)]

    def as_dict(self) -> dict[str, Any]:
        """The spec as plain data (what is saved beside the sweep and hashed for --resume)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]

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
    raw = _mapping("spec", raw)
    _known("spec", raw, _TOP)
    for required in ("name", "problem", "space", "seeds"):
        if required not in raw:
            raise SpecError(required, "is required")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError("name", f"{name!r} is not allowed; allowed: 1 to 100 letters, digits, '_', '.', '-' (a letter or digit first)")
    problem = raw["problem"]
    if not isinstance(problem, str) or problem not in PROBLEMS:
        raise SpecError("problem", f"unknown {problem!r}; allowed: {', '.join(PROBLEMS)}")
    fixed = {k: _value(f"fixed.{k}", k, v) for k, v in _known("fixed", _mapping("fixed", raw.get("fixed", {})), PARAMS).items()}
    space_raw = _known("space", _mapping("space", raw["space"]), PARAMS)
    if not space_raw:
        raise SpecError("space", "is empty; allowed: at least one parameter with a list or a {low, high} range")
    space = {k: _dimension(f"space.{k}", k, v) for k, v in space_raw.items()}
    both = sorted(set(fixed) & set(space))
    if both:
        raise SpecError(f"space.{both[0]}", "is also in fixed; allowed: one of the two")
    search = _search(raw.get("search", {}), space)
    objective = _objective(raw.get("objective", {}))
    meaningless = {1: ("bands", "transitions_wall"), 2: ("transitions_per_period",)}[PROBLEMS[problem].dim]
    for m in objective.metric:
        if m in meaningless:
            raise SpecError("objective.metric", f"{m!r} is not measured for {problem} ({PROBLEMS[problem].dim}D)")
    spec = SweepSpec(
        name=name,
        problem=problem,
        fixed=fixed,
        space=space,
        seeds=_int("seeds", raw["seeds"], low=1),
        search=search,
        objective=objective,
        resources=_resources(raw.get("resources", {})),
        scheduler=_scheduler(raw["scheduler"]) if raw.get("scheduler") is not None else None,
        checkpoint_every=_int("checkpoint_every", raw["checkpoint_every"], low=1) if "checkpoint_every" in raw else None,
        max_failures=_int("max_failures", raw.get("max_failures", 2), low=0),
        quick=_quick(raw.get("quick"), space),
        pack=_pack(raw.get("pack"), space, search, raw.get("scheduler")),
    )
    spec._check_points()
    return spec


def _pack(raw: Any, space: dict[str, Dimension], search: Search, scheduler: Any) -> tuple[str, ...]:
    """`pack: [fourier, epsilon]`: which listed dimensions each trial carries whole."""
    if raw is None:
        return ()
    names = _as_tuple(raw)
    for name in names:
        if name not in PACKABLE:
            raise SpecError("pack", f"{name!r} cannot be packed (members of one model share it); allowed: {', '.join(PACKABLE)}")
        if name not in space or isinstance(space[name], Range):
            raise SpecError("pack", f"{name!r} is not a list in space; allowed: dimensions of space given as lists")
    if len(set(names)) != len(names):
        raise SpecError("pack", f"repeats a dimension in {list(names)!r}; allowed: distinct dimensions")
    if search.sampler not in ("grid", "random"):
        raise SpecError("pack", f"sampler {search.sampler} learns from each configuration's result: it keeps one per trial; "
                                "allowed with pack: grid, random")
    if scheduler is not None:
        raise SpecError("pack", "a scheduler stops trials one configuration at a time; allowed: pack or scheduler, not both")
    if all(name in names for name in space):
        raise SpecError("pack", "packs every dimension of space: nothing is left to search; "
                                "allowed: leave one dimension (a one-value list will do) unpacked")
    return names


def _search(raw: Any, space: dict[str, Dimension]) -> Search:
    raw = _known("search", _mapping("search", raw), ("sampler", "num_samples", "seed"))
    sampler = raw.get("sampler", "grid")
    if sampler not in SAMPLERS:
        raise SpecError("search.sampler", f"unknown {sampler!r}; allowed: {', '.join(SAMPLERS)}")
    num_samples = raw.get("num_samples")
    if sampler == "grid":
        ranged = [k for k, d in space.items() if isinstance(d, Range)]
        if ranged:
            raise SpecError(f"space.{ranged[0]}", "a grid needs lists, not ranges; allowed: a list, or a sampler other than grid")
        if num_samples is not None:
            raise SpecError("search.num_samples", "a grid runs every point once; allowed: leave it out with sampler grid")
    else:
        if num_samples is None:
            raise SpecError("search.num_samples", f"is required with sampler {sampler}; allowed: an integer >= 1")
        num_samples = _int("search.num_samples", num_samples, low=1)
    return Search(sampler=sampler, num_samples=num_samples, seed=_int("search.seed", raw.get("seed", 0), low=0))


def _objective(raw: Any) -> Objective:
    raw = _known("objective", _mapping("objective", raw), ("metric", "mode", "agg"))
    metric = _as_tuple(raw.get("metric", "energy"))
    mode = _as_tuple(raw.get("mode", "min"))
    if not metric:
        raise SpecError("objective.metric", f"is empty; allowed: one or more of {', '.join(METRICS)}")
    for m in metric:
        if not isinstance(m, str) or m not in METRICS:
            raise SpecError("objective.metric", f"{m!r} is not a result column; allowed: {', '.join(METRICS)}")
    for m in mode:
        if not isinstance(m, str) or m not in ("min", "max"):
            raise SpecError("objective.mode", f"{m!r} is not allowed; allowed: min, max")
    if len(metric) != len(mode):
        raise SpecError("objective.mode", f"{len(mode)} modes for {len(metric)} metrics; allowed: one mode per metric")
    agg = raw.get("agg", "median")
    if agg not in AGGREGATES:
        raise SpecError("objective.agg", f"unknown {agg!r}; allowed: {', '.join(AGGREGATES)}")
    return Objective(metric=metric, mode=mode, agg=agg)


def _resources(raw: Any) -> Resources:
    raw = _known("resources", _mapping("resources", raw), ("cpu", "gpu"))
    cpu, gpu = raw.get("cpu", 1), raw.get("gpu", 0)
    if not _is_number(cpu) or not math.isfinite(cpu) or cpu <= 0:
        raise SpecError("resources.cpu", f"{cpu!r} is not allowed; allowed: a finite number > 0")
    if not _is_number(gpu) or not math.isfinite(gpu) or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise SpecError("resources.gpu", f"{gpu!r} is not allowed; allowed: a fraction in [0, 1] or a whole number")
    return Resources(cpu=float(cpu), gpu=float(gpu))


def _scheduler(raw: Any) -> Scheduler:
    raw = _known("scheduler", _mapping("scheduler", raw), ("type", "grace_period", "reduction_factor"))
    if raw.get("type", "asha") != "asha":
        raise SpecError("scheduler.type", f"unknown {raw.get('type')!r}; allowed: asha")
    return Scheduler(
        grace_period=_int("scheduler.grace_period", raw.get("grace_period", 1), low=1),
        reduction_factor=_int("scheduler.reduction_factor", raw.get("reduction_factor", 2), low=2),
    )


def _quick(raw: Any, space: dict[str, Dimension]) -> dict[str, Any] | None:
    if raw is None:
        return None
    raw = _known("quick", _mapping("quick", raw), ("epochs", "seeds", "space", "num_samples"))
    out: dict[str, Any] = {}
    if "epochs" in raw:
        out["epochs"] = _int("quick.epochs", raw["epochs"], low=1)
    if "seeds" in raw:
        out["seeds"] = _int("quick.seeds", raw["seeds"], low=1)
    if "num_samples" in raw:
        out["num_samples"] = _int("quick.num_samples", raw["num_samples"], low=1)
    if "space" in raw:
        sub = _mapping("quick.space", raw["space"])
        unknown = [k for k in sub if k not in space]
        if unknown:
            raise SpecError(f"quick.space.{unknown[0]}", f"is not in space; allowed: {', '.join(space)}")
        out["space"] = {k: _dimension(f"quick.space.{k}", k, v) for k, v in sub.items()}
    return out


def _dimension(field: str, param: str, raw: Any) -> Dimension:
    if isinstance(raw, list):
        if not raw:
            raise SpecError(field, "is an empty list; allowed: at least one value")
        values = tuple(_value(f"{field}[{i}]", param, v) for i, v in enumerate(raw))
        if len(set(map(repr, values))) != len(values):
            raise SpecError(field, f"repeats a value in {raw!r}; allowed: distinct values")
        return values
    if isinstance(raw, dict):
        if param in _LIST_ONLY:
            raise SpecError(field, f"a range of {param} would reach values it does not allow; allowed: a list")
        _known(field, raw, ("low", "high", "step", "log"))
        if "low" not in raw or "high" not in raw:
            raise SpecError(field, "a range needs low and high")
        integer = param in _INT_PARAMS
        low, high = _value(f"{field}.low", param, raw["low"]), _value(f"{field}.high", param, raw["high"])
        if low is None or high is None or not _is_number(low) or not _is_number(high):
            raise SpecError(field, f"a range of {param} needs numbers; allowed: a list for it")
        if low > high:
            raise SpecError(field, f"low {low} > high {high}; allowed: low <= high")
        step = raw.get("step")
        if step is not None and (not _is_number(step) or step <= 0 or (integer and step != int(step))):
            raise SpecError(f"{field}.step", f"{step!r} is not allowed; allowed: {'an integer' if integer else 'a number'} > 0")
        if step is not None and step > high - low:
            raise SpecError(f"{field}.step", f"{step!r} is larger than the range {low}..{high}; allowed: a step <= high - low, or a one-value list")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise SpecError(f"{field}.log", f"{log!r} is not allowed; allowed: true, false")
        if log and low <= 0:
            raise SpecError(field, f"a log range needs low > 0, got {low}")
        if log and step is not None:
            raise SpecError(field, "log and step together are not allowed; allowed: one of them")
        return Range(low=low, high=high, step=step, log=log, integer=integer)
    return (_value(field, param, raw),)  # a single value: a one-point list


_LIST_ONLY = {"boundary_batch"}  # a multiple of 4 in 2D: a range would sample values that fail
_INT_PARAMS = {f.name for f in dataclasses.fields(TrainConfig) if f.type in ("int", "int | None")}
_FLOAT_PARAMS = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "float"}
_BOOL_PARAMS = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "bool"}


def _value(field: str, param: str, v: Any) -> Any:
    """One value of a parameter, typed as the configuration types it ('none' for fourier means no map)."""
    if param == "fourier" and (v is None or v == "none"):
        return None
    if param in _BOOL_PARAMS:
        if not isinstance(v, bool):
            raise SpecError(field, f"{v!r} is not allowed; allowed: true, false")
        return v
    if param in _INT_PARAMS:
        if isinstance(v, bool) or not isinstance(v, int):
            allowed = "an integer or 'none'" if param == "fourier" else "an integer"
            raise SpecError(field, f"{v!r} is not allowed; allowed: {allowed}")
        return v
    if param in _FLOAT_PARAMS:
        if not _is_number(v):
            raise SpecError(field, f"{v!r} is not allowed; allowed: a number")
        return float(v)
    if not isinstance(v, str):
        raise SpecError(field, f"{v!r} is not allowed; allowed: a name")
    return v


def _cast(d: Range, v: float) -> Any:
    return int(v) if d.integer else float(v)


def _mapping(field: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(field, f"is a {type(raw).__name__}; allowed: a mapping of keys to values")
    return raw


def _known(field: str, raw: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    for key in raw:
        if key not in allowed:
            prefix = "" if field == "spec" else f"{field}."
            raise SpecError(f"{prefix}{key}", f"unknown key; allowed: {', '.join(allowed)}")
    return raw


def _int(field: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(field, f"{v!r} is not allowed; allowed: an integer >= {low}")
    return v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _as_tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, list) else (v,)


def _show(point: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'none' if v is None else v}" for k, v in point.items())
