"""Result tables (Apache Parquet): one file per finished trial and table, written atomically.

results/<sweep>/{weights,curves,profiles}/<trial_id>.* first, replicates/<trial_id>.parquet last:
the replicates file is the trial's commit, so a reader that sees it sees the whole trial. Each
file lands whole or not at all (`Storage`), on a folder or an object store, and a re-run trial
replaces its files instead of adding rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from drm import profiles
from drm.metrics import metrics
from drm.storage import Storage

STAGING = ".staging"  # results/<sweep>/.staging/<trial_id>/…: a scheduler's provisional snapshot
COMPANIONS = (("weights", ".pt"), ("curves", ".parquet"), ("profiles", ".parquet"))  # a trial's tables besides its rows
TRIAL_FILES = (*COMPANIONS, ("replicates", ".parquet"))  # in the order they land: replicates, the commit, last

_BEFORE_METRICS = [
    ("sweep", pa.string()),
    ("trial_id", pa.string()),
    ("seed", pa.int64()),
    ("problem", pa.string()),
    ("dim", pa.int64()),
    ("depth", pa.int64()),
    ("width", pa.int64()),
    ("activation", pa.string()),
    ("rho", pa.float64()),
    ("fourier", pa.int64()),  # null = no map
    ("fourier_map", pa.string()),
    ("epsilon", pa.float64()),
    ("penalty", pa.float64()),
    ("lr", pa.float64()),
    ("epochs", pa.int64()),
    ("batch", pa.int64()),
    ("boundary_batch", pa.int64()),
    ("dtype", pa.string()),
    ("device", pa.string()),
    ("pack_size", pa.int64()),
]
_AFTER_METRICS = [
    ("status", pa.string()),
    ("error", pa.string()),
    ("wall_seconds", pa.float64()),
    ("steps_per_second", pa.float64()),
    ("node", pa.string()),
    ("mlflow_run_id", pa.string()),
    ("mlflow_parent_run_id", pa.string()),
    ("config_hash", pa.string()),
    ("resample", pa.bool_()),
    ("torch_version", pa.string()),
    ("code_version", pa.string()),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("transition_threshold", pa.float64()),
    ("diverged_step", pa.int64()),  # null unless status = diverged
    ("steps_done", pa.int64()),
    ("step_mode", pa.string()),  # graphed (CUDA graph) or eager, and why
]


def conform(rows: pa.Table, schema: pa.Schema | None = None) -> pa.Table:
    """Rows in `schema` (default: the replicates of this process's registry), matched by name: a column the
    rows lack is null, and one only the process that made them knows (a package on that node alone) is kept."""
    schema = schema or replicates_schema()
    columns = [rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type) for f in schema]
    extra = [f for f in rows.schema if f.name not in schema.names]
    return pa.Table.from_arrays([*columns, *(rows.column(f.name) for f in extra)], schema=pa.schema([*schema, *extra]))


def replicates_schema() -> pa.Schema:
    """The replicates table: the configuration and provenance, every registered metric (drm.metrics), the status."""
    measured = [(m.name, {int: pa.int64(), float: pa.float64(), bool: pa.bool_()}[m.kind]) for m in metrics()]
    return pa.schema([*_BEFORE_METRICS, *measured, *_AFTER_METRICS])


CURVES = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("energy_mc", pa.float64()),
        ("lr", pa.float64()),
        ("transitions", pa.int64()),  # on the curve grid (drm.train.Curves)
        ("bands", pa.int64()),  # 2D: on the measurement grid
    ]
)

PROFILES = profiles.SCHEMA  # layout 2 (drm.profiles); a folder of an earlier version holds layout 1, which drm.profiles.read takes too


@dataclass(frozen=True)
class TrialTables:
    """One trial's results, built where it trained and landed where the driver's storage says."""

    trial_id: str
    replicates: pa.Table  # one row per seed: written last, the trial's commit
    curves: pa.Table
    profiles: pa.Table  # drm.profiles, layout 2: one row per seed, the grid in the metadata
    weights: bytes  # torch.save of every seed's final parameters
    figures: dict[int | None, bytes] = field(default_factory=dict)  # seed -> its profile PNG; None -> the trial's (MLflow artifacts)


def write_trial(results: Storage, tables: TrialTables, *where: str) -> None:
    """Land one trial in `results` (or a folder below it): weights, curves, profiles, replicates last."""
    name = tables.trial_id
    results.write_bytes(tables.weights, *where, "weights", f"{name}.pt")
    results.write_table(conform(tables.curves, CURVES), *where, "curves", f"{name}.parquet")
    results.write_table(tables.profiles.cast(PROFILES.with_metadata(tables.profiles.schema.metadata)), *where, "profiles", f"{name}.parquet",
                        plain=("u", "du"))
    results.write_table(conform(tables.replicates), *where, "replicates", f"{name}.parquet")


def promote(results: Storage, trial_id: str, *where: str) -> bool:
    """Move a trial landed in a folder below `results` into its tables, replicates last."""
    if not results.is_file(*where, "replicates", f"{trial_id}.parquet"):
        return False
    for table, suffix in TRIAL_FILES:
        if results.is_file(*where, table, trial_id + suffix):
            results.move((*where, table, trial_id + suffix), (table, trial_id + suffix))
    results.remove(*where)
    return True


def committed(results: Storage) -> set[str]:
    """The trials whose replicates (their commit) have landed."""
    return {name.removesuffix(".parquet") for name in results.names("replicates", suffix=".parquet")}


def read_replicates(results: Storage | Path | str) -> pa.Table:
    """All committed replicate rows of a results folder (temporary files are never read)."""
    results = results if isinstance(results, Storage) else Storage(results)
    tables = [results.read_table("replicates", name) for name in results.names("replicates", suffix=".parquet")]
    return pa.concat_tables(tables, promote_options="default") if tables else replicates_schema().empty_table()
