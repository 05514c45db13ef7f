"""Progress of a running sweep, one line per finished trial: done/total, running, failed, best, ETA."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from ray.tune import Callback

from pipeline.spec import SweepSpec


class SweepProgress(Callback):
    """A Ray Tune callback (it runs in the driver, and is pickled with the experiment's state)."""

    def __init__(self, spec: SweepSpec, total: int | None = None, before: int = 0):
        self.spec = spec
        self.total = spec.num_trials if total is None else total
        self.before = before  # trials finished by earlier fits of this sweep (a sweep of many fits counts on)
        self.metric = spec.objective.metric[0]
        self.mode = spec.objective.mode[0]
        self.setup()

    def setup(self, **info: Any) -> None:
        self.started = time.time()
        self.running: set[str] = set()
        self.done = 0
        self.failed = 0
        self.trial_steps = 0
        self.best: tuple[float, str] | None = None

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        try:  # what the trial trained: its configurations' steps × seeds (for trial-steps per second)
            configs = self.spec.trial_configs(self.spec.searched_point(trial.config))
            last = trial.last_result or {}
            steps = sum(c.epochs for c in configs) if "trained_seconds" in last else int(last.get("step", 0)) * len(configs)
            self.trial_steps += steps * self.spec.seeds
        except Exception:  # noqa: BLE001 - a progress line must never end a sweep
            pass
        if self.spec.scheduler is not None and "trained_seconds" not in (trial.last_result or {}):
            self._stopped(trial.trial_id)  # ended before its last step: by the scheduler
        value = (trial.last_result or {}).get(self.metric)
        if value is not None and math.isfinite(value):
            better = self.best is None or (value < self.best[0] if self.mode == "min" else value > self.best[0])
            if better:
                self.best = (value, trial.trial_id)
        self._line(trials)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"drmfm: trial {trial.trial_id} failed ({_error(trial)}); it is retried from its last checkpoint", file=sys.stderr, flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
        self.failed += 1
        print(f"drmfm: trial {trial.trial_id} failed ({_error(trial)}); its retries are spent", file=sys.stderr, flush=True)
        self._line(trials)

    def _stopped(self, trial_id: str) -> None:
        """A trial the scheduler stopped: its staged snapshot becomes its rows; its runs end KILLED.
        The sweep's recorder does it (it keeps the index of what has landed)."""
        import ray

        from pipeline.recorder import control
        from pipeline.tuning import session

        recorder = session(self.spec.name)
        try:
            ray.get(control(recorder.promote).remote(trial_id), timeout=120)
        except Exception as e:  # noqa: BLE001 - the snapshot is dropped; a resume trains the trial again
            print(f"drmfm: warning: trial {trial_id} stopped by the scheduler was not recorded ({type(e).__name__})", file=sys.stderr)

    def _line(self, trials: list) -> None:
        finished = self.done + self.failed
        elapsed = time.time() - self.started
        eta = f"ETA {_duration(elapsed / finished * max(self.total - self.before - finished, 0))}" if finished else "ETA ?"
        finished += self.before
        best = f"best {self.metric} {self.best[0]:.4g} ({self.best[1]})" if self.best else f"best {self.metric} —"
        rate = f"{self.trial_steps / elapsed:,.0f} trial-steps/s" if elapsed > 0 and self.trial_steps else "— trial-steps/s"
        print(
            f"[{finished:>{len(str(self.total))}}/{self.total}] running {len(self.running)}, failed {self.failed}, "
            f"{best}, {rate}, {_duration(elapsed)} elapsed, {eta}",
            file=sys.stderr,
            flush=True,
        )


def _error(trial: Any) -> str:
    """The trial's error in one line (Tune keeps the whole traceback in the trial's error.txt)."""
    from pipeline.sweep_report import error_text

    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001 - a progress line must never end a sweep
        error = None
    return error_text(error) if error else "its error could not be read back"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
