"""The Ray Tune runs of one sweep: the search (new, restored, or rebuilt from the tables) and the repair.

1. The search. A new sweep gets Optuna's sampler through OptunaSearch. A resumed one is restored
   from Tune's saved state when that state reads (its tuner.pkl, and its newest experiment and
   search-generator state files as JSON); otherwise the tables and the spec stand in for it: a
   grid needs no search (step 3 runs every point that has no rows), a sampled space draws only
   the samples it has not drawn yet, its sampler told what the landed ones scored.
2. More samples. A restored sampled search that ended short of its samples (stopped early by a
   storage failure, say) draws the rest the same way.
   A sweep of more than TRIALS_PER_FIT trials runs its search as successive fits of at most that
   many (`fits`): a sampled space draws the next fit's samples the same way (seeded past every sample
   drawn; tpe and gp told what the landed ones scored), a grid runs its points without rows as
   plain lists. A killed driver restores the newest fit and goes on with the next.
3. The repair. Whatever configuration the record still lacks (a file deleted or quarantined, a
   trial that Tune's saved state called finished though its rows never committed) is trained
   again as a plain list of points.

Tune pickles its callbacks and stoppers with its state and restores them into a later driver.
They find that driver's recorder through `session()`, by sweep name, not in their own state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

from drm.storage import Storage
from pipeline.reconcile import group_by_config, ledger, search_trials
from pipeline.spec import SweepSpec

_POLL_SECONDS = 2.0
# Trials per Tuner fit. Tune keeps every trial of a fit in the driver (its Trial objects, results and
# statistics) and rewrites them all into its experiment state as it goes: a sweep of more trials runs
# as successive fits of at most this many, each a fresh Tuner, resumable as one (see the module).
TRIALS_PER_FIT = 1_000
_SESSIONS: dict[str, Any] = {}  # sweep name -> the recorder actor of the driver running it, in this process


def open_session(sweep: str, recorder) -> None:
    _SESSIONS[sweep] = recorder


def close_session(sweep: str) -> None:
    _SESSIONS.pop(sweep, None)


def session(sweep: str):
    """This process's recorder of `sweep`, or None."""
    return _SESSIONS.get(sweep)


def stop_reason(sweep: str) -> str | None:
    """Why the recorder wants the sweep stopped (None: go on, or no recorder to ask)."""
    from pipeline.ray_session import ask
    from pipeline.recorder import control

    recorder = session(sweep)
    return None if recorder is None else ask(control(recorder.why_stop).remote(), None, timeout=10)


def _stopper(spec: SweepSpec):
    from ray import tune

    class SweepStopper(tune.Stopper):
        """Stops every trial once the recorder has a reason. Pickled with Tune's state: only the
        sweep's name is kept, so a restored stopper starts undecided."""

        def __init__(self, sweep: str):
            self.sweep = sweep
            self._next = 0.0
            self._stop = False

        def __getstate__(self) -> dict:
            return {"sweep": self.sweep}

        def __setstate__(self, state: dict) -> None:
            self.__init__(state["sweep"])

        def __call__(self, trial_id: str, result: dict) -> bool:
            return self.stop_all()

        def stop_all(self) -> bool:
            if not self._stop and time.monotonic() >= self._next:
                self._next = time.monotonic() + _POLL_SECONDS
                self._stop = stop_reason(self.sweep) is not None
            return self._stop

    return SweepStopper(spec.name)


_RESOURCE = {"cpu": "CPU", "gpu": "GPU"}  # a trial's resource -> Ray's name for it


