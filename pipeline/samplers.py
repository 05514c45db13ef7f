"""The spec's search space and sampler, as Optuna objects for Ray Tune's OptunaSearch.

Optuna is imported when a sampler or a space is built, not when a spec is read: the sampler's names
are all a spec needs, so a machine without Optuna (the GPU check's) reads specs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    import optuna.distributions as distributions

    from pipeline.spec import SweepSpec


def search_space(spec: SweepSpec) -> dict[str, distributions.BaseDistribution]:
    """Lists are categorical; {low, high[, step][, log]} are int or float ranges by the parameter's type."""
    import optuna.distributions as distributions

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


def _grid(spec: SweepSpec, seed: int, offset: int) -> optuna.samplers.BaseSampler:
    from pipeline._optuna_samplers import TuneGridSampler

    return TuneGridSampler({k: list(v) for k, v in spec.searched.items()}, seed=seed + offset)


def _qmc(spec: SweepSpec, seed: int, offset: int) -> optuna.samplers.BaseSampler:
    from pipeline._optuna_samplers import TuneQMCSampler

    return TuneQMCSampler(seed=seed, offset=offset)


def _optuna(name: str) -> Callable[[SweepSpec, int, int], optuna.samplers.BaseSampler]:
    """Optuna's sampler `name`, seeded past the `offset` samples drawn before."""

    def make(spec: SweepSpec, seed: int, offset: int) -> optuna.samplers.BaseSampler:
        import optuna

        return getattr(optuna.samplers, name)(seed=seed + offset)

    return make


# The samplers a spec may name, each built from the spec and a seed: the one list of them.
# `offset`: how many samples the sweep drew before (a later fit): seeded past them, or (qmc) the sequence continued.
SAMPLERS: dict[str, Callable[[SweepSpec, int, int], optuna.samplers.BaseSampler]] = {
    "grid": _grid,
    "random": _optuna("RandomSampler"),
    "tpe": _optuna("TPESampler"),
    "qmc": _qmc,
    "gp": _optuna("GPSampler"),
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
