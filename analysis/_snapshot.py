"""A results folder's replicate rows kept as one file beside them, so that analysing 10,000 trials
again reads one file and the trials that changed, not 10,000 files (2.4 ms each).

`results/<sweep>/.analysis/replicates.parquet` is derived from the trials' own files, never read
instead of them: a file's rows are taken from the snapshot only while that file's name, size and
modification time are those it was read with; a new or changed file is read again, a removed one's
rows are dropped. Writing it is best effort: a read-only store is analysed all the same. The sweep
ignores the folder (it is not one of its tables), and a crash mid-write leaves a temporary file
that its next start removes, as any other.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from drm.storage import Storage

SNAPSHOT = (".analysis", "replicates.parquet")
_READERS = 4  # files read at once: 10,000 of them in 12.1 s, against 18.8 s one by one and 13.0 s 8 at a time (2 cores)
_SIGNATURE = ("_file", "_size", "_mtime_ns")  # per row: the file it came from, as it was when read


def signatures(storage: Storage) -> dict[str, tuple[int, int]]:
    """name -> (size, modification time in ns) of every committed replicates file, in one listing."""
    selector = pafs.FileSelector(storage.path("replicates"), allow_not_found=True)
    return {
        info.base_name: (info.size, info.mtime_ns or -1)  # -1: a store without times (never taken from the snapshot)
        for info in storage.fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and not info.base_name.startswith(".")
    }


def replicates(storage: Storage, read: Callable[[Storage, str], pa.Table | None]) -> pa.Table:
    """Every committed replicate row of the folder, in file-name order: unchanged files' rows from the
    snapshot, the others by `read(storage, name)`; the snapshot rewritten when anything changed.
    A file `read` gives None for (unreadable, where the caller skips such) is left out of both, and
    read again next time."""
    now = signatures(storage)
    cached = _cached(storage)
    held: set[tuple[str, int, int]] = set() if cached is None else set(zip(*(cached.column(c).to_pylist() for c in _SIGNATURE)))
    same = {name for name, size, mtime in held if now.get(name) == (size, mtime) and mtime >= 0}
    parts = [] if cached is None or not same else [cached.filter(pc.is_in(cached.column("_file"), value_set=pa.array(sorted(same))))]
    fresh = sorted(set(now) - same)
    read_back = [(name, table) for name, table in zip(fresh, _read_all(storage, fresh, read)) if table is not None]
    if read_back:
        fresh, tables = (list(column) for column in zip(*read_back))
        lengths = [t.num_rows for t in tables]
        table = pa.concat_tables(tables, promote_options="default")
        for column, values, kind in zip(_SIGNATURE, (fresh, [now[n][0] for n in fresh], [now[n][1] for n in fresh]),
                                        (pa.string(), pa.int64(), pa.int64())):
            table = table.append_column(column, pa.array(np.repeat(np.array(values), lengths), kind))  # each file's, on its rows
        parts.append(table)
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts, promote_options="default").sort_by("_file")
    if fresh or {name for name, _, _ in held} != same:  # something was read again, or dropped
        _write(storage, table)
    return table.drop_columns(list(_SIGNATURE))


def _read_all(storage: Storage, names: list[str], read: Callable[[Storage, str], pa.Table | None]) -> list[pa.Table | None]:
    """`read(storage, name)` of every name, in order, _READERS at a time: a file's cost is its open and
    footer, which Arrow does without the GIL (and an object store's, a round trip). The first
    unreadable file in name order raises, as it would read one by one."""
    if len(names) < 2 * _READERS:
        return [read(storage, name) for name in names]
    with ThreadPoolExecutor(_READERS, thread_name_prefix="drmfm-read") as pool:
        return list(pool.map(lambda name: read(storage, name), names))


def _cached(storage: Storage) -> pa.Table | None:
    """The snapshot, or None (none yet, unreadable, or not one of ours)."""
    try:
        if not storage.is_file(*SNAPSHOT):
            return None
        table = storage.read_table(*SNAPSHOT)
    except (OSError, pa.ArrowException):
        return None
    return table if all(c in table.column_names for c in _SIGNATURE) else None


def _write(storage: Storage, table: pa.Table) -> None:
    try:
        storage.write_table(table, *SNAPSHOT)
    except OSError:
        pass  # a read-only store: the next analysis reads the files again
