"""The spec's search space and sampler, as Optuna objects for Ray Tune's OptunaSearch."""

from __future__ import annotations

from typing import Any

import optuna
import optuna.distributions as distributions

from pipeline.spec import Range, SweepSpec


class TuneGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid run by Ray Tune, which ends it at num_samples = grid size.

    Optuna's own end-of-grid `study.stop()` works only inside `study.optimize`, which Tune does
    not use; there it raises, and Tune logs the error after the last trial.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def search_space(spec: SweepSpec) -> dict[str, distributions.BaseDistribution]:
    """Lists are categorical; {low, high[, step][, log]} are int or float ranges by the parameter's type."""
    space: dict[str, distributions.BaseDistribution] = {}
    for name, dim in spec.searched.items():
        if not isinstance(dim, Range):
            space[name] = distributions.CategoricalDistribution(list(dim))
        elif dim.integer:
            space[name] = distributions.IntDistribution(int(dim.low), int(dim.high), step=int(dim.step or 1), log=dim.log)
        else:
            space[name] = distributions.FloatDistribution(dim.low, dim.high, step=dim.step, log=dim.log)
    return space


def sampler(spec: SweepSpec, offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded; `offset` shifts the seed (a sampler rebuilt after `offset` samples
    does not draw the first ones again)."""
    seed = spec.search.seed + offset
    if spec.search.sampler == "grid":
        return TuneGridSampler({k: list(v) for k, v in spec.searched.items()}, seed=seed)
    return _SAMPLERS[spec.search.sampler](seed)


_SAMPLERS = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
}
