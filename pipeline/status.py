"""`drmfm status`: the sweeps in a home (or a --storage root), with trials done / failed / started."""

from __future__ import annotations

import json

from pipeline.storage import Storage
from pipeline.sweep import SPEC_FILE
from pipeline.tables import committed


def sweep_status(root: Storage, name: str | None = None) -> list[dict]:
    """One entry per sweep under `root` (or just `name`): counts from Ray Tune's folder and the tables."""
    names = [n for n in root.folders("ray") if root.is_file("ray", n, SPEC_FILE)]
    if name is not None:
        names = [n for n in names if n == name]
    out = []
    for sweep in names:
        spec = json.loads(root.read_bytes("ray", sweep, SPEC_FILE))["spec"]
        done = committed(root.sub("results", sweep))
        trials = [t for t in root.folders("ray", sweep) if t.startswith("run_tune_trial")]
        failed = [t for t in trials if root.is_file("ray", sweep, t, "error.txt") and not any(d in t for d in done)]
        out.append(
            {
                "name": sweep,
                "problem": spec["problem"],
                "total": spec["search"]["num_samples"] or _grid_size(spec),
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
