"""The tables as the record: every committed file checked, what is not valid quarantined, leftovers removed."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from drm.measurement import measure
from drm.storage import Storage
from drm.train import PackedTrainer
from pipeline.reconcile import inspect, repair
from pipeline.rows import failed_rows, trial_tables
from pipeline.tables import read_replicates, write_trial
from tests.helpers import small

SEEDS = 2


@pytest.fixture(scope="module")
def trained():
    """Two configurations of 2 seeds each, trained a few steps: real tables to land and break."""
    out = []
    for fourier in (None, 2):
        config = small("double_well", fourier=fourier, epochs=5)
        trainer = PackedTrainer(config, list(range(SEEDS)))
        trainer.run()
        out.append((config, trainer, measure(trainer.model, config)))
    return out


def _land(results: Storage, trained, names=("a", "b")) -> None:
    for name, (_, trainer, m) in zip(names, trained):
        write_trial(results, trial_tables(trainer, m, sweep="s", trial_id=name, wall_seconds=1.0, node="n"))


def test_a_whole_record_validates_and_repair_leaves_it_as_it_is(tmp_path, trained):
    results = Storage(tmp_path / "results")
    _land(results, trained)
    found = repair(results, SEEDS, by="test")
    assert set(found.trials) == {"a", "b"} and not found.invalid and not found.cleaned
    assert found.counts() == {"ok": 4, "diverged": 0, "stopped": 0, "failed": 0}
    assert not results.exists("quarantine") and not results.exists("repairs")


@pytest.mark.parametrize("damage", ["truncated", "not parquet", "curves truncated", "weights truncated", "weights missing", "seeds short"])
def test_a_damaged_trial_is_quarantined_whole_and_out_of_every_reader(tmp_path, trained, damage):
    results = Storage(tmp_path / "results")
    _land(results, trained)
    root = tmp_path / "results"
    if damage == "truncated":
        (root / "replicates" / "b.parquet").write_bytes((root / "replicates" / "b.parquet").read_bytes()[:100])
    elif damage == "not parquet":
        (root / "replicates" / "b.parquet").write_text("hello")
    elif damage == "curves truncated":
        (root / "curves" / "b.parquet").write_bytes((root / "curves" / "b.parquet").read_bytes()[:-20])
    elif damage == "weights truncated":
        (root / "weights" / "b.pt").write_bytes((root / "weights" / "b.pt").read_bytes()[:200])
    elif damage == "weights missing":
        (root / "weights" / "b.pt").unlink()
    else:
        rows = pq.read_table(root / "replicates" / "b.parquet").slice(0, 1)
        pq.write_table(rows, root / "replicates" / "b.parquet")
    assert set(inspect(results, SEEDS).invalid) == {"replicates/b.parquet"}  # inspect only reads
    assert (root / "replicates" / "b.parquet").exists()
    found = repair(results, SEEDS, by="test")
    assert set(found.trials) == {"a"} and list(found.invalid) == ["replicates/b.parquet"]
    assert (root / "quarantine" / "replicates" / "b.parquet.bad").exists()
    files = (("replicates", ".parquet"), ("curves", ".parquet"), ("profiles", ".parquet"), ("weights", ".pt"))
    assert not any((root / t / f"b{s}").exists() for t, s in files)
    assert set(read_replicates(results).column("trial_id").to_pylist()) == {"a"}
    record = json.loads(next((root / "repairs").glob("*.json")).read_text())
    assert record["quarantined"][0]["file"] == "replicates/b.parquet" and record["quarantined"][0]["why"]


def test_two_copies_of_a_configuration_keep_the_finished_one(tmp_path, trained):
    results = Storage(tmp_path / "results")
    config, trainer, m = trained[0]
    write_trial(results, trial_tables(trainer, m, sweep="s", trial_id="first", wall_seconds=1.0, node="n"))
    write_trial(results, trial_tables(trainer, m, sweep="s", trial_id="again", wall_seconds=1.0, node="n"))
    results.write_table(failed_rows(config, list(range(SEEDS)), sweep="s", trial_id="lost", error="x"), "replicates", "lost.parquet")
    found = repair(results, SEEDS, by="test")
    assert list(found.trials) == ["first"]  # finished before failed; the earlier of two finished
    assert read_replicates(results).num_rows == SEEDS
    assert {f"replicates/{n}.parquet" for n in ("again", "lost")} == set(found.invalid)


def test_leftovers_of_an_interrupted_write_are_removed(tmp_path, trained):
    results = Storage(tmp_path / "results")
    _land(results, trained)
    root = tmp_path / "results"
    (root / "replicates" / ".c.parquet.1234abcd.tmp").write_bytes(b"half")
    for table, suffix in (("curves", ".parquet"), ("profiles", ".parquet"), ("weights", ".pt")):
        (root / table / f"c{suffix}").write_bytes((root / table / f"a{suffix}").read_bytes())  # no commit for c
    found = repair(results, SEEDS, by="test")
    assert set(found.trials) == {"a", "b"} and len(found.cleaned) == 4
    assert not list(root.rglob("*.tmp")) and not list(root.rglob("c.*"))


def test_a_failed_trial_has_rows_only_and_validates(tmp_path, trained):
    results = Storage(tmp_path / "results")
    config = trained[0][0]
    results.write_table(failed_rows(config, list(range(SEEDS)), sweep="s", trial_id="f", error="boom"), "replicates", "f.parquet")
    found = inspect(results, SEEDS)
    assert set(found.trials) == {"f"} and not found.trials["f"].done
