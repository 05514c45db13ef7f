"""Optuna's samplers as Ray Tune runs them (pipeline.samplers builds them; importing this imports Optuna)."""

from __future__ import annotations

from typing import Any

import optuna


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
