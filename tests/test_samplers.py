"""The samplers of later fits (pipeline.samplers, offset = the samples drawn before): new points,
never the first fit's again (a sweep of many fits, pipeline.tuning.TRIALS_PER_FIT)."""

from __future__ import annotations

import optuna
import pytest

from pipeline._optuna_samplers import TuneQMCSampler
from pipeline.samplers import sampler
from pipeline.spec import parse_spec

# Optuna marks QMCSampler and GPSampler experimental: its warning, not a defect of ours.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPACE = {"x": optuna.distributions.FloatDistribution(0.0, 1.0), "y": optuna.distributions.FloatDistribution(0.0, 1.0)}


def _asked(sampler_: optuna.samplers.BaseSampler, n: int) -> list[tuple[float, float]]:
    """n points asked after one told trial (QMC learns the space from the first complete trial)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=sampler_)
    study.add_trial(optuna.trial.create_trial(params={"x": 0.5, "y": 0.5}, distributions=SPACE, value=0.0))
    out = []
    for _ in range(n):
        trial = study.ask(SPACE)
        out.append((trial.params["x"], trial.params["y"]))
        study.tell(trial, 0.0)
    return out


def test_a_later_fit_continues_the_qmc_sequence_instead_of_repeating_it():
    whole = _asked(TuneQMCSampler(seed=0), 6)
    assert _asked(TuneQMCSampler(seed=0, offset=3), 3) == whole[3:]  # the next points of one Sobol sequence
    assert len(set(whole)) == 6
    plain = _asked(optuna.samplers.QMCSampler(seed=1), 3)
    assert plain == _asked(optuna.samplers.QMCSampler(seed=2), 3)  # Optuna's seed does not move an unscrambled sequence


def test_every_sampler_of_a_later_fit_draws_new_points():
    for name in ("random", "tpe", "qmc", "gp"):
        spec = parse_spec({"name": "s", "problem": "double_well", "seeds": 1, "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                           "search": {"sampler": name, "num_samples": 20, "seed": 0}})
        first, later = _asked(sampler(spec, 0), 4), _asked(sampler(spec, 4), 4)
        assert not set(first) & set(later), name
