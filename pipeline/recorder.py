"""The one writer of a sweep's record: result tables on the driver's storage, runs in the driver's MLflow.

Trials build their tables where they train and hand them to the recorder. In a sweep the recorder
is a Ray actor pinned to the driver's node, so every row and run lands where the driver's
`--storage` and `--tracking-uri` say, whichever node trained the trial and whatever its own disk
holds; worker nodes need neither the storage nor the tracking server. `drmfm train`, and the
driver's own bookkeeping, use the same class in process.

Landing is idempotent on (sweep, config_hash, seed): a configuration whose rows have landed (under
any trial id) is not written again, unless the new rows rank higher (finished over stopped over
failed), and then the old ones are removed. The recorder ends with its driver (it watches the
driver's pid); after a storage failure, or once the driver has lost its lease, it lands nothing
more, and the driver stops the sweep.

MLflow is a view of the tables: a tracking failure costs a warning, never a row.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any

import pyarrow as pa

from drm.storage import Storage, first_line
from pipeline.host import Process
from pipeline.reconcile import Landed, inspect, register
from pipeline.run_names import Layout
from pipeline.tables import COMPANIONS, STAGING, TRIAL_FILES, TrialTables, promote, write_trial

CONCURRENCY = 4  # landings (and other trial calls) served at once: different configurations land together
CONTROL = "control"  # the concurrency group of the driver's questions: `control(recorder.why_stop)`


class StorageFailed(OSError):
    """Writing the record failed (a full or read-only disk, a lost store), or the sweep is stopping."""


def _landed(trial_id: str, rows: pa.Table) -> Landed:
    return Landed.of(trial_id, rows.select([c for c in ("config_hash", "status", "finished_at") if c in rows.column_names]).to_pydict())


class Recorder:
    """Writes one sweep's (or one `drmfm train` call's) tables and MLflow runs."""

    def __init__(self, results: Storage | str, tracking_uri: str | None, experiment: str, sweep: str,
                 driver: Process | None = None, watch_driver: bool = False, landed: dict[str, Landed] | None = None,
                 references: str | None = None, layout: Layout | None = None):
        self.results = results if isinstance(results, Storage) else Storage(results)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep = sweep
        self.driver = driver or Process.current()  # whose runs these are (MLflow tags host, pid)
        self.layout = layout or Layout()  # how runs are named and summarised
        self._tracker = None
        self.failure: str | None = None  # why tracking stopped
        self.stop_reason: str | None = None  # why the sweep must stop (storage failed, lease lost)
        self._landed = landed  # config_hash -> its landed trial (the driver's check of the tables, or read on first use)
        # One configuration's calls are taken in turn (a retry never interleaves with what its
        # predecessor still has in flight, and two trials of one configuration land once); a SQLite
        # store takes one writer at a time, a tracking server many.
        self._locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._tracking_lock = threading.Lock()
        self._store_lock = threading.Lock() if tracking_uri is None or tracking_uri.startswith("sqlite") else None
        self._index_lock = threading.RLock()
        self._tally = {"trials": 0, "trained": 0.0, "elapsed": 0.0}
        self._references = None
        if references is not None:  # the classical references' cache: the judged columns are filled here
            from drm.classical.judge import References

            self._references = References(references, say=lambda line: print(f"drmfm: {line}", file=sys.stderr, flush=True))
        if watch_driver:
            threading.Thread(target=self._watch, daemon=True, name="watch-driver").start()

    def _watch(self) -> None:
        """End with the driver: a recorder whose driver is gone must land nothing (its resume will)."""
        while self.driver.alive():
            time.sleep(0.5)
        os._exit(0)

    # What has landed
    def landed(self) -> dict[str, Landed]:
        with self._index_lock:
            if self._landed is None:
                self._landed = inspect(self.results).by_config()
            return self._landed

    def index(self) -> dict[str, bool]:
        """config_hash -> whether its rows stand (False: failed rows), for every configuration with rows."""
        with self._index_lock:
            return {h: t.done for h, t in self.landed().items()}

    def done(self, config_hashes: list[str]) -> dict[str, list[dict]]:
        """The rows of those configurations whose rows stand (finished or stopped; failed rows do not)."""
        out = {}
        for h in config_hashes:
            with self._locks[h]:  # not while a landing replaces the file
                landed = self.landed().get(h)
                if landed is not None and landed.done:
                    out[h] = self.results.read_table("replicates", f"{landed.trial_id}.parquet").to_pylist()
        return out

    def register(self, tune_trial_id: str, point: dict, configurations: list[dict], repair: bool = False) -> None:
        """A trial started: its configurations go in the ledger (trials/), whatever Tune's state keeps."""
        self._guard()
        self._write(None, lambda: register(self.results, tune_trial_id, point, configurations, repair), f"trials/{tune_trial_id}.json")

    # Tracking
    def tracker(self):
        """The MLflow tracker, or None when tracking is off or has failed (said once)."""
        with self._tracking_lock:
            if self._tracker is None and self.tracking_uri is not None and self.failure is None:
                from pipeline.tracking import Tracker

                try:
                    self._tracker = Tracker(self.tracking_uri, self.experiment, self.sweep, self.driver, self.layout, indexed=True)
                except Exception as e:  # noqa: BLE001 - tracking must never cost a trial its rows
                    self._off_locked(e, "no runs are recorded")
            return self._tracker

    def _track(self, what: str, call) -> Any:
        """One call to the tracker (None without one); a failure turns tracking off, said once."""
        tracker = self.tracker()
        if tracker is None:
            return None
        try:
            with self._store_lock or contextlib.nullcontext():
                return call(tracker)
        except Exception as e:  # noqa: BLE001 - tracking must never cost a trial its rows
            with self._tracking_lock:
                self._off_locked(e, what)
            return None

    def _off_locked(self, error: Exception, what: str) -> None:
        if self.failure is None:  # the first failure is the cause; later ones only echo it
            self.failure = (
                f"MLflow at {self.tracking_uri}: {what} ({type(error).__name__}: {first_line(error)}); "
                "tracking is off for the rest of this sweep, the tables are complete"
            )
            print(f"drmfm: warning: {self.failure}", file=sys.stderr)
        self._tracker = None

    def tracking_failure(self) -> str | None:
        """Why tracking stopped, if it did (the driver says it once at the end)."""
        return self.failure

    def open_runs(self, trial_id: str, params: dict[str, Any], config_hash: str, seeds: list[int]):
        """(parent, {seed: child}) run ids of a configuration, found by its tags or created; None without MLflow."""
        with self._locks[config_hash]:
            runs = self._track(f"trial {trial_id} is not recorded", lambda t: t.open(trial_id, seeds, params, config_hash))
        return None if runs is None else (runs.parent, runs.children)

    # Landing
    def land(self, tables: TrialTables, runs=None) -> bool:
        """A finished trial: its tables (replicates last), then its runs' results, ended.

        False, and nothing written, when its configuration has landed already under another trial
        with rows that rank as high (a finished copy stands; a stopped or failed one gives way).
        """
        landed = _landed(tables.trial_id, tables.replicates)
        with self._locks[landed.config_hash]:
            self._guard()
            before = self.landed().get(landed.config_hash)
            if before is not None and before.trial_id != tables.trial_id and before.rank[0] <= landed.rank[0]:
                return False
            tables = self._judged(tables)

            def write() -> None:
                write_trial(self.results, tables)
                self.results.remove(STAGING, tables.trial_id)

            self._write(tables.trial_id, write)
            self._replace(before, landed)
            if runs is not None:
                from pipeline.tracking import TrialRuns

                self._track(f"trial {tables.trial_id} is recorded in the tables only", lambda t: t.finish(TrialRuns(*runs), tables))
            return True

    def _judged(self, tables: TrialTables) -> TrialTables:
        """The rows with their columns against the classical references (drm.classical.judge) filled."""
        if self._references is None:
            return tables
        try:
            rows = self._references.fill(tables.replicates.to_pylist())
        except Exception as e:  # noqa: BLE001 - a reference that cannot be solved must never cost a trial its rows
            print(f"drmfm: warning: trial {tables.trial_id}: the classical references were not filled: {first_line(e)}", file=sys.stderr)
            return tables
        return dataclasses.replace(tables, replicates=pa.Table.from_pylist(rows, schema=tables.replicates.schema))

    def _replace(self, before: Landed | None, now: Landed) -> None:
        """The index now points at `now`; the rows it replaces under another trial id are removed
        (their replicates first, so that no reader sees them without their tables)."""
        if before is not None and before.trial_id != now.trial_id:
            def remove() -> None:
                for table, suffix in TRIAL_FILES[::-1]:  # the commit first
                    self.results.remove(table, before.trial_id + suffix)

            self._write(None, remove, f"(removing) the replaced rows of trial {before.trial_id}")
        with self._index_lock:
            self.landed()[now.config_hash] = now

    def stage(self, tables: TrialTables) -> None:
        """A snapshot the trial may end at (a scheduler decides after this report)."""
        config_hash = tables.replicates.column("config_hash")[0].as_py()
        with self._locks[config_hash]:
            self._guard()
            tables = self._judged(tables)
            self._write(tables.trial_id, lambda: write_trial(self.results, tables, STAGING, tables.trial_id), staged=True)

    def promote(self, trial_id: str) -> bool:
        """A trial the scheduler stopped: its last snapshot becomes its rows, its runs end KILLED.

        Not when the sweep is stopping (then the driver stopped it, not the scheduler), and not over
        finished rows of its configuration landed by another trial (the snapshot is dropped)."""
        if self.stop_reason is not None or not self.results.is_file(STAGING, trial_id, "replicates", f"{trial_id}.parquet"):
            return False
        staged = _landed(trial_id, self.results.read_table(STAGING, trial_id, "replicates", f"{trial_id}.parquet"))
        with self._locks[staged.config_hash]:
            before = self.landed().get(staged.config_hash)
            if before is not None and before.trial_id != trial_id and before.rank[0] <= staged.rank[0]:
                self._write(trial_id, lambda: self.results.remove(STAGING, trial_id))
                return False
            self._write(trial_id, lambda: promote(self.results, trial_id, STAGING, trial_id))
            self._replace(before, staged)
        self.end_runs(staged.config_hash, "KILLED")
        return True

    def fail_runs(self, runs) -> None:
        """A trial that raised: its runs end FAILED (a retry finds them by their tags and reopens them)."""
        if runs is not None:
            from pipeline.tracking import TrialRuns

            self._track("runs not marked failed", lambda t: t.fail(TrialRuns(*runs)))

    def record_failed(self, trial_id: str, rows: pa.Table) -> bool:
        """A trial whose retries are spent: its `failed` rows, and its runs ended FAILED; False (and
        nothing written) if its configuration has finished rows already."""
        failed = _landed(trial_id, rows)
        with self._locks[failed.config_hash]:
            self._guard()
            before = self.landed().get(failed.config_hash)
            if before is not None and before.done:
                return False
            self._write(trial_id, lambda: self.results.write_table(rows, "replicates", f"{trial_id}.parquet"))
            self._replace(before, failed)
        self.end_runs(failed.config_hash, "FAILED")
        return True

    def end_runs(self, config_hash: str, status: str) -> None:
        self._track(f"runs of configuration {config_hash} not ended", lambda t: t.end(config_hash, status))

    # What this driver's trials did
    def count(self, trained_seconds: float, elapsed_seconds: float) -> None:
        """A trial ended: the seconds it trained, and those it took in all, in this run of the driver."""
        with self._index_lock:
            self._tally["trials"] += 1
            self._tally["trained"] += trained_seconds
            self._tally["elapsed"] += elapsed_seconds

    def tally(self) -> dict:
        return dict(self._tally)

    # Stopping
    def abort(self, reason: str) -> None:
        """Land nothing more; the driver's stopper ends the sweep."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def why_stop(self) -> str | None:
        return self.stop_reason

    def _guard(self) -> None:
        if self.stop_reason is not None:
            raise StorageFailed(f"the sweep is stopping: {self.stop_reason}")

    def _write(self, trial_id: str | None, write, what: str | None = None, staged: bool = False):
        """Run a write of trial `trial_id`; on failure remove what it left uncommitted, and stop the sweep."""
        try:
            return write()
        except OSError as e:
            if trial_id is not None:
                self._uncommit(trial_id, staged)
            reason = f"writing {what or f'the tables of trial {trial_id}'} to {self.results.show()} failed ({first_line(e)})"
            self.abort(reason)
            raise StorageFailed(reason) from None

    def _uncommit(self, trial_id: str, staged: bool) -> None:
        """A write that failed leaves no table file without its commit (best effort: the storage may refuse)."""
        try:
            if staged:
                self.results.remove(STAGING, trial_id)  # a snapshot is whole or gone
            elif not self.results.is_file("replicates", f"{trial_id}.parquet"):  # else an earlier landing stands whole
                for table, suffix in COMPANIONS:
                    self.results.remove(table, trial_id + suffix)
        except OSError:
            pass  # the next start removes what is left (pipeline.reconcile.repair)


def control(method):
    """A recorder actor's method, called in the control group (answered while landings run)."""
    return method.options(concurrency_group=CONTROL)


def recorder_actor(results: Storage, tracking_uri: str | None, experiment: str, sweep: str, landed: dict[str, Landed],
                   references: str | None = None, layout: Layout | None = None):
    """The sweep's recorder as a Ray actor on this (the driver's) node, ending with the driver."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    # The driver's questions (why stop? what landed?) have threads of their own: they never wait
    # behind a landing that is logging to MLflow.
    from pipeline.tracking import quiet_mlflow

    actor = ray.remote(concurrency_groups={CONTROL: 2})(Recorder).options(
        num_cpus=0,
        runtime_env={"env_vars": quiet_mlflow()},  # on a cluster its worker does not inherit the driver's environment
        max_concurrency=CONCURRENCY,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False),
    )
    return actor.remote(results, tracking_uri, experiment, sweep, Process.current(), True, landed, references, layout)
