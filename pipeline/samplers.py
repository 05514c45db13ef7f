"""The spec's search space and sampler, as Optuna objects for Ray Tune's OptunaSearch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna
import optuna.distributions as distributions

if TYPE_CHECKING:
    from pipeline.spec import SweepSpec


class TuneGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid run by Ray Tune, which ends it at num_samples = grid size.

    Optuna's own end-of-grid `study.stop()` works only inside `study.optimize`, which Tune does
    not use; there it raises, and Tune logs the error after the last trial.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


class TuneQMCSampler(optuna.samplers.QMCSampler):
    """Optuna's QMC sampler, its sequence continued `offset` samples on: a sweep drawn as several Tuner
    fits (each a fresh study) is one Sobol sequence, not the same first points again. (Unscrambled,
    Optuna's default, the seed does not move the sequence; it counts samples in the study.)"""

    def __init__(self, *, seed: int | None = None, offset: int = 0):
        super().__init__(seed=seed)
        self._offset = offset

    def _find_sample_id(self, study: Any, search_space: dict) -> int:
        return super()._find_sample_id(study, search_space) + self._offset


def search_space(spec: SweepSpec) -> dict[str, distributions.BaseDistribution]:
    """Lists are categorical; {low, high[, step][, log]} are int or float ranges by the parameter's type."""
    from pipeline.spec import Range

    space: dict[str, distributions.BaseDistribution] = {}
    for name, dim in spec.searched.items():
        if not isinstance(dim, Range):
            space[name] = distributions.CategoricalDistribution(list(dim))
        elif dim.integer:
            space[name] = distributions.IntDistribution(int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        else:
            space[name] = distributions.FloatDistribution(dim.low, dim.high, step=dim.step, log=dim.log)
    return space


def _grid(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    return TuneGridSampler({k: list(v) for k, v in spec.searched.items()}, seed=seed)


# The samplers a spec may name, each built from the spec and a seed: the one list of them.
# `offset`: how many samples the sweep drew before (a later fit): seeded past them, or (qmc) the sequence continued.
SAMPLERS: dict[str, Callable[[SweepSpec, int, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda spec, seed, offset: _grid(spec, seed + offset),
    "random": lambda spec, seed, offset: optuna.samplers.RandomSampler(seed=seed + offset),
    "tpe": lambda spec, seed, offset: optuna.samplers.TPESampler(seed=seed + offset),
    "qmc": lambda spec, seed, offset: TuneQMCSampler(seed=seed, offset=offset),
    "gp": lambda spec, seed, offset: optuna.samplers.GPSampler(seed=seed + offset),
}

# Those whose next point does not depend on any result: a sweep asks them for a point per free slot at
# once (pipeline.tuning.pending_trials). tpe and gp learn from each result, so they wait for it.
INDEPENDENT = frozenset({"grid", "random", "qmc"})


def sampler(spec: SweepSpec, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded; `offset` shifts the seed (a sampler rebuilt after `offset` samples
    does not draw the first ones again). A name it does not know is refused, never replaced."""
    try:
        make = SAMPLERS[spec.search.sampler]
    except KeyError:
        raise ValueError(f"search.sampler: unknown {spec.search.sampler!r}; allowed: {', '.join(SAMPLERS)}") from None
    return make(spec, spec.search.seed, offset)
