"""`drmfm recount`: the counts of stored runs again, from their weights (not only their profiles), at
other hysteresis thresholds and counting grids, for every seed, without retraining and without
touching the run's tables. The counts are those of the metric registry (drm.metrics), computed by
the same code as in training: at a row's own τ and grid a recount reproduces its stored counts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import pyarrow as pa

from drm.config import TrainConfig
from drm.metrics import metrics
from drm.pack import Pack
from drm.storage import Storage, first_line
from pipeline.tables import committed

COUNTS = ("transitions", "transitions_per_period", "transitions_wall", "bands",
          "band_width_mean", "band_width_cv", "wavenumber", "lock_in", "branching_exponent")  # the counts and the geometry of lines
RECOUNT = pa.schema([
    ("sweep", pa.string()), ("trial_id", pa.string()), ("seed", pa.int64()), ("transition_threshold", pa.float64()),
    ("count_grid", pa.int64()), ("transitions", pa.int64()), ("transitions_per_period", pa.float64()),
    ("transitions_wall", pa.float64()), ("bands", pa.int64()), ("band_width_mean", pa.float64()), ("band_width_cv", pa.float64()),
    ("wavenumber", pa.float64()), ("lock_in", pa.float64()), ("branching_exponent", pa.float64()),
])


class RecountError(ValueError):
    """Results that cannot be recounted (no replicates, unreadable weights): exit 2, one line."""


def load_pack(results: Storage, trial_id: str):
    """The trained model of a trial's seeds, from its weights file, and its Pack (CPU)."""
    import torch

    from drm.train import build_model

    state = torch.load(io.BytesIO(results.read_bytes("weights", f"{trial_id}.pt")), map_location="cpu")
    config = TrainConfig(**state["config"]).resolve()
    seeds = [int(s) for s in state["seeds"]]
    model = build_model(config, seeds, "cpu", getattr(torch, config.dtype))
    target = model.state_dict()
    with torch.no_grad():
        for name, value in state["state_dict"].items():
            if value.shape != target[name].shape and value.shape[1:] == target[name].shape:
                value = value[0]  # a mixed pack's per-member map: within one configuration, one frequency
            target[name].copy_(value)
    return model, Pack.of(config, seeds)


def recount_trial(results: Storage, trial_id: str, thresholds: list[float] | None, grid: int | None) -> list[dict]:
    """One row per (seed, τ) of a trial; a seed that did not end `ok` counts nothing (null), as in its rows."""
    from drm.measurement import counting_view

    rows = results.read_table("replicates", f"{trial_id}.parquet").to_pylist()
    if all(r["status"] == "failed" for r in rows):  # retries spent: no weights, nothing to count
        return []
    model, pack = load_pack(results, trial_id)
    counted = [m for m in metrics() if m.name in COUNTS and m.applies(pack.problem)]
    own = {r["seed"]: r.get("count_grid") for r in rows}  # tables older than count_grid: the problem's counting grid
    out = []
    for tau in thresholds or sorted({r["transition_threshold"] or pack.config.transition_threshold for r in rows}):
        # Each seed on its own counting grid (a grid refined for one seed is not another's).
        for count_grid in dict.fromkeys([grid or own.get(seed) for seed in pack.seeds]):
            view = counting_view(model, pack, tau, count_grid)
            values = {m.name: m.compute(view) for m in counted}
            for k, seed in enumerate(pack.seeds):
                if (grid or own.get(seed)) != count_grid:
                    continue
                row = next(r for r in rows if r["seed"] == seed)
                ok = row["status"] == "ok"
                out.append({"sweep": row["sweep"], "trial_id": trial_id, "seed": seed, "transition_threshold": tau,
                            "count_grid": int(view.count_grid[k]),
                            **{name: (values[name][k].item() if ok and values.get(name) is not None else None) for name in COUNTS}})
    return out


def recount(folders: list[str], thresholds: list[float] | None, grid: int | None, out: str | None,
            progress: Callable[[str], None] = lambda line: None) -> list[tuple[str, int]]:
    """Recount every committed trial of each folder; write <out or folder/recount>/<sweep>.parquet.
    Returns (where, rows) per folder."""
    _check(thresholds, grid)
    written = []
    for folder in folders:
        try:
            results = Storage(folder)
            trials = sorted(committed(results))
        except (OSError, ValueError, pa.ArrowException) as e:
            raise RecountError(f"results: {folder} cannot be read ({first_line(e)})") from None
        if not trials:
            raise RecountError(f"results: {folder} holds no replicates/*.parquet; allowed: a results/<sweep> folder")
        rows = []
        for j, trial_id in enumerate(trials, 1):
            try:
                rows += recount_trial(results, trial_id, thresholds, grid)
            except (OSError, KeyError, RuntimeError, pa.ArrowException) as e:
                raise RecountError(f"results: trial {trial_id} of {folder} cannot be recounted ({first_line(e)})") from None
            progress(f"{folder}: {j}/{len(trials)} trials")
        target = Storage(out) if out is not None else Storage(folder)
        name = results.location.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]
        parts = (f"{name}.parquet",) if out is not None else ("recount", f"{name}.parquet")
        target.write_table(pa.Table.from_pylist(rows, schema=RECOUNT), *parts)
        written.append((target.show(*parts), len(rows)))
    return written


def _check(thresholds: list[float] | None, grid: int | None) -> None:
    for tau in thresholds or []:
        if not (math.isfinite(tau) and tau >= 0):
            raise RecountError(f"threshold: {tau!r} is not allowed; allowed: a finite number >= 0")
    if grid is not None and not 3 <= grid <= 1_000_001:
        raise RecountError(f"grid: {grid} is not allowed; allowed: 3..1000001 nodes")
