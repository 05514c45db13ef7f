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
        landed = {d.split("-")[0] for d in done}  # a packed trial lands as <trial>-<j>
        failed = [t for t in trials if root.is_file("ray", sweep, t, "error.txt") and t.split("_")[3] not in landed]
        out.append(
            {
                "name": sweep,
                "problem": spec["problem"],
                "total": _total(spec),
                "done": len(done),
                "failed": len(failed),
                "started": len(trials),
                "seeds": spec["seeds"],
            }
        )
    return out


def _total(spec: dict) -> int:
    """Configurations to land: the grid's points, or the samples times what each packs."""
    def size(names) -> int:
        n = 1
        for name in names:
            values = spec["space"][name]
            n *= len(values) if isinstance(values, list) else 1
        return n

    packed = spec.get("pack") or []
    samples = spec["search"]["num_samples"]
    return samples * size(packed) if samples else size(spec["space"])
