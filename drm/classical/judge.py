"""A run set against the classical references: the four columns the metric registry declares as
filled at landing (`Metric.judged`), from a row's problem, ε, energy and transitions.

    energy_reference             the best classical energy of the run's problem at its ε (null: none)
    energy_reference_same_count  the classical energy with the run's own count (null: it did not hold)
    energy_gap                   energy / energy_reference − 1; null where the optimum is 0 or does not exist
    worse_than_trivial           energy ≥ I(0), the energy of u ≡ 0

They are filled where the tables are written (the sweep's recorder, `drmfm train`) or read
(`drmfm analyze`), never in a trial: a trial on a bare GPU node needs no scipy, and each (problem,
ε) is solved once, in the home's cache.
"""

from __future__ import annotations

import math
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from drm.classical.table import Reference, reference
from drm.problems import PROBLEMS

CACHE_VARIABLE = "DRMFM_REFERENCES"  # a cache of references shared by every home (default: each home's own)


def cache_folder(home: Path) -> Path:
    """Where the references of `home` are cached: $DRMFM_REFERENCES, else HOME/references."""
    return Path(os.environ.get(CACHE_VARIABLE) or home / "references")


COLUMNS = ("energy_reference", "energy_reference_same_count", "energy_gap", "worse_than_trivial")
OPTIMUM_ZERO = 1e-12  # a best energy at or below this is the optimum 0 (P1 at ε = 0): no relative gap


def judged(row: dict, found: Reference) -> dict:
    """The four columns of one row (its energy and transitions) against `found`."""
    energy, count = row.get("energy"), row.get("transitions")
    out = dict.fromkeys(COLUMNS)
    best = found.best
    out["energy_reference"] = None if best is None else best["energy"]
    if count is not None:
        out["energy_reference_same_count"] = found.at(int(count))
    if energy is None or not math.isfinite(energy):
        return out
    if best is not None and best["energy"] > OPTIMUM_ZERO:
        out["energy_gap"] = energy / best["energy"] - 1.0
    out["worse_than_trivial"] = bool(energy >= found.trivial)
    return out


class References:
    """Fills rows from the references cached in `cache` (a folder; None: in memory only), solving what
    the cache lacks (with `solve` False, from the cache alone). Without scipy it solves nothing and
    `missing` says why (once, to `say`)."""

    def __init__(self, cache: Path | str | None, say: Callable[[str], None] | None = None, solve: bool = True):
        self.cache = None if cache is None else Path(cache)
        self.say = say
        self.solve = solve
        self.missing: str | None = None
        self._found: dict[tuple[str, float], Reference] = {}
        self._locks: dict[tuple[str, float], threading.Lock] = defaultdict(threading.Lock)

    def _reference(self, problem: str, epsilon: float, counts: set[int]) -> Reference | None:
        if problem not in PROBLEMS or not PROBLEMS[problem].mirror_symmetric:
            return None
        key = (problem, float(epsilon))
        with self._locks[key]:  # one solve of a (problem, ε), whichever landings need it
            known = self._found.get(key)
            if known is None or (self.solve and not counts <= {r["transitions"] for r in known.rows}):
                known = reference(PROBLEMS[problem], epsilon, self.cache, tuple(sorted(counts)), solve=self.solve)
                if known is not None:
                    self._found[key] = known
            return known

    def available(self) -> bool:
        if self.missing is None:
            try:
                import scipy  # noqa: F401
            except ImportError:
                self.missing = ("energy_reference, energy_reference_same_count, energy_gap and worse_than_trivial are left null: "
                                "the classical references need scipy (pip install 'drmfm[analysis]'); "
                                "`drmfm reference` solves them where scipy is, and `drmfm analyze` then fills them from the cache")
                if self.say is not None:
                    self.say(self.missing)
                return False
            return True
        return False

    def fill(self, rows: list[dict]) -> list[dict]:
        """`rows` with their null reference columns filled (rows with an energy; others as they were)."""
        todo = [r for r in rows if r.get("energy") is not None and all(r.get(c) is None for c in COLUMNS)]
        if not todo or (self.solve and not self.available()):
            return rows
        wanted: dict[tuple[str, float], set[int]] = defaultdict(set)
        for r in todo:
            wanted[(r["problem"], float(r.get("epsilon") or 0.0))].add(int(r["transitions"]) if r.get("transitions") is not None else 0)
        found = {key: self._reference(*key, counts) for key, counts in wanted.items()}
        mine = {id(r) for r in todo}
        out = []
        for r in rows:
            ref = found.get((r["problem"], float(r.get("epsilon") or 0.0))) if id(r) in mine else None
            out.append(r if ref is None else {**r, **judged(r, ref)})
        return out
