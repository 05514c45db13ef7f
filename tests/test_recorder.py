"""The recorder: landing idempotent on the configuration, finished rows over stopped over failed,
and a write that fails stops the sweep and leaves no table without its commit (real Parquet, real
files; the failure injected into the storage the recorder writes through)."""

from __future__ import annotations

import errno

import pytest

from drm.measurement import measure
from drm.storage import Storage
from drm.train import PackedTrainer
from pipeline.reconcile import inspect
from pipeline.recorder import Recorder, StorageFailed
from pipeline.rows import failed_rows, trial_tables
from pipeline.tables import STAGING, read_replicates, write_trial
from tests.helpers import small


class FailingStorage(Storage):
    """A folder whose writes fail with ENOSPC once `fail_after` more files have been written."""

    fail_after: int | None = None

    def write_bytes(self, data: bytes, *parts: str) -> None:
        if self.fail_after is not None:
            if self.fail_after == 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.fail_after -= 1
        super().write_bytes(data, *parts)


@pytest.fixture(scope="module")
def trained():
    config = small("double_well", fourier=2, epochs=5)
    trainer = PackedTrainer(config, [0, 1])
    trainer.run()
    return config, trainer, measure(trainer.model, config)


def _tables(trained, trial_id: str, stopped: bool = False):
    _, trainer, m = trained
    return trial_tables(trainer, m, sweep="s", trial_id=trial_id, wall_seconds=1.0, node="n", stopped=stopped)


def test_a_configuration_lands_once_whatever_trial_brings_it(tmp_path, trained):
    recorder = Recorder(tmp_path / "results", None, "s", "s")
    assert recorder.land(_tables(trained, "first"))
    assert not recorder.land(_tables(trained, "again"))  # the same configuration under a new trial id
    assert recorder.land(_tables(trained, "first"))  # a retry of the same trial replaces its own files
    rows = read_replicates(tmp_path / "results")
    assert rows.num_rows == 2 and set(rows.column("trial_id").to_pylist()) == {"first"}
    assert Recorder(tmp_path / "results", None, "s", "s").done([trained[0].config_hash()])  # a new recorder reads the tables


def test_finished_rows_replace_failed_and_stopped_ones_never_the_other_way(tmp_path, trained):
    results = Storage(tmp_path / "results")
    config = trained[0]
    recorder = Recorder(results, None, "s", "s")
    assert recorder.record_failed("lost", failed_rows(config, [0, 1], sweep="s", trial_id="lost", error="boom"))
    write_trial(results, _tables(trained, "cut", stopped=True), STAGING, "cut")
    assert recorder.promote("cut")  # stopped rows replace failed ones
    assert recorder.land(_tables(trained, "whole"))  # finished rows replace stopped ones, files and all
    assert set(read_replicates(results).column("trial_id").to_pylist()) == {"whole"}
    write_trial(results, _tables(trained, "late", stopped=True), STAGING, "late")
    assert not recorder.promote("late")  # a stopped snapshot never replaces finished rows
    assert not recorder.record_failed("late", failed_rows(config, [0, 1], sweep="s", trial_id="late", error="x"))
    found = inspect(results, 2)
    assert list(found.trials) == ["whole"] and not found.invalid and not results.exists(STAGING, "late")


@pytest.mark.parametrize("written", [0, 1, 2, 3])
def test_a_write_that_fails_stops_the_sweep_and_leaves_nothing_uncommitted(tmp_path, trained, written):
    """The fault after 0..3 of a trial's 4 files (weights, curves, profiles, replicates last)."""
    results = FailingStorage(tmp_path / "results")
    recorder = Recorder(results, None, "s", "s")
    results.fail_after = written
    with pytest.raises(StorageFailed, match="No space left on device"):
        recorder.land(_tables(trained, "t"))
    assert "No space left on device" in recorder.why_stop()
    results.fail_after = None
    assert not [p for p in (tmp_path / "results").rglob("*") if p.is_file()]  # nothing half-written
    with pytest.raises(StorageFailed, match="the sweep is stopping"):
        recorder.land(_tables(trained, "u"))  # and nothing more lands
    with pytest.raises(StorageFailed):
        recorder.register("u", {}, [])


def test_trials_of_one_configuration_landing_at_once_land_it_once(tmp_path, trained):
    """Four threads (as the recorder actor serves four calls at once), one configuration."""
    import threading

    recorder = Recorder(tmp_path / "results", None, "s", "s")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(recorder.land(_tables(trained, f"t{i}")))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    found = inspect(Storage(tmp_path / "results"), 2)
    assert len(found.trials) == 1 and not found.invalid
