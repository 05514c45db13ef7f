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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from drm.storage import Storage

SNAPSHOT = (".analysis", "replicates.parquet")
_SIGNATURE = ("_file", "_size", "_mtime_ns")  # per row: the file it came from, as it was when read


def signatures(storage: Storage) -> dict[str, tuple[int, int]]:
    """name -> (size, modification time in ns) of every committed replicates file, in one listing."""
    selector = pafs.FileSelector(storage.path("replicates"), allow_not_found=True)
    return {
        info.base_name: (info.size, info.mtime_ns or -1)  # -1: a store without times (never taken from the snapshot)
        for info in storage.fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and not info.base_name.startswith(".")
    }


def replicates(storage: Storage, read: Callable[[Storage, str], pa.Table]) -> pa.Table:
    """Every committed replicate row of the folder, in file-name order: unchanged files' rows from the
    snapshot, the others by `read(storage, name)`; the snapshot rewritten when anything changed."""
    now = signatures(storage)
    cached = _cached(storage)
    held: set[tuple[str, int, int]] = set() if cached is None else set(zip(*(cached.column(c).to_pylist() for c in _SIGNATURE)))
    same = {name for name, size, mtime in held if now.get(name) == (size, mtime) and mtime >= 0}
    parts = [] if cached is None or not same else [cached.filter(pc.is_in(cached.column("_file"), value_set=pa.array(sorted(same))))]
    fresh = sorted(set(now) - same)
    for name in fresh:
        table = read(storage, name)
        size, mtime = now[name]
        parts.append(table.append_column("_file", pa.array([name] * table.num_rows, pa.string()))
                     .append_column("_size", pa.array([size] * table.num_rows, pa.int64()))
                     .append_column("_mtime_ns", pa.array([mtime] * table.num_rows, pa.int64())))
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts, promote_options="default").sort_by("_file")
    if fresh or {name for name, _, _ in held} != same:  # something was read again, or dropped
        _write(storage, table)
    return table.drop_columns(list(_SIGNATURE))


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
