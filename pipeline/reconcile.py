"""What a sweep's tables hold, checked file by file: the record a resume and `drmfm status` go by.

`replicates/<trial>.parquet` is a trial's commit. A committed trial is valid when that file reads,
has the key columns with their types, holds one configuration and the sweep's seeds once each,
and (unless the trial failed, which leaves rows only) its weights, curves and profiles are there
and readable. `inspect` only reads. `repair`, run by the driver that holds the sweep's lease,
also moves every file of an invalid trial to `quarantine/<table>/<file>.bad` (outside the tables,
so no reader sees it), keeps one trial per configuration (a finished one first, then the earliest),
and removes what a crashed write left behind: temporary files, and the tables of trials that
never committed. Each repair that changed something is recorded in `repairs/<time>.json`.

`trials/<tune-trial-id>.json` is the ledger: each trial's configurations as the trial reported
them when it started, so a sampled sweep knows what it ran even when Tune's own state is lost.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from drm.storage import Storage, first_line
from pipeline.tables import COMPANIONS, STAGING, TRIAL_FILES, replicates_schema

KEY_COLUMNS = ("sweep", "trial_id", "seed", "status", "config_hash")
STATUSES = ("ok", "diverged", "stopped", "failed")
_ZIP_END = b"PK\x05\x06"  # the end record of a zip archive (torch.save's format)


@dataclass(frozen=True)
class Landed:
    """One valid committed trial: a configuration's rows, one per seed."""

    trial_id: str
    config_hash: str
    statuses: tuple[str, ...]  # per seed
    finished_at: str

    @property
    def done(self) -> bool:
        """Rows that stand: finished (ok or diverged) or stopped by the scheduler. Failed rows are redone."""
        return any(s != "failed" for s in self.statuses)

    @property
    def rank(self) -> tuple:
        """Which of two trials of one configuration is kept: finished (ok or diverged seeds), then one
        a scheduler stopped, then a failed one; of two alike, the earliest."""
        kind = 3 if all(s == "failed" for s in self.statuses) else 2 if "stopped" in self.statuses else 0
        return kind, self.finished_at, self.trial_id

    @staticmethod
    def of(trial_id: str, rows: dict[str, list]) -> Landed:
        """A trial's rows (columns as lists) as what the index keeps of them."""
        finished = [f for f in rows.get("finished_at") or [] if f]
        return Landed(trial_id, rows["config_hash"][0], tuple(rows["status"]), str(max(finished, default="")))


@dataclass
class Inventory:
    """The valid trials of a results folder, and what was found wrong."""

    trials: dict[str, Landed] = field(default_factory=dict)  # trial id -> its landed rows
    invalid: dict[str, str] = field(default_factory=dict)  # file -> why it is not part of the record
    cleaned: list[str] = field(default_factory=list)  # leftovers of crashed writes (removed by repair)

    def by_config(self) -> dict[str, Landed]:
        """The trial kept for each configuration (there is one after a repair)."""
        out: dict[str, Landed] = {}
        for landed in sorted(self.trials.values(), key=lambda t: t.rank):
            out.setdefault(landed.config_hash, landed)
        return out

    def counts(self) -> dict[str, int]:
        """Seed rows per status over the kept trials."""
        out = dict.fromkeys(STATUSES, 0)
        for landed in self.by_config().values():
            for s in landed.statuses:
                out[s] = out.get(s, 0) + 1
        return out


def inspect(results: Storage, seeds: int | None = None) -> Inventory:
    """Check every committed trial of `results` (None for `seeds`: any number of seeds)."""
    found = Inventory()
    for name in results.names("replicates", suffix=".parquet"):
        trial_id = name.removesuffix(".parquet")
        landed, why = _check(results, trial_id, seeds)
        if landed is None:
            found.invalid[f"replicates/{name}"] = why
        else:
            found.trials[trial_id] = landed
    return found


