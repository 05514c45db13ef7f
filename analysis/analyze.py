"""`drmfm analyze`: result tables in; summary.csv, effects.csv, reproduction.csv, figures/ and report.md out.

Each output lands whole (written to a temporary name, then renamed), report.md last, so a reader
never sees half a file and a report never points at a figure that is not there.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import figures as fig
from analysis.data import AnalysisError, load
from analysis.effects import effects as fit_effects
from analysis.report import render
from analysis.reproduction import reproduction
from analysis.search import Space, importance_figure, importances, parallel_coordinates, points
from analysis.summary import configuration_key, summarise, with_reference
from drm.classical.judge import References, cache_folder
from drm.storage import Storage


@dataclass
class Analysis:
    """What one `analyze` call wrote (paths under `out`) and its tables."""

    out: str
    summary: pd.DataFrame
    effects: pd.DataFrame
    reproduction: pd.DataFrame
    figures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # everything written, relative to `out`, report.md last
    sweeps: list[str] = field(default_factory=list)  # the sweeps whose rows were read
    runs_ok: int = 0


def default_out(first: str) -> str:
    """<first>/analysis, on the same storage (an object store's endpoint and options kept)."""
    return Storage(first).sub("analysis").location


def _draw(target: Storage, drawn: dict, names: list[str], say) -> None:
    """Each figure `drawn` gives (None: nothing to draw) as figures/<name>; the names it wrote go in `names`."""
    for name, draw in drawn.items():
        figure = draw()
        if figure is None:
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=110)
        target.write_bytes(buffer.getvalue(), "figures", name)
        names.append(name)
        say(f"figure {name}")


def _search_space(results, target: Storage, written: dict[str, list[str]], tables: list[str], say) -> list:
    """Per sweep that saved its spec: the parallel coordinates and (sampled spaces) the importances;
    returns (space, importances) for the report."""
    searched = []
    for spec in results.specs:
        space = Space.of(spec)
        table = points(results.rows, space)
        if table.empty:
            continue
        found = importances(table, space)
        searched.append((space, found))
        drawn = {f"parallel_coordinates_{space.sweep}.png": lambda: parallel_coordinates(table, space),
                 f"importances_{space.sweep}.png": lambda: importance_figure(found, space)}
        _draw(target, drawn, written.setdefault(f"search space of {space.sweep}", []), say)
        if found.table is not None:
            target.write_text(found.table.to_csv(index=False), f"importances_{space.sweep}.csv")
            tables.append(f"importances_{space.sweep}.csv")
    return searched


def analyze(folders: list[str], out: str | None = None, progress: Callable[[str], None] | None = None) -> Analysis:
    say = progress or (lambda _: None)
    results = load(folders)
    target = Storage(out or default_out(folders[0]))
    # Rows landed without the classical references (no scipy where they landed, or older tables) take
    # them from the home's cache (HOME/results/<sweep> -> HOME/references); analyze solves nothing.
    caches = [cache_folder(Path(f).parent.parent) for f in folders if "://" not in f]
    results = dataclasses.replace(results, rows=with_reference(results.rows, References(next(iter(caches), None), solve=False)))
    ok = results.ok
    if ok.empty:
        raise AnalysisError("results", f"no run with status ok in {', '.join(folders)} ({results.status_counts()}); nothing to analyse")
    say(f"{len(results.rows)} runs read, {len(ok)} ok")
    summary = summarise(results.rows)
    say(f"summary: {len(summary)} configurations")
    effects = fit_effects(ok)
    say(f"effects: {len(effects)} terms and trend tests")
    repro = reproduction(ok)
    written: dict[str, list[str]] = {}  # heading -> the figures under it
    for problem, rows in ok.groupby("problem", sort=True):
        key = configuration_key(rows)
        drawn = {
            f"heatmap_{problem}.png": lambda: fig.heatmap(rows, problem),
            f"transitions_vs_i_{problem}.png": lambda: fig.transitions_vs_i(rows, problem),
            f"energy_vs_transitions_{problem}.png": lambda: fig.energy_vs_transitions(rows, problem),
            f"profiles_{problem}.png": lambda: fig.profiles(rows, problem, key),
            f"interfaces_to_the_wall_{problem}.png": lambda: fig.interfaces_to_the_wall(rows, problem, key),
            f"learning_curves_{problem}.png": lambda: fig.learning_curves(rows, problem, key),
            f"counts_through_training_{problem}.png": lambda: fig.counts_through_training(rows, problem, key),
        }
        _draw(target, drawn, written.setdefault(problem, []), say)
    tables = ["summary.csv", "effects.csv", "reproduction.csv"]
    searched = _search_space(results, target, written, tables, say)
    target.write_text(summary.to_csv(index=False), "summary.csv")
    target.write_text(effects.to_csv(index=False), "effects.csv")
    target.write_text(repro.to_csv(index=False), "reproduction.csv")
    p2 = ok[ok["energy_reference_same_count"].notna()]
    if len(p2):  # each run's energy over the classical energy of its own transition count, and its gap to the best
        columns = ["sweep", "trial_id", "seed", "problem", "epsilon", "depth", "fourier_label", "epochs", "transitions", "energy",
                   "energy_reference_same_count", "energy_over_reference", "energy_reference", "energy_gap", "worse_than_trivial"]
        target.write_text(p2[columns].to_csv(index=False), "energy_reference.csv")
        tables.append("energy_reference.csv")
    written = {heading: names for heading, names in written.items() if names}
    target.write_text(render(results, summary, effects, repro, written, searched), "report.md")
    figures = [f"figures/{n}" for names in written.values() for n in names]
    return Analysis(out=target.show(), summary=summary, effects=effects, reproduction=repro, figures=figures,
                    files=[*tables, *figures, "report.md"], sweeps=sorted(results.rows["sweep"].dropna().unique()), runs_ok=len(ok))
