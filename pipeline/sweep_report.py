"""What a sweep says at its end: repairs made, trials that failed, overhead, and the rows against
configurations × seeds, with the exit code that goes with them."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from drm.storage import Storage
from pipeline.reconcile import Inventory, ledger, search_trials
from pipeline.spec import SweepSpec

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Died)\b.*")


@dataclass
class Outcome:
    """What the Ray Tune runs of this driver did."""

    ray_seconds: float = 0.0
    wall: float = 0.0
    slots: int = 1
    tally: dict | None = None  # the recorder's count: trials, seconds trained and spent in this run
    stopped: str | None = None  # why the sweep stopped before its end (storage, lease, Tune)
    tracking: str | None = None  # why MLflow stopped recording, if it did
    errors: list[str] = field(default_factory=list)  # one line per failed trial


def error_text(error: BaseException | str | None) -> str:
    """One readable line of a trial's error: the exception's own line ("ValueError: …", the innermost
    one of a traceback), without Ray's colours and frames; else its type and first line."""
    text = _ANSI.sub("", str(error or "")).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line[:300]
    first = lines[0] if lines else "unknown error"
    return (f"{type(error).__name__}: {first}" if isinstance(error, BaseException) else first)[:300]


def report_repairs(found: Inventory) -> None:
    for file, why in found.invalid.items():
        print(f"drmfm: quarantined {file} ({why}) to quarantine/; its configuration is trained again", file=sys.stderr)
    if found.cleaned:
        print(f"drmfm: removed {len(found.cleaned)} file(s) an interrupted write left (temporary or uncommitted)", file=sys.stderr)


def record_failures(spec: SweepSpec, results_seen: list, results: Storage, recorder, failed_now: set[str]) -> list[str]:
    """A trial whose retries are spent gets rows too (its configuration, status `failed`, its error),
    and its MLflow runs end FAILED (a killed trial could not end them itself). Its trial id is the
    one it reported (Tune's metrics, or the ledger), never parsed out of a folder name. The sweep's
    recorder writes them (it keeps the index of what has landed); `failed_now` gains their hashes."""
    import ray

    from pipeline.recorder import control
    from pipeline.rows import failed_rows
    from pipeline.tune_trial import trial_labels

    failed = [r for r in results_seen if r.error is not None]
    if not failed:
        return []
    labels = {c["config_hash"]: c["trial_id"] for entry in ledger(results) for c in entry["configurations"]}
    lines = []
    for result in failed:
        text = error_text(result.error)
        lines.append(text)
        configs = spec.trial_configs(spec.searched_point(result.config))
        reported = (result.metrics or {}).get("trial_id")
        fallback = trial_labels(spec, reported, len(configs)) if reported else [f"failed-{c.config_hash()}" for c in configs]
        for config, label in zip(configs, fallback):
            trial_id = labels.get(config.config_hash(), label)
            rows = failed_rows(config, list(range(spec.seeds)), sweep=spec.name, trial_id=trial_id, error=text)
            try:
                ray.get(control(recorder.record_failed).remote(trial_id, rows), timeout=120)
            except Exception:  # noqa: BLE001 - the storage failed too: the configuration is missing, said at the end
                continue
            failed_now.add(config.config_hash())
    return lines


def _overhead(outcome: Outcome) -> None:
    """Where this run's wall time went: Ray's start, each trial's time outside training, the trials' share."""
    tally = outcome.tally or {}
    if not tally.get("trials") or outcome.wall <= 0 or tally.get("trained", 0) <= 0:
        return
    outside = (tally["elapsed"] - tally["trained"]) / tally["trials"]
    print(
        f"overhead: Ray up in {outcome.ray_seconds:.1f} s; per trial {outside:.1f} s outside training (start, measure, tables, MLflow); "
        f"training filled {tally['trained'] / (outcome.wall * outcome.slots):.0%} of {outcome.slots} slot(s) × {outcome.wall:.0f} s",
        file=sys.stderr,
    )


def summary(spec: SweepSpec, final: Inventory, expected: dict[str, dict], outcome: Outcome, state: Storage, results: Storage,
            uri: str | None, home: Path) -> int:
    """The last lines: rows against configurations × seeds; 0 when every row landed and none failed or diverged."""
    _overhead(outcome)
    landed = final.by_config()
    counts = dict.fromkeys(("ok", "diverged", "stopped", "failed"), 0)
    for config_hash in expected:
        for status in landed[config_hash].statuses if config_hash in landed else ():
            counts[status] += 1
    rows = sum(counts.values())
    missing = len([h for h in expected if h not in landed])
    unstarted = max(0, spec.num_trials - search_trials(ledger(results))) if spec.search.sampler != "grid" else 0
    print(f"tables:  {results.show()}")
    print(f"ray:     {state.show()}")
    if uri is not None:
        print(f"mlflow:  {uri}  (open its runs: drmfm ui {spec.name} --home {home})")
    problems = []
    if outcome.stopped:
        problems.append(f"the sweep stopped early: {outcome.stopped}; what landed is kept, --resume finishes the rest")
    if outcome.errors:
        problems.append(f"{len(outcome.errors)} trial(s) failed: {'; '.join(outcome.errors[:3])}")
    if counts["failed"] and not outcome.errors:
        problems.append(f"{counts['failed'] // max(spec.seeds, 1)} configuration(s) have failed rows: run again with --resume")
    if counts["diverged"]:
        problems.append(f"{counts['diverged']} seed(s) diverged (status 'diverged' in the tables)")
    if missing or unstarted:
        never = f" and {unstarted} sample(s) never started" if unstarted else ""
        problems.append(f"{missing} configuration(s) have no rows{never}: run again with --resume")
    stopped = f", {counts['stopped']} stopped early by the scheduler" if counts["stopped"] else ""
    print(
        f"{spec.name}: {rows} of {len(expected) * spec.seeds} seed rows landed ({len(expected)} configurations × {spec.seeds} seeds): "
        f"{counts['ok']} ok, {counts['diverged']} diverged{stopped}, {counts['failed']} failed, {missing * spec.seeds} missing",
        file=sys.stderr,
    )
    if problems:
        print("drmfm: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0