def repair(results: Storage, seeds: int, by: str) -> Inventory:
    """`inspect`, then make the folder hold exactly the valid record (see the module's docstring)."""
    found = inspect(results, seeds)
    actions: dict[str, list] = {"quarantined": [], "removed": []}
    kept = {t.trial_id for t in found.by_config().values()}
    for landed in [t for t in found.trials.values() if t.trial_id not in kept]:
        holder = found.by_config()[landed.config_hash].trial_id
        found.invalid[f"replicates/{landed.trial_id}.parquet"] = f"a second copy of configuration {landed.config_hash} (kept: trial {holder})"
        del found.trials[landed.trial_id]
    for file, why in found.invalid.items():
        trial_id = file.removeprefix("replicates/").removesuffix(".parquet")
        for table, suffix in TRIAL_FILES[::-1]:  # the commit first: no reader sees the trial without its tables
            if results.is_file(table, trial_id + suffix):
                results.move((table, trial_id + suffix), ("quarantine", table, f"{trial_id}{suffix}.bad"))
        actions["quarantined"].append({"file": file, "why": why, "to": f"quarantine/replicates/{trial_id}.parquet.bad"})
    for tmp in results.temporaries():
        results.remove(*tmp.split("/"))
        found.cleaned.append(tmp)
    for trial_id in results.folders(STAGING):  # snapshots of a scheduler that no driver will promote now
        results.remove(STAGING, trial_id)
        found.cleaned.append(f"{STAGING}/{trial_id}")
    for table, suffix in COMPANIONS:  # tables of trials that never committed
        for name in results.names(table, suffix=suffix):
            if name.removesuffix(suffix) not in found.trials:
                results.remove(table, name)
                found.cleaned.append(f"{table}/{name}")
    actions["removed"] = list(found.cleaned)
    if actions["quarantined"] or actions["removed"]:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        record = {"at": stamp, "by": by, **actions}
        results.write_text(json.dumps(record, indent=1), "repairs", f"{stamp}.json")
    return found


def _check(results: Storage, trial_id: str, seeds: int | None) -> tuple[Landed | None, str]:
    """The trial's rows if its commit is valid, else None and why not."""
    try:
        table = results.read_table("replicates", f"{trial_id}.parquet")
    except (OSError, pa.ArrowException) as e:
        return None, f"unreadable ({first_line(e)})"
    missing = [c for c in KEY_COLUMNS if c not in table.column_names]
    if missing:
        return None, f"lacks column(s) {', '.join(missing)}"
    known = [f for f in replicates_schema() if f.name in table.column_names]
    try:
        table = table.select([f.name for f in known]).cast(pa.schema(known))
    except (pa.ArrowException, ValueError, TypeError) as e:
        return None, f"a column has the wrong type ({first_line(e)})"
    rows = table.to_pydict()
    if set(rows["trial_id"]) != {trial_id}:
        return None, f"holds rows of trial(s) {sorted(set(map(str, rows['trial_id'])) - {trial_id})} besides {trial_id}"
    hashes = set(rows["config_hash"])
    if len(hashes) != 1 or None in hashes:
        return None, f"holds {len(hashes)} configurations; allowed: one"
    got = rows["seed"]
    if len(set(got)) != len(got) or None in got:
        return None, "repeats a seed"
    if seeds is not None and sorted(got) != list(range(seeds)):
        return None, f"holds seeds {sorted(got)}; the sweep has seeds 0..{seeds - 1}"
    if not set(rows["status"]) <= set(STATUSES):
        return None, f"has status(es) {sorted(set(rows['status']) - set(STATUSES))}; allowed: {', '.join(STATUSES)}"
    if set(rows["status"]) != {"failed"}:
        for table_name, suffix in COMPANIONS:
            why = _check_companion(results, table_name, trial_id + suffix)
            if why:
                return None, why
    return Landed.of(trial_id, rows), ""


def _check_companion(results: Storage, table: str, name: str) -> str:
    """Why a trial's weights, curves or profiles file is not usable ('' if it is)."""
    if not results.is_file(table, name):
        return f"its {table}/{name} is missing"
    try:
        if name.endswith(".parquet"):
            pq.read_metadata(results.path(table, name), filesystem=results.fs)
        elif _ZIP_END not in results.tail(table, name, n=1024):
            return f"its {table}/{name} is truncated"
    except (OSError, pa.ArrowException) as e:
        return f"its {table}/{name} is unreadable ({first_line(e)})"
    return ""


# The ledger: what each trial reported at its start.
def register(results: Storage, tune_trial_id: str, point: dict, configurations: list[dict], repair: bool = False) -> None:
    """Record a trial's searched point and its configurations (label, config_hash) once it starts;
    `repair`: a trial of the repair, not a sample of the search."""
    entry = {"tune_trial_id": tune_trial_id, "point": point, "configurations": configurations, "repair": repair}
    results.write_text(json.dumps(entry, default=str), "trials", f"{tune_trial_id}.json")


def ledger(results: Storage) -> list[dict]:
    """Every readable ledger entry (an unreadable one is skipped: the tables still hold what landed)."""
    out = []
    for name in results.names("trials", suffix=".json"):
        try:
            out.append(json.loads(results.read_bytes("trials", name)))
        except (OSError, ValueError):
            continue
    return out


def group_by_config(entries: list[dict]) -> dict[str, dict]:
    """config_hash -> the searched point that makes it (the first trial that ran it)."""
    out: dict[str, dict] = {}
    for entry in entries:
        for c in entry["configurations"]:
            out.setdefault(c["config_hash"], entry["point"])
    return out


def search_trials(entries: list[dict]) -> int:
    """How many samples the search has drawn: its own trials, not the repair's (a sampler may draw
    one point twice; each draw is a sample, and its configuration lands once)."""
    return sum(not e.get("repair") for e in entries)
