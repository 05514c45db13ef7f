"""`drmfm status`: the sweeps in a home, with trials done / failed / running."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.sweep import SPEC_FILE


def sweep_status(home: Path, name: str | None = None) -> list[dict]:
    """One entry per sweep in the home or --storage folder (or just `name`): counts from Ray's folder and the tables."""
    ray_dir = home / "ray"
    folders = sorted(p.parent for p in ray_dir.glob(f"*/{SPEC_FILE}")) if ray_dir.is_dir() else []
    if name is not None:
        folders = [f for f in folders if f.name == name]
    out = []
    for folder in folders:
        saved = json.loads((folder / SPEC_FILE).read_text())
        spec = saved["spec"]
        replicates = home / "results" / folder.name / "replicates"
        done = {p.stem for p in replicates.glob("*.parquet")} if replicates.is_dir() else set()
        trials = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith("run_tune_trial")]
        failed = [p for p in trials if (p / "error.txt").exists() and not any(p.name.endswith(t) or t in p.name for t in done)]
        total = spec["search"]["num_samples"] or _grid_size(spec)
        out.append(
            {
                "name": folder.name,
                "problem": spec["problem"],
                "total": total,
                "done": len(done),
                "failed": len(failed),
                "started": len(trials),
                "seeds": spec["seeds"],
            }
        )
    return out


def _grid_size(spec: dict) -> int:
    n = 1
    for values in spec["space"].values():
        n *= len(values) if isinstance(values, list) else 1
    return n
