"""A trial's configuration: typed, frozen, validated strictly, hashed without the seed.

`TrainConfig` holds what a user sets (CLI flags, a sweep point); `TrainConfig.resolve()` fills the
per-dimension defaults of the paper and checks every field, raising `ConfigError(field, allowed)`
so that the CLI can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from drm.problems import PROBLEMS, get_problem

ACTIVATIONS = ("relu", "smooth_abs", "smooth_relu", "tanh")
FOURIER_MAPS = ("sincos", "x_sincos")
DTYPES = ("float32", "float64")
DEVICES = ("auto", "cpu", "cuda")
# Past 2^12·π the map's features mean nothing: in float32 the phase 2^i·π·x on [0, 1] is off by
# 2^i·π·2^-24 > 1e-3 rad, and the 20,001-node counting grid holds fewer than 9 nodes per period.
MAX_FOURIER = 12
_WHY_MAX_FOURIER = "past 2^12·π the float32 phase is off by more than 1e-3 rad and the counting grid cannot resolve a period"


class ConfigError(ValueError):
    """A field with a value outside what is allowed; `str()` is the one line the CLI prints."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        self.message = message
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class TrainConfig:
    """One trial's configuration. `None` means "the paper's default for this problem"."""

    problem: str = "double_well"
    depth: int = 3
    width: int = 128
    activation: str | None = None
    rho: float = 0.1
    fourier: int | None = None
    fourier_map: str | None = None
    epsilon: float = 0.0
    epochs: int | None = None
    lr: float = 1.0e-4
    penalty: float = 500.0
    batch: int | None = None
    boundary_batch: int | None = None
    resample: bool = True
    dtype: str = "float32"
    transition_threshold: float = 0.1
    log_points: int = 200

    @property
    def dim(self) -> int:
        return get_problem(self.problem).dim

    @property
    def needs_u2(self) -> bool:
        """Whether the loss has its ε² u_2² term, so that the second-derivative stream is carried."""
        return self.epsilon > 0

    def resolve(self) -> TrainConfig:
        """The same configuration with the paper's defaults filled in, every field checked."""
        if self.problem not in PROBLEMS:
            raise ConfigError("problem", f"unknown {self.problem!r}; allowed: {', '.join(PROBLEMS)}")
        problem = get_problem(self.problem)
        resolved = dataclasses.replace(
            self,
            activation=self.activation or problem.default_activation,
            fourier_map=self.fourier_map or problem.default_fourier_map,
            epochs=self.epochs if self.epochs is not None else problem.default_epochs,
            batch=self.batch if self.batch is not None else problem.default_batch,
            boundary_batch=(
                self.boundary_batch if self.boundary_batch is not None else problem.default_boundary_batch
            ),
        )
        resolved._check()
        return resolved

    def _check(self) -> None:
        _require_int("depth", self.depth, low=1)
        _require_int("width", self.width, low=1)
        _require_int("epochs", self.epochs, low=1)
        _require_int("batch", self.batch, low=1)
        _require_int("log_points", self.log_points, low=1)
        if self.activation not in ACTIVATIONS:
            raise ConfigError("activation", f"unknown {self.activation!r}; allowed: {', '.join(ACTIVATIONS)}")
        if self.fourier_map not in FOURIER_MAPS:
            raise ConfigError("fourier_map", f"unknown {self.fourier_map!r}; allowed: {', '.join(FOURIER_MAPS)}")
        if self.fourier is not None:
            _require_int("fourier", self.fourier, low=0, allowed="an integer >= 0 or 'none'")
            if self.fourier > MAX_FOURIER:
                raise ConfigError("fourier", f"{self.fourier} is not allowed; allowed: 0..{MAX_FOURIER} or 'none' ({_WHY_MAX_FOURIER})")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", f"unknown {self.dtype!r}; allowed: {', '.join(DTYPES)}")
        _require_float("rho", self.rho, positive=True)
        _require_float("epsilon", self.epsilon, positive=False)
        _require_float("lr", self.lr, positive=True)
        _require_float("penalty", self.penalty, positive=False)
        _require_float("transition_threshold", self.transition_threshold, positive=False)
        if self.epsilon > 0 and self.activation == "relu":
            raise ConfigError(
                "epsilon",
                f"epsilon = {self.epsilon} > 0 needs a smooth activation (a ReLU net has zero second "
                "derivative almost everywhere); allowed with epsilon > 0: smooth_abs, smooth_relu, tanh",
            )
        why = get_problem(self.problem).domain.check_boundary_batch(self.boundary_batch)
        if why is not None:
            raise ConfigError("boundary_batch", why)

    def as_dict(self) -> dict[str, Any]:
        """The configuration as plain values (what is saved with every row, run and checkpoint)."""
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """A short stable hash of the resolved configuration (the seed is not part of it)."""
        text = json.dumps(self.resolve().as_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        fourier = "none" if self.fourier is None else f"2^{self.fourier}π ({self.fourier_map})"
        return (
            f"{self.problem} depth={self.depth} width={self.width} {self.activation} fourier={fourier} "
            f"ε={self.epsilon:g} epochs={self.epochs} lr={self.lr:g} λ={self.penalty:g}"
        )


def _require_int(name: str, value: Any, low: int, allowed: str | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(name, f"{value!r} is not allowed; allowed: {allowed or f'an integer >= {low}'}")


def _require_float(name: str, value: Any, positive: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        raise ConfigError(name, f"{value!r} is not allowed; allowed: a finite number {'> 0' if positive else '>= 0'}")


# What may differ between the members of one packed model: the map's frequency (with the map on:
# no map means another input width) and ε (the u_2 stream is carried for all once one needs it).
PACKABLE = ("fourier", "epsilon")


def pack_key(config: TrainConfig) -> tuple:
    """Members whose configurations have the same key can train as one packed model."""
    c = config.resolve()
    return (dataclasses.replace(c, fourier=None, epsilon=0.0), c.fourier is None)


def check_pack(configs: list[TrainConfig]) -> list[TrainConfig]:
    """The resolved configurations of a pack's members, or a ConfigError naming what differs."""
    resolved = [c.resolve() for c in configs]
    first = resolved[0].as_dict()
    for c in resolved[1:]:
        if pack_key(c) != pack_key(resolved[0]):
            differ = [k for k, v in c.as_dict().items() if v != first[k] and k not in PACKABLE]
            if (c.fourier is None) != (resolved[0].fourier is None):
                differ.append("fourier (none with a map)")
            raise ConfigError("pack", f"members differ in {', '.join(differ)}; allowed to differ in one pack: fourier (all with a map) and epsilon")
    return resolved
