"""Result tables (Apache Parquet): one file per finished trial and table, written atomically.

results/<sweep>/{curves,profiles,weights}/<trial_id>.* first, replicates/<trial_id>.parquet last:
the replicates file is the trial's commit, so a reader that sees it sees the whole trial. Each
file lands by write-to-temporary then rename, so it is there whole or not at all, and a re-run
trial replaces its files instead of adding rows.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

REPLICATES = pa.schema(
    [
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
        ("energy", pa.float64()),
        ("boundary_l2", pa.float64()),
        ("loss_final", pa.float64()),
        ("transitions", pa.int64()),
        ("transitions_per_period", pa.float64()),
        ("transitions_wall", pa.float64()),  # median of two lines: may be a half-integer
        ("bands", pa.int64()),
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
    ]
)

CURVES = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("seed", pa.int64()),
        ("step", pa.int64()),
        ("loss", pa.float64()),
        ("energy_mc", pa.float64()),
        ("lr", pa.float64()),
    ]
)

# 1D: y is null; 2D: one row per grid node, u_y in du. Float32 keeps a 257² field per seed small.
PROFILES = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("seed", pa.int64()),
        ("x", pa.float32()),
        ("y", pa.float32()),
        ("u", pa.float32()),
        ("du", pa.float32()),  # u_x in 1D, u_y in 2D
    ]
)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write `table` to `path` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_trial(results_dir: Path, trial_id: str, replicates: pa.Table, curves: pa.Table, profiles: pa.Table) -> None:
    """Land one trial: curves and profiles first, replicates last (the commit)."""
    write_atomic(curves.cast(CURVES), results_dir / "curves" / f"{trial_id}.parquet")
    write_atomic(profiles.cast(PROFILES), results_dir / "profiles" / f"{trial_id}.parquet")
    write_atomic(replicates.cast(REPLICATES), results_dir / "replicates" / f"{trial_id}.parquet")


def read_replicates(results_dir: Path) -> pa.Table:
    """All committed replicate rows of a results folder (temporary files are never read)."""
    files = sorted((results_dir / "replicates").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else REPLICATES.empty_table()
