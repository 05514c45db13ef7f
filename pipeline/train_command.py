"""`drmfm train` and `drmfm bench` output: progress while it runs, one line per seed, where the tables are."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from drm.autotune import TUNING_FILE
from drm.classical.judge import cache_folder
from drm.config import TrainConfig
from drm.metrics import measured_for
from drm.problems import get_problem
from drm.storage import Storage
from pipeline.recorder import StorageFailed
from pipeline.trial import run_trial

_err = Console(stderr=True)


def _out() -> Console:
    # A terminal's own width; piped or logged output is never wrapped (no "transiti…", and a bench
    # row, about 200 characters, on one line: a log is read, or grepped, a row a line).
    console = Console()
    return console if console.is_terminal else Console(width=1000)


def _new_results_dir(home: Path) -> tuple[str, Path]:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name, n = f"train-{stamp}", 1
    while (home / "results" / name).exists():
        n += 1
        name = f"train-{stamp}-{n}"
    return name, home / "results" / name


def _train_tracking(home: Path) -> str | None:
    """The MLflow store for `train` runs (experiment `train`), or None with one warning if unusable."""
    try:
        from pipeline.run_names import Layout
        from pipeline.tracking import default_tracking_uri, prepare
    except ImportError:  # a bare GPU node may have torch and pyarrow only
        _err.print("drmfm: warning: MLflow is not installed here; recording to the tables only (--no-mlflow silences this)")
        return None
    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)
    why = prepare(uri, "train", home / "mlartifacts" if uri.startswith("sqlite") else None, Layout().view())  # also ends runs a killed `train` left
    if why is not None:
        _err.print(f"drmfm: warning: MLflow at {uri} cannot be reached ({why}); recording to the tables only")
        return None
    return uri


def run_train(config: TrainConfig, seeds: list[int], *, device: str, home: Path, mlflow: bool = True) -> int:
    """Train one pack, print its table; 0 if every seed finished, 1 if some diverged."""
    name, results_dir = _new_results_dir(home)
    Storage(home).require_writable("home")
    uri = _train_tracking(home) if mlflow else None
    out = _out()
    out.print(f"training {len(seeds)} seed(s) packed: {config.describe()}")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=_err,
        transient=True,
    ) as progress:
        task = progress.add_task("preparing", total=config.epochs, rate="")
        began: tuple[int, float] | None = None  # (step, time) as training began: the rate leaves out compiling and tuning

        def report(step: int, total: int) -> None:
            nonlocal began
            now = time.perf_counter()
            if began is None:
                began = (step, now)
                progress.reset(task, total=total, completed=step, description="steps", rate="")  # the ETA from here on
                return
            rate = (step - began[0]) / max(now - began[1], 1e-9)
            progress.update(task, completed=step, rate=f"{rate:,.{1 if rate < 10 else 0}f} steps/s")

        try:
            rows = run_trial(
                config, seeds, device=device, sweep=name, trial_id=config.config_hash(), results_dir=results_dir,
                progress=report, say=lambda what: progress.update(task, description=what),
                tracking_uri=uri, references=cache_folder(home), tuning=home / TUNING_FILE,
            )
        except StorageFailed as e:
            print(f"drmfm: {e}; nothing of this run was kept", file=sys.stderr)
            return 1
    table = Table(title=f"{name}  ({rows['device'][0].as_py()}, {rows['step_mode'][0].as_py()}, {rows['wall_seconds'][0].as_py():.1f} s)")
    shown = [m for m in measured_for(get_problem(config.problem)) if m.shown is not None]
    for c in ["seed", "status", *(m.name for m in shown), "seconds"]:
        table.add_column(c, justify="right")
    for r in rows.to_pylist():
        cells = [_fmt(r[m.name], m.shown) for m in shown]
        table.add_row(str(r["seed"]), r["status"], *cells, f"{r['wall_seconds']:.1f}")
    out.print(table)
    out.print(f"results: {results_dir}")
    if uri is not None:
        out.print(f"mlflow:  {uri}  (open its runs: drmfm ui train --home {home})")
    failed = [r["seed"] for r in rows.to_pylist() if r["status"] != "ok"]
    if failed:
        _err.print(f"drmfm: {len(failed)} of {len(seeds)} seeds diverged (non-finite loss): seeds {failed}")
        return 1
    return 0


def _fmt(value: float | None, spec: str = ".5g") -> str:
    return "—" if value is None else format(value, spec)


def print_bench(result: dict) -> None:
    """The bench's figures as a table: trial-steps/s, GFLOP/s, share of the matmul peak, ratio."""
    peak = result["matmul_peak_gflops"]
    table = Table(
        title=f"drmfm bench: {result['device']}, torch {result['torch']}, {result['threads']} threads, "
        f"{result['dtype']}, matmul peak {peak:.1f} GFLOP/s"
    )
    columns = ("case", "method", "graphed", "K", "trial-steps/s", "GFLOP/s", "of peak", "× reference", "matmul", "other ops", "members a chunk",
               "threads", "passes")
    for c in columns:
        table.add_column(c, justify="right")
    for r in result["results"]:
        tuning = r.get("tuning")
        table.add_row(
            r["case"],
            r["method"],
            "yes" if r["graphed"] else "no",
            str(r["K"]),
            f"{r['trial_steps_per_s']:,.0f}",
            f"{r['gflops']:.1f}",
            f"{r['gflops'] / peak:.0%}",
            f"{r['ratio_to_reference']:.2f}",
            *(f"{r[k]:.0%}" if r.get(k) is not None else "-" for k in ("matmul_share", "elementwise_share")),
            f"{tuning['members_per_chunk']} ({tuning['source']})" if tuning else "-",
            str(tuning["threads"]) if tuning and tuning.get("threads") else "-",
            r.get("passes") or "-",
        )
    _out().print(table)
    _out().print("matmul / other ops: shares of an eager step's profiled time in matrix products and in the other operators "
                 "(elementwise passes, compiled or eager, Adam, copies, reductions); the rest is Python, dispatch and the profiler's "
                 "own cost, large for small steps; '-' for a graphed step or shares that could not be read.")
