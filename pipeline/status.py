"""`drmfm status`: the sweeps in a home (or a --storage root), counted from what validates in their tables."""

from __future__ import annotations

import json
import time

from drm.storage import Storage, first_line
from pipeline.lease import TTL_SECONDS, Lease
from pipeline.reconcile import group_by_config, inspect, ledger
from pipeline.sweep import SPEC_FILE


def sweep_status(root: Storage, name: str | None = None) -> list[dict]:
    """One entry per sweep under `root` (or just `name`). Only valid committed trials count as done
    or failed (a file that does not validate is counted apart: the next --resume quarantines it).
    A sweep whose saved spec cannot be read is an entry with only `name` and `unreadable` (why)."""
    names = [n for n in root.folders("ray") if root.is_file("ray", n, SPEC_FILE)]
    if name is not None:
        names = [n for n in names if n == name]
    out = []
    for sweep in names:
        try:
            spec = json.loads(root.read_bytes("ray", sweep, SPEC_FILE))["spec"]
            spec["seeds"], spec["problem"], spec["space"], spec["search"]["num_samples"]
        except (ValueError, KeyError, TypeError) as e:  # OSError (the storage itself) is the caller's
            out.append({"name": sweep, "unreadable": f"{SPEC_FILE} is not the spec drmfm saved ({first_line(e)})"})
            continue
        results = root.sub("results", sweep)
        found = inspect(results, spec["seeds"])
        landed = found.by_config().values()
        holder = Lease(root, sweep).holder()
        out.append(
            {
                "name": sweep,
                "problem": spec["problem"],
                "total": _total(spec),
                "done": sum(t.done for t in landed),
                "failed": sum(not t.done for t in landed),
                "invalid": len(found.invalid),
                "started": len(group_by_config(ledger(results))),
                "seeds": spec["seeds"],
                "running": holder.describe() if holder is not None and not holder.stale(TTL_SECONDS, time.time()) else None,
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