def trial_slots(resources: dict[str, float], totals: dict[str, float], most: dict[str, float] | None = None) -> int:
    """How many trials asking `resources` the cluster holds at once: with the resources it has
    (`totals`), or with those its autoscaler may add up to (`most`), whichever holds more; at least 1."""
    def holds(have: dict[str, float]) -> int:
        return min(int(have.get(_RESOURCE[r], 0) // need) for r, need in resources.items() if need > 0)

    return max(1, holds(totals), holds(most) if most else 0)


def cluster_slots(resources: dict[str, float]) -> int:
    """trial_slots of the connected Ray cluster, its autoscaler's maximum included where it has one."""
    import ray

    try:  # where an autoscaler runs it keeps its node groups' maximum counts in the GCS (Ray Train reads it too)
        from ray._private.state import state

        most = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - an older Ray, or none recorded: the cluster as it is
        most = None
    return trial_slots(resources, ray.cluster_resources(), most)


@contextlib.contextmanager
def pending_trials(spec: SweepSpec, slots: int):
    """While a search runs: as many trials pending as the cluster has slots, for samplers whose next
    point does not wait for a result (grid, random, qmc), so that every free slot, and an autoscaler,
    sees its demand at once. Tune's own default for a searcher is one pending trial, which fills a
    cluster node by node; tpe and gp keep it by design. Only a search's fits ask this (the plain
    lists of points keep Tune's own default, 200 at least). A TUNE_MAX_PENDING_TRIALS_PG the user set wins."""
    from pipeline.samplers import INDEPENDENT

    key = "TUNE_MAX_PENDING_TRIALS_PG"
    if key in os.environ or spec.search.sampler not in INDEPENDENT:
        yield
        return
    os.environ[key] = str(max(1, min(slots, spec.num_trials, trials_per_fit())))  # an unbounded autoscaler: one fit's worth
    try:
        yield
    finally:
        os.environ.pop(key, None)


def run_config(spec: SweepSpec, root: Storage, callbacks: list, *parts: str):
    """Tune's RunConfig for the sweep's experiment (ray/<name>), or one below it (`parts`)."""
    from ray import tune

    where = ("ray", *parts[:-1]) if parts else ("ray",)
    return tune.RunConfig(
        name=parts[-1] if parts else spec.name,
        **root.tune_location(*where),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        stop=_stopper(spec),
        verbose=0,
        callbacks=callbacks,
    )


@dataclass
class Plan:
    """What the driver runs now."""

    search: Any | None  # a Tuner for the search, or None (nothing left to search)
    note: str | None = None  # what the driver had to do instead of a plain restore, said to the user
    restored: bool = False


def trials_per_fit() -> int:
    """TRIALS_PER_FIT, or $DRMFM_TRIALS_PER_FIT (the tests' small fits)."""
    return max(1, int(os.environ.get("DRMFM_TRIALS_PER_FIT", TRIALS_PER_FIT)))


def chunked_grid(spec: SweepSpec) -> bool:
    """A grid of more points than one fit takes: run as plain lists of its points, fit by fit."""
    return spec.search.sampler == "grid" and spec.num_trials > trials_per_fit()


def plan_search(spec: SweepSpec, trainable, state: Storage, results: Storage, resume: bool, config) -> Plan:
    """The search to run: restored when its state reads, else rebuilt from the tables (see the module)."""
    from ray import tune

    located = state.tune_location()
    if not resume or not tune.Tuner.can_restore(located["storage_path"], storage_filesystem=located.get("storage_filesystem")):
        # new, or killed before Tune first saved its state: the search starts (again); landed configurations are skipped
        if chunked_grid(spec):
            return Plan(None, f"the grid's {spec.num_trials} points run as fits of at most {trials_per_fit()} trials")
        if resume and spec.search.sampler != "grid" and spec.num_trials > trials_per_fit() and search_trials(ledger(results)):
            # Killed in a later fit before Tune saved it: its first fit's seed would draw the first points again.
            more = more_samples(spec, trainable, results, config)
            return Plan(None if more is None else more[0])
        return Plan(new_search(spec, trainable, config, min(spec.num_trials, trials_per_fit()), history=[]))
    why = unreadable_state(state)
    if why is None:
        try:
            tuner = tune.Tuner.restore(located["storage_path"], trainable, resume_errored=True, storage_filesystem=located.get("storage_filesystem"))
            return Plan(tuner, restored=True)
        except Exception as e:  # noqa: BLE001 - any unreadable state: the tables are the record
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    note = f"Ray Tune's saved state of {spec.name} cannot be read ({why}); going by the tables"
    if spec.search.sampler == "grid":
        return Plan(None, note + ": every grid point without rows is trained")
    more = more_samples(spec, trainable, results, config)
    if more is None:
        return Plan(None, note + f": all {spec.num_trials} samples had been drawn; those without rows are trained")
    tuner, remaining, told = more
    learns = f", the sampler told of {told} landed" if spec.search.sampler in ("tpe", "gp") else ""
    return Plan(tuner, note + f": {remaining} more samples are drawn{learns}")


def unreadable_state(state: Storage) -> str | None:
    """Why Tune's saved state would not restore (its newest state files do not parse), or None."""
    for prefix in ("experiment_state-", "search_gen_state-"):
        names = [n for n in state.names(suffix=".json") if n.startswith(prefix)]
        if not names:
            return f"no {prefix}*.json"
        try:
            json.loads(state.read_bytes(max(names)))  # the newest, as Tune picks it
        except (OSError, ValueError) as e:
            return f"{max(names)} does not parse ({type(e).__name__})"
    return None


def more_samples(spec: SweepSpec, trainable, results: Storage, config):
    """(Tuner, how many, history size) drawing the samples a sampled search has not drawn yet (at most
    one fit's), or None."""
    drawn = search_trials(ledger(results))
    remaining = spec.num_trials - drawn
    if remaining <= 0:
        return None
    # Only a sampler that learns from results is told them (reading every landed trial's rows); random
    # and qmc draw the same without.
    history = _history(spec, results) if spec.search.sampler in ("tpe", "gp") else []
    # Seeded past every sample drawn so far (not only the landed ones): the rebuilt sampler draws new points.
    n = min(remaining, trials_per_fit())
    return new_search(spec, trainable, config, n, history, offset=drawn), n, len(history)


def new_search(spec: SweepSpec, trainable, config, num_samples: int, history: list[tuple[dict, float]], offset: int = 0):
    """A Tuner with the spec's Optuna sampler, seeded `offset` past the spec's seed and told of `history`."""
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    from pipeline.samplers import sampler, search_space

    metric, mode = list(spec.objective.metric), list(spec.objective.mode)
    single = len(metric) == 1
    searcher = OptunaSearch(
        space=search_space(spec),
        metric=metric[0] if single else metric,
        mode=mode[0] if single else mode,
        sampler=sampler(spec, offset=offset),
        seed=None,
        points_to_evaluate=[p for p, _ in history] or None,
        evaluated_rewards=[v for _, v in history] or None,
    )
    return tune.Tuner(
        trainable,
        # reuse_actors: a trial process serves trial after trial (torch imported once).
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec), num_samples=num_samples, reuse_actors=True),
        run_config=config,
    )


