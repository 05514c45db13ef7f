"""A problem's classical references at one ε: the energy per count of transitions, the best, and the
columns a run is judged by. Kept in the home (`references/<problem>/`, Parquet), so a sweep solves
each (problem, ε) once.

Counts run from 0 (u ≡ 0, the trivial state) upward until the energy clearly rises past the best
(`RISE` times it, and `PAST` counts beyond it). Where the problem has no minimiser at ε = 0 (P2 and
P3: ever finer profiles lower the energy), the table runs 1..16 and has no best. Where the problem
knows a closed form per count (P2 at ε = 0: 1/(12T²)), the table holds it, not the solver's figure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from drm.problems import Problem

VERSION = 2  # of the solver and the discretisation: a cache of another version is solved again
RISE, PAST, MAX_COUNT, UNBOUNDED_COUNTS = 1.5, 3, 64, 16
COLUMNS = ("transitions", "energy", "error", "grid", "capped", "held", "converged")


def trivial_energy(problem: Problem, epsilon: float) -> float:
    """I(0): the energy of u ≡ 0 (its density at u = 0, ∇u = 0 over the domain, whose measure is 1)."""
    import torch

    zero = torch.zeros((1, 1, problem.dim), dtype=torch.float64)
    w = problem.density(zero, torch.zeros((1, 1), dtype=torch.float64), zero, torch.zeros((1, 1), dtype=torch.float64),
                        torch.full((1, 1), float(epsilon), dtype=torch.float64))
    return float(w[0, 0])


@dataclass
class Reference:
    """One (problem, ε): rows per count, and what a run is set against."""

    problem: Problem
    epsilon: float
    rows: list[dict]

    @property
    def best(self) -> dict | None:
        """The lowest energy among the counts that held, or None where the problem has no minimiser at this ε."""
        if self.epsilon == 0 and not self.problem.minimiser_without_epsilon:
            return None
        held = [r for r in self.rows if r["held"]]
        return min(held, key=lambda r: (r["energy"], r["transitions"])) if held else None

    @property
    def trivial(self) -> float:
        return next(r["energy"] for r in self.rows if r["transitions"] == 0)

    def at(self, transitions: int) -> float | None:
        row = next((r for r in self.rows if r["transitions"] == transitions), None)
        return row["energy"] if row is not None and row["held"] else None

    def as_json(self) -> dict:
        best = self.best
        table = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()} for r in self.rows]
        return {"problem": self.problem.name, "epsilon": self.epsilon,
                "best": None if best is None else {"transitions": best["transitions"], "energy": best["energy"]}, "table": table}


def _row(problem: Problem, epsilon: float, transitions: int) -> dict:
    from drm.classical.solve import solve

    closed = problem.closed_form_energy(np.array([transitions]), epsilon)
    exact = {"error": 0.0, "capped": False, "held": True, "converged": True}
    if transitions == 0:
        return {"transitions": 0, "energy": trivial_energy(problem, epsilon), "grid": "", **exact}
    if closed is not None:
        return {"transitions": transitions, "energy": float(closed[0]), "grid": "closed form", **exact}
    return asdict(solve(problem, epsilon, transitions))


def _counts(problem: Problem, epsilon: float, rows: list[dict], progress: Callable[[dict], None] | None) -> list[dict]:
    """Rows from 0 up to where the energy clearly rises (or 1..16 without a minimiser)."""
    have = {r["transitions"]: r for r in rows}
    unbounded = epsilon == 0 and not problem.minimiser_without_epsilon
    t = 0
    while True:
        if t not in have:
            have[t] = _row(problem, epsilon, t)
            if progress is not None:
                progress(have[t])
        if unbounded:
            if t >= UNBOUNDED_COUNTS:
                break
        else:
            held = [r for r in have.values() if r["held"]]
            best = min(held, key=lambda r: (r["energy"], r["transitions"]))
            rose = have[t]["energy"] > RISE * best["energy"]
            flat = best["energy"] <= 1e-12 and t >= UNBOUNDED_COUNTS  # P1 at ε = 0: 0 at every count
            if t >= MAX_COUNT or flat or (t >= best["transitions"] + PAST and rose):
                break
        t += 1
    return [have[k] for k in sorted(have)]


def _path(cache: Path, problem: Problem, epsilon: float) -> Path:
    return cache / problem.name / f"epsilon={float(epsilon)!r}.parquet"


def _read(path: Path) -> list[dict] | None:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError):  # absent, or unreadable: solved again and rewritten
        return None
    if table.schema.metadata is None or table.schema.metadata.get(b"drmfm_reference_version") != str(VERSION).encode():
        return None
    return table.to_pylist()


def _write(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([{k: r[k] for k in COLUMNS} for r in rows]).replace_schema_metadata({"drmfm_reference_version": str(VERSION)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # whole or not at all; two writers of one (problem, ε) write the same rows


def reference(problem: Problem, epsilon: float, cache: Path | None = None, counts: tuple[int, ...] = (), solve: bool = True,
              progress: Callable[[dict], None] | None = None) -> Reference | None:
    """The references of `problem` at ε, from the cache where it has them, solved (and cached) where not.
    `counts` are counts a run needs beyond the table's range (solved and added). With `solve` False,
    only what the cache holds (None where it holds no table; counts it lacks are left out)."""
    if not problem.mirror_symmetric:
        raise ValueError(f"{problem.name}: no classical reference (its density is not declared mirror symmetric)")
    path = None if cache is None else _path(cache, problem, epsilon)
    cached = (_read(path) if path is not None else None) or []
    if not solve:
        return Reference(problem, float(epsilon), cached) if cached else None
    rows = _counts(problem, epsilon, cached, progress)
    have = {r["transitions"] for r in rows}
    rows += [_row(problem, epsilon, t) for t in sorted(set(counts) - have) if t >= 0]
    rows.sort(key=lambda r: r["transitions"])
    if path is not None and len(rows) != len(cached):
        _write(path, rows)
    return Reference(problem, float(epsilon), rows)
