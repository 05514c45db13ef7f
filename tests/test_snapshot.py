"""The analysis's snapshot of a folder's replicate rows (analysis/_snapshot.py): the same rows as
reading every file, whatever changed since it was written (a trial added, replaced or removed, the
snapshot itself damaged or unwritable)."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import _snapshot as snapshot
from analysis.data import AnalysisError, keep_index, load
from drm.storage import Storage
from tests.test_analysis import synthetic_folder


def _read(storage: Storage, name: str) -> pa.Table:
    _read.calls.append(name)
    return storage.read_table("replicates", name)


def _trial(folder, name: str, values: list[int]) -> None:
    (folder / "replicates").mkdir(parents=True, exist_ok=True)
    rows = pa.table({"trial_id": [name] * len(values), "seed": list(range(len(values))), "v": values})
    pq.write_table(rows, folder / "replicates" / f"{name}.parquet")


def _rows(storage: Storage) -> list[tuple]:
    _read.calls = []
    table = snapshot.replicates(storage, _read)
    return sorted(zip(*(table.column(c).to_pylist() for c in ("trial_id", "seed", "v"))))


def test_only_what_changed_is_read_again_and_the_rows_are_those_of_the_files(tmp_path):
    storage = Storage(tmp_path)
    for k in range(5):
        _trial(tmp_path, f"t{k}", [k, k + 10])
    every = [(f"t{k}", s, k + 10 * s) for k in range(5) for s in range(2)]
    assert _rows(storage) == every and len(_read.calls) == 5  # the first analysis reads every file…
    assert _rows(storage) == every and _read.calls == []  # …the next one none
    _trial(tmp_path, "t5", [50])  # a trial lands
    assert _rows(storage) == [*every, ("t5", 0, 50)] and _read.calls == ["t5.parquet"]
    _trial(tmp_path, "t1", [7, 8, 9])  # a trial's rows replaced (a finished copy over a stopped one)
    os.utime(tmp_path / "replicates" / "t1.parquet", ns=(1, 1))  # even at an older time
    found = _rows(storage)
    assert ("t1", 2, 9) in found and ("t1", 0, 1) not in found and _read.calls == ["t1.parquet"]
    (tmp_path / "replicates" / "t3.parquet").unlink()  # a trial's rows removed
    assert not any(r[0] == "t3" for r in _rows(storage)) and _read.calls == []
    assert _rows(storage) == sorted(r for r in found if r[0] != "t3")


def test_a_damaged_snapshot_or_a_store_that_refuses_it_costs_only_time(tmp_path, monkeypatch):
    storage = Storage(tmp_path)
    for k in range(3):
        _trial(tmp_path, f"t{k}", [k])
    want = _rows(storage)
    (tmp_path / ".analysis" / "replicates.parquet").write_bytes(b"not parquet")
    assert _rows(storage) == want and len(_read.calls) == 3  # read from the files, and written anew
    assert _rows(storage) == want and _read.calls == []
    (tmp_path / ".analysis" / "replicates.parquet").unlink()

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(storage, "write_table", refuse)  # a read-only store
    assert _rows(storage) == want and not (tmp_path / ".analysis" / "replicates.parquet").exists()


def test_load_gives_the_same_rows_with_and_without_its_snapshot(tmp_path):
    folder = synthetic_folder(tmp_path / "r", {})
    first = load([folder.location]).rows
    assert Storage(folder.location).is_file(*snapshot.SNAPSHOT)
    again = load([folder.location]).rows
    pd.testing.assert_frame_equal(first, again)


def test_many_files_read_at_once_give_the_rows_in_order_and_name_the_first_unreadable_one(tmp_path):
    storage = Storage(tmp_path)
    n = 4 * snapshot._READERS  # enough that they are read by several threads
    for k in range(n):
        _trial(tmp_path, f"t{k:03d}", list(range(k % 3 + 1)))  # files of 1 to 3 rows
    want = [(f"t{k:03d}", s, s) for k in range(n) for s in range(k % 3 + 1)]
    table = snapshot.replicates(storage, _read)
    assert list(zip(*(table.column(c).to_pylist() for c in ("trial_id", "seed", "v")))) == want  # file-name order
    cached = snapshot._cached(storage)
    assert cached.column("_file").to_pylist() == [f"t{k:03d}.parquet" for k in range(n) for _ in range(k % 3 + 1)]
    for k in (7, 3 * snapshot._READERS + 1):  # two damaged files: the first by name is the one named
        (tmp_path / "replicates" / f"t{k:03d}.parquet").write_bytes(b"not parquet")
    with pytest.raises(AnalysisError, match="t007.parquet is not a readable Parquet file"):
        load([str(tmp_path)])


def test_a_sweeps_index_leaves_an_unreadable_file_out_and_analyze_still_names_it(tmp_path):
    storage = Storage(tmp_path)
    for k in range(3):
        _trial(tmp_path, f"t{k}", [k, k + 10])
    (tmp_path / "replicates" / "t1.parquet").write_bytes(b"not parquet")  # a trial's file damaged
    assert keep_index(str(tmp_path)) == 4  # the others are indexed all the same
    assert sorted(snapshot._cached(storage).column("_file").to_pylist()) == ["t0.parquet", "t0.parquet", "t2.parquet", "t2.parquet"]
    with pytest.raises(AnalysisError, match="t1.parquet is not a readable Parquet file"):
        load([str(tmp_path)])
    _trial(tmp_path, "t1", [7])  # mended (as a resume trains it again)
    assert keep_index(str(tmp_path)) == 5 and ("t1", 0, 7) in _rows(storage) and _read.calls == []