def _scheduler(spec: SweepSpec):
    """The spec's ASHA, or None (the search and the repair alike: a repaired trial may be stopped as it would have been)."""
    if spec.scheduler is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        metric=spec.objective.metric[0], mode=spec.objective.mode[0], time_attr="step",
        max_t=spec.trial_config(spec.corners()[0]).epochs,
        grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor,
    )


def _history(spec: SweepSpec, results: Storage) -> list[tuple[dict, float]]:
    """(point, objective) of every landed sampled configuration, for a rebuilt sampler (single objective only)."""
    from pipeline.reconcile import inspect
    from pipeline.tune_trial import objective_metrics

    if len(spec.objective.metric) != 1:
        return []
    points = group_by_config(ledger(results))
    out = []
    for config_hash, landed in inspect(results).by_config().items():
        point = points.get(config_hash)
        if point is None or not landed.done or not all(k in point for k in spec.searched):
            continue
        rows = results.read_table("replicates", f"{landed.trial_id}.parquet").to_pylist()
        value = objective_metrics(rows, spec.objective.agg, 0, spec.objective.metric)[spec.objective.metric[0]]
        if math.isfinite(value):
            out.append((point, value))
    return out


def repair_tuner(spec: SweepSpec, trainable, points: list[dict], config):
    """A Tuner that trains exactly these searched points, once each (a trial's config: {"point": …})."""
    from ray import tune

    return tune.Tuner(
        trainable,
        param_space={"point": tune.grid_search([dict(p) for p in points])},
        tune_config=tune.TuneConfig(num_samples=1, scheduler=_scheduler(spec), reuse_actors=True),
        run_config=config,
    )
