"""Result tables in: one or more results folders read as one Arrow dataset, accounted for row by row.

Rows whose status is not `ok` (diverged, failed, stopped) are kept and counted, so that a report
can say what it left out; statistics use the `ok` rows only. A run that appears twice (the same
configuration and seed in two folders, or a folder given twice) is counted once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from analysis import _snapshot as snapshot
from drm import profiles
from drm.config import ConfigError
from drm.profiles import Profiles
from drm.storage import Storage, first_line

# What identifies a configuration (the seed aside): the swept factors and what else may differ.
FACTORS = ["problem", "dim", "depth", "width", "activation", "rho", "fourier", "fourier_map", "epsilon",
           "epochs", "lr", "penalty", "batch", "boundary_batch", "dtype"]
NEEDED = ["sweep", "trial_id", "seed", "status", "energy", "transitions", "transitions_per_period", "bands", "config_hash", *FACTORS]
RANGES = "drmfm.ranges"  # rows.attrs key: the spaces' range dimensions, as the sweeps' saved specs give them
STATUSES = ("ok", "diverged", "stopped", "failed")


class AnalysisError(ConfigError):
    """Input the analysis cannot use (a missing folder or column): exit 2, one line."""


@dataclass
class Results:
    """Every replicate row of the folders read, and where they came from."""

    rows: pd.DataFrame  # one row per (configuration, seed); `source` is the folder it came from
    folders: list[str]
    duplicates: int  # rows dropped because the same run appeared again
    specs: list[dict] = field(default_factory=list)  # the specs sweeps saved beside their tables (results/<sweep>/spec.json)

    @property
    def ok(self) -> pd.DataFrame:
        return self.rows[self.rows["status"] == "ok"]

    def status_counts(self) -> dict[str, int]:
        counts = self.rows["status"].value_counts()
        return {s: int(counts.get(s, 0)) for s in (*STATUSES, *sorted(set(counts.index) - set(STATUSES)))}


def load(folders: list[str]) -> Results:
    """Read the replicates of every folder (a results/<sweep> folder, local or s3://…) as one table."""
    if not folders:
        raise AnalysisError("results", "no results folder given; allowed: one or more results/<sweep> folders")
    tables, specs = [], []
    for folder in folders:
        try:
            storage = Storage(folder)
        except (OSError, ValueError, pa.ArrowException) as e:
            raise AnalysisError("results", f"{folder} cannot be opened ({e})") from None
        try:
            names = storage.names("replicates", suffix=".parquet")
        except OSError as e:
            raise AnalysisError("results", f"{folder} cannot be read ({first_line(e)})") from None
        if not names:
            raise AnalysisError("results", f"{folder} holds no replicates/*.parquet; allowed: a results/<sweep> folder of a sweep or train run")
        spec = _spec(storage)
        if spec is not None and spec["name"] not in {s["name"] for s in specs}:
            specs.append(spec)
        table = snapshot.replicates(storage, _read)
        tables.append(table.append_column("source", pa.array([storage.location] * table.num_rows, pa.string())))
    table = pa.concat_tables(tables, promote_options="default")
    missing = [c for c in NEEDED if c not in table.column_names]
    if missing:
        raise AnalysisError("results", f"the replicates lack column(s) {', '.join(missing)}; allowed: tables written by drmfm (see INTERFACE.md)")
    rows = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    # Without a map the map's type is unused: plain DRM under either type is one computation.
    rows.loc[rows["fourier"].isna(), "fourier_map"] = None
    # A run read twice (two folders, a folder given twice, plain DRM under both map types) counts
    # once: a finished copy (ok or diverged) wins over a stopped one, which wins over a failed one.
    same = [c for c in [*FACTORS, "resample", "transition_threshold", "seed"] if c in rows.columns]
    before = len(rows)
    rows = (
        rows.assign(_rank=rows["status"].map({"ok": 0, "diverged": 0, "stopped": 1}).fillna(2))
        .sort_values("_rank", kind="stable")
        .drop_duplicates(subset=same, keep="first")
        .sort_index()
        .drop(columns="_rank")
        .reset_index(drop=True)
    )
    rows["fourier_label"] = rows["fourier"].map(lambda i: "none" if pd.isna(i) else str(int(i)))
    if specs:  # the parameters a sampler drew from a range (analysis.design.sampled), carried with every part of the rows
        rows.attrs[RANGES] = frozenset(name for spec in specs for name, dim in spec["space"].items() if isinstance(dim, dict))
    return Results(rows=rows, folders=list(folders), duplicates=before - len(rows), specs=specs)


def keep_index(folder: str | Storage) -> int:
    """Bring a results folder's snapshot of its replicate rows up to date, reading only the files it
    does not hold (analysis/_snapshot.py): a sweep calls it after each fit, so that `drmfm analyze`
    of 10,000 trials reads one file and the few that changed, not 10,000. The rows it now holds."""
    storage = folder if isinstance(folder, Storage) else Storage(folder)
    return snapshot.replicates(storage, _read_or_skip).num_rows


def _read_or_skip(storage: Storage, name: str) -> pa.Table | None:
    """One replicates file, or None where it is unreadable: left out of the index (a sweep's --resume
    quarantines it, and `drmfm analyze` names it), so that it does not keep the rest from being indexed."""
    try:
        return _read(storage, name)
    except AnalysisError:
        return None


def _spec(storage: Storage) -> dict | None:
    """The spec a sweep saved beside its tables; None for a `train` folder, an older sweep, or one unreadable."""
    try:
        if not storage.is_file("spec.json"):
            return None
        spec = json.loads(storage.read_bytes("spec.json"))["spec"]
        return spec if isinstance(spec, dict) and "name" in spec and isinstance(spec.get("space"), dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read(storage: Storage, name: str) -> pa.Table:
    """One replicates file; one that is not Parquet is named (a --resume of its sweep quarantines it)."""
    try:
        return storage.read_table("replicates", name)
    except (OSError, pa.ArrowException) as e:
        why = first_line(e)
        raise AnalysisError("results", f"{storage.show('replicates', name)} is not a readable Parquet file ({why}); "
                            "allowed: tables drmfm wrote (`drmfm sweep --resume` moves an unreadable one to quarantine/)") from None


def varying(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """The columns that take more than one value in `frame` (a missing value counts as one).

    The map type varies only if runs with a map use more than one (plain DRM has none).
    """
    out = []
    for c in columns:
        values = frame[c] if c != "fourier_map" or "fourier" not in frame else frame.loc[frame["fourier"].notna(), c]
        if values.astype("object").where(values.notna(), "∅").nunique() > 1:
            out.append(c)
    return out


def read_trial_table(source: str, table: str, trial_id: str) -> pd.DataFrame | None:
    """A trial's curves from its results folder (None if that folder does not hold them)."""
    storage = Storage(source)
    if not storage.is_file(table, f"{trial_id}.parquet"):
        return None
    return storage.read_table(table, f"{trial_id}.parquet").to_pandas()


def read_profiles(source: str, trial_id: str) -> Profiles | None:
    """A trial's profiles from its results folder, of any version's layout (None if it holds none)."""
    storage = Storage(source)
    if not storage.is_file("profiles", f"{trial_id}.parquet"):
        return None
    return profiles.read(storage.read_table("profiles", f"{trial_id}.parquet"))
