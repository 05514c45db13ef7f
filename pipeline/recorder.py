"""The one writer of a sweep's record: result tables on the driver's storage, runs in the driver's MLflow.

Trials build their tables where they train and hand them to the recorder. In a sweep the recorder
is a Ray actor pinned to the driver's node, so every row and run lands where the driver's
`--storage` and `--tracking-uri` say, whichever node trained the trial and whatever its own disk
holds; worker nodes need neither the storage nor the tracking server. `drmfm train`, and the
driver's own bookkeeping, use the same class in process.

MLflow is a view of the tables: a tracking failure costs a warning, never a row.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from typing import Any

import pyarrow as pa

from pipeline.storage import Storage
from pipeline.tables import TrialTables, promote, write_trial

STAGING = ".staging"  # results/<sweep>/.staging/<trial_id>/…: a scheduler's provisional snapshot


class Recorder:
    """Writes one sweep's (or one `drmfm train` call's) tables and MLflow runs."""

    def __init__(self, results: Storage | str, tracking_uri: str | None, experiment: str, sweep: str):
        self.results = results if isinstance(results, Storage) else Storage(results)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep = sweep
        self._tracker = None
        self.failure: str | None = None
        # Calls may run concurrently (a tracking server takes them): one trial's are taken in turn, so
        # a retry can never interleave with what its predecessor still has in flight.
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._tracking_lock = threading.Lock()

    def tracker(self):
        """The MLflow tracker, or None when tracking is off or has failed (said once)."""
        with self._tracking_lock:
            if self._tracker is None and self.tracking_uri is not None and self.failure is None:
                from pipeline.tracking import Tracker

                try:
                    self._tracker = Tracker(self.tracking_uri, self.experiment, self.sweep)
                except Exception as e:  # noqa: BLE001 - tracking must never cost a trial its rows
                    self._off_locked(e, "no runs are recorded")
            return self._tracker

    def _off(self, error: Exception, what: str) -> None:
        """Say once that tracking failed, and record nothing more in MLflow: the tables go on."""
        with self._tracking_lock:
            self._off_locked(error, what)

    def _off_locked(self, error: Exception, what: str) -> None:
        if self.failure is None:  # the first failure is the cause; later ones only echo it
            self.failure = (
                f"MLflow at {self.tracking_uri}: {what} ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                "tracking is off for the rest of this sweep, the tables are complete"
            )
            print(f"drmfm: warning: {self.failure}", file=sys.stderr)
        self._tracker = None

    def tracking_failure(self) -> str | None:
        """Why tracking stopped, if it did (the driver says it once at the end)."""
        return self.failure

    def open_runs(self, trial_id: str, params: dict[str, Any], config_hash: str, seeds: list[int]):
        """(parent, {seed: child}) run ids of a trial, found by their tags or created; None without MLflow."""
        tracker = self.tracker()
        if tracker is None:
            return None
        try:
            runs = tracker.open(trial_id, seeds, params, config_hash)
        except Exception as e:  # noqa: BLE001
            self._off(e, f"trial {trial_id} is not recorded")
            return None
        return runs.parent, runs.children

    def land(self, tables: TrialTables, runs=None) -> None:
        """A finished trial: its tables (replicates last), then its runs' results, ended."""
        with self._locks[tables.trial_id]:
            self._land(tables, runs)

    def _land(self, tables: TrialTables, runs) -> None:
        write_trial(self.results, tables)
        self.results.remove(STAGING, tables.trial_id)
        tracker = self.tracker() if runs is not None else None
        if tracker is not None:
            from pipeline.tracking import TrialRuns

            try:
                tracker.finish(TrialRuns(*runs), tables)
            except Exception as e:  # noqa: BLE001
                self._off(e, f"trial {tables.trial_id} is recorded in the tables only")

    def stage(self, tables: TrialTables) -> None:
        """A snapshot the trial may end at (a scheduler decides after this report)."""
        with self._locks[tables.trial_id]:
            write_trial(self.results, tables, STAGING, tables.trial_id)

    def promote(self, trial_id: str) -> bool:
        """A trial the scheduler stopped: its last snapshot becomes its rows, its runs end KILLED."""
        with self._locks[trial_id]:
            landed = promote(self.results, trial_id, STAGING, trial_id)
        self.end_runs(trial_id, "KILLED")
        return landed

    def fail_runs(self, runs) -> None:
        """A trial that raised: its runs end FAILED (a retry finds them by their tags and reopens them)."""
        tracker = self.tracker() if runs is not None else None
        if tracker is None:
            return
        from pipeline.tracking import TrialRuns

        try:
            tracker.fail(TrialRuns(*runs))
        except Exception as e:  # noqa: BLE001
            self._off(e, "runs not marked failed")

    def record_failed(self, trial_id: str, rows: pa.Table) -> None:
        """A trial whose retries are spent: its `failed` rows, and its runs ended FAILED."""
        self.results.write_table(rows, "replicates", f"{trial_id}.parquet")
        self.end_runs(trial_id, "FAILED")

    def end_runs(self, trial_id: str, status: str) -> None:
        tracker = self.tracker()
        if tracker is None:
            return
        try:
            tracker.end(trial_id, status)
        except Exception as e:  # noqa: BLE001
            self._off(e, f"runs of trial {trial_id} not ended")


def recorder_actor(results: Storage, tracking_uri: str | None, experiment: str, sweep: str):
    """The sweep's recorder as a Ray actor on this (the driver's) node.

    A SQLite store takes one writer at a time: calls are then served in order. A tracking server
    takes concurrent calls, so several trials can land at once.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    concurrency = 1 if tracking_uri is None or tracking_uri.startswith("sqlite") else 8
    actor = ray.remote(Recorder).options(
        num_cpus=0,
        max_concurrency=concurrency,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    )
    return actor.remote(results, tracking_uri, experiment, sweep)
