"""The sections of a sweep spec (search, objective, resources, scheduler, quick, pack, the space's
dimensions and values), each a typed value parsed strictly: `pipeline.spec` assembles them into a
`SweepSpec`. Every error is a `SpecError` naming the field's dotted path and what is allowed."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from drm.config import PACKABLE, ConfigError, TrainConfig
from drm.metrics import metrics

AGGREGATES = ("median", "mean", "min", "max")
# Fields a sweep may fix or vary: the configuration of a trial, less the problem (one per sweep).
PARAMS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name != "problem")


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


def parse_pack(raw: Any, space: dict[str, Dimension], search: Search, scheduler: Any) -> tuple[str, ...]:
    """`pack: [fourier, epsilon]`: which listed dimensions each trial carries whole."""
    if raw is None:
        return ()
    names = as_tuple(raw)
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


def parse_search(raw: Any, space: dict[str, Dimension]) -> Search:
    raw = known("search", mapping("search", raw), ("sampler", "num_samples", "seed"))
    from pipeline.samplers import SAMPLERS

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
        num_samples = integer("search.num_samples", num_samples, low=1)
    return Search(sampler=sampler, num_samples=num_samples, seed=integer("search.seed", raw.get("seed", 0), low=0))


def objective_names() -> list[str]:
    return [m.name for m in metrics() if m.objective]


def parse_objective(raw: Any) -> Objective:
    raw = known("objective", mapping("objective", raw), ("metric", "mode", "agg"))
    metric = as_tuple(raw.get("metric", "energy"))
    mode = as_tuple(raw.get("mode", "min"))
    if not metric:
        raise SpecError("objective.metric", f"is empty; allowed: one or more of {', '.join(objective_names())}")
    for m in metric:
        if not isinstance(m, str) or m not in objective_names():
            raise SpecError("objective.metric", f"{m!r} is not a result column; allowed: {', '.join(objective_names())}")
    for m in mode:
        if not isinstance(m, str) or m not in ("min", "max"):
            raise SpecError("objective.mode", f"{m!r} is not allowed; allowed: min, max")
    if len(metric) != len(mode):
        raise SpecError("objective.mode", f"{len(mode)} modes for {len(metric)} metrics; allowed: one mode per metric")
    agg = raw.get("agg", "median")
    if agg not in AGGREGATES:
        raise SpecError("objective.agg", f"unknown {agg!r}; allowed: {', '.join(AGGREGATES)}")
    return Objective(metric=metric, mode=mode, agg=agg)


def parse_resources(raw: Any) -> Resources:
    raw = known("resources", mapping("resources", raw), ("cpu", "gpu"))
    cpu, gpu = raw.get("cpu", 1), raw.get("gpu", 0)
    if not is_number(cpu) or not math.isfinite(cpu) or cpu <= 0:
        raise SpecError("resources.cpu", f"{cpu!r} is not allowed; allowed: a finite number > 0")
    if not is_number(gpu) or not math.isfinite(gpu) or gpu < 0 or (gpu > 1 and gpu != int(gpu)):
        raise SpecError("resources.gpu", f"{gpu!r} is not allowed; allowed: a fraction in [0, 1] or a whole number")
    return Resources(cpu=float(cpu), gpu=float(gpu))


def parse_scheduler(raw: Any) -> Scheduler:
    raw = known("scheduler", mapping("scheduler", raw), ("type", "grace_period", "reduction_factor"))
    if raw.get("type", "asha") != "asha":
        raise SpecError("scheduler.type", f"unknown {raw.get('type')!r}; allowed: asha")
    return Scheduler(
        grace_period=integer("scheduler.grace_period", raw.get("grace_period", 1), low=1),
        reduction_factor=integer("scheduler.reduction_factor", raw.get("reduction_factor", 2), low=2),
    )


def parse_quick(raw: Any, space: dict[str, Dimension]) -> dict[str, Any] | None:
    if raw is None:
        return None
    raw = known("quick", mapping("quick", raw), ("epochs", "seeds", "space", "num_samples"))
    out: dict[str, Any] = {}
    if "epochs" in raw:
        out["epochs"] = integer("quick.epochs", raw["epochs"], low=1)
    if "seeds" in raw:
        out["seeds"] = integer("quick.seeds", raw["seeds"], low=1)
    if "num_samples" in raw:
        out["num_samples"] = integer("quick.num_samples", raw["num_samples"], low=1)
    if "space" in raw:
        sub = mapping("quick.space", raw["space"])
        unknown = [k for k in sub if k not in space]
        if unknown:
            raise SpecError(f"quick.space.{unknown[0]}", f"is not in space; allowed: {', '.join(space)}")
        out["space"] = {k: parse_dimension(f"quick.space.{k}", k, v) for k, v in sub.items()}
    return out


def parse_dimension(field: str, param: str, raw: Any) -> Dimension:
    if isinstance(raw, list):
        if not raw:
            raise SpecError(field, "is an empty list; allowed: at least one value")
        values = tuple(parse_value(f"{field}[{i}]", param, v) for i, v in enumerate(raw))
        if len(set(map(repr, values))) != len(values):
            raise SpecError(field, f"repeats a value in {raw!r}; allowed: distinct values")
        return values
    if isinstance(raw, dict):
        if param in _LIST_ONLY:
            raise SpecError(field, f"a range of {param} would reach values it does not allow; allowed: a list")
        known(field, raw, ("low", "high", "step", "log"))
        if "low" not in raw or "high" not in raw:
            raise SpecError(field, "a range needs low and high")
        integer = param in _INT_PARAMS
        low, high = parse_value(f"{field}.low", param, raw["low"]), parse_value(f"{field}.high", param, raw["high"])
        if low is None or high is None or not is_number(low) or not is_number(high):
            raise SpecError(field, f"a range of {param} needs numbers; allowed: a list for it")
        if low > high:
            raise SpecError(field, f"low {low} > high {high}; allowed: low <= high")
        step = raw.get("step")
        if step is not None and (not is_number(step) or step <= 0 or (integer and step != int(step))):
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
    return (parse_value(field, param, raw),)  # a single value: a one-point list


_LIST_ONLY = {"boundary_batch"}  # a multiple of 4 in 2D: a range would sample values that fail
_INT_PARAMS = {f.name for f in dataclasses.fields(TrainConfig) if f.type in ("int", "int | None")}
_FLOAT_PARAMS = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "float"}
_BOOL_PARAMS = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "bool"}


def parse_value(field: str, param: str, v: Any) -> Any:
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
        if not is_number(v):
            raise SpecError(field, f"{v!r} is not allowed; allowed: a number")
        return float(v)
    if not isinstance(v, str):
        raise SpecError(field, f"{v!r} is not allowed; allowed: a name")
    return v


def cast(d: Range, v: float) -> Any:
    return int(v) if d.integer else float(v)


def mapping(field: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(field, f"is a {type(raw).__name__}; allowed: a mapping of keys to values")
    return raw


def known(field: str, raw: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    for key in raw:
        if key not in allowed:
            prefix = "" if field == "spec" else f"{field}."
            raise SpecError(f"{prefix}{key}", f"unknown key; allowed: {', '.join(allowed)}")
    return raw


def integer(field: str, v: Any, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SpecError(field, f"{v!r} is not allowed; allowed: an integer >= {low}")
    return v


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def as_tuple(v: Any) -> tuple[Any, ...]:
    return tuple(v) if isinstance(v, list) else (v,)
