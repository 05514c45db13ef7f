"""A trial's stored profiles: u and its derivative along the oscillation axis, for every seed, on the
grid a figure needs. The measurement grid itself (1D: 20,001 nodes; 2D: 257²) is not kept: the
counts are taken on it in training, and `drmfm recount` evaluates the weights on it again.

Layout 2 (0.3 on), one file per trial:
    one row per seed: (sweep, trial_id, seed, u, du), u and du float32 lists over the grid in
    row-major order ((ny, nx) in 2D: y along the first axis, like the measurement grid);
    the grid once per trial, in the schema's metadata `drmfm.profiles`:
    {"layout": 2, "shape": [n] or [ny, nx], "axes": {"x": [first, last, n], "y": [...]}}, each
    axis equispaced from its first node to its last.
Layout 1 (0.1, 0.2): one row per node and seed, (sweep, trial_id, seed, x, y, u, du), y null in 1D.

`read` takes either, so that result folders of every version draw the same figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

LAYOUT = 2
METADATA = b"drmfm.profiles"
SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("seed", pa.int64()),
        ("u", pa.list_(pa.float32())),
        ("du", pa.list_(pa.float32())),  # u_x in 1D, u_y in 2D: along the oscillation axis
    ]
)


@dataclass(frozen=True)
class Profiles:
    """Every seed's u and du on one grid: `u`, `du` (K, n) in 1D, (K, ny, nx) in 2D."""

    seeds: np.ndarray  # (K,)
    axes: dict[str, np.ndarray]  # the grid's coordinates: x; or x, y
    u: np.ndarray
    du: np.ndarray

    @property
    def two_d(self) -> bool:
        return "y" in self.axes

    def of(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(u, du) of one seed, on the grid's shape."""
        k = int(np.flatnonzero(self.seeds == seed)[0])
        return self.u[k], self.du[k]


def coarsened(axes: dict[str, np.ndarray], u: np.ndarray, du: np.ndarray, nodes: int) -> Profiles:
    """The profiles on a sub-grid of at most `nodes` nodes per axis: every s-th node, s the smallest
    step that divides n − 1 (both ends stay nodes, and every value is one the measurement took).
    `u`, `du`: (K, *grid shape); the seeds are filled in by the caller (`stored`)."""
    steps = {name: _step(len(axis), nodes) for name, axis in axes.items()}
    pick = tuple(slice(None, None, steps[name]) for name in ("y", "x") if name in axes)  # (ny, nx) or (n,)
    return Profiles(np.arange(len(u)), {name: axis[:: steps[name]] for name, axis in axes.items()},
                    u[(slice(None), *pick)], du[(slice(None), *pick)])


def _step(n: int, nodes: int) -> int:
    return next(s for s in range(1, n) if (n - 1) % s == 0 and (n - 1) // s + 1 <= nodes) if n > nodes else 1


def stored(profiles: Profiles, seeds: list[int], *, sweep: str, trial_id: str) -> pa.Table:
    """The profiles as a trial's table, layout 2: one row per seed, the grid in the metadata."""
    K = len(seeds)
    shape = profiles.u.shape[1:]
    flat_u = profiles.u.reshape(K, -1).astype(np.float32)  # (K, n) row-major
    flat_du = profiles.du.reshape(K, -1).astype(np.float32)
    axes = {}
    for name, axis in profiles.axes.items():
        if len(axis) > 2 and not np.allclose(np.diff(axis), (axis[-1] - axis[0]) / (len(axis) - 1), rtol=1e-9, atol=1e-12):
            raise ValueError(f"the profile grid's {name} axis is not equispaced: layout {LAYOUT} cannot hold it")
        axes[name] = [float(axis[0]), float(axis[-1]), len(axis)]
    grid = json.dumps({"layout": LAYOUT, "shape": list(shape), "axes": axes}).encode()
    return pa.table(
        {
            "sweep": [sweep] * K,
            "trial_id": [trial_id] * K,
            "seed": np.asarray(seeds, dtype=np.int64),
            "u": _lists(flat_u),
            "du": _lists(flat_du),
        },
        schema=SCHEMA.with_metadata({METADATA: grid}),
    )


def _lists(values: np.ndarray) -> pa.ListArray:
    """(K, n) as K lists of n float32 values."""
    offsets = pa.array(np.arange(values.shape[0] + 1, dtype=np.int32) * values.shape[1])
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1)))


def read(table: pa.Table) -> Profiles:
    """A trial's profiles table, of either layout, as arrays."""
    grid = (table.schema.metadata or {}).get(METADATA)
    if grid is not None:
        grid = json.loads(grid)
        shape = tuple(grid["shape"])
        axes = {name: np.linspace(first, last, n) for name, (first, last, n) in grid["axes"].items()}
        K = table.num_rows

        def values(column: str) -> np.ndarray:
            flat = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
            return flat.reshape(K, *shape)

        return Profiles(table.column("seed").to_numpy(), axes, values("u"), values("du"))
    if "x" not in table.column_names:  # layout 2 without its grid: only an empty table (a trial settled without profiles)
        if table.num_rows:
            raise ValueError(f"a profiles table of {table.num_rows} rows has no grid in its metadata ({METADATA.decode()})")
        return Profiles(np.zeros(0, dtype=np.int64), {}, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32))
    return _layout_1(table)


def _layout_1(table: pa.Table) -> Profiles:
    """Layout 1: every node a row, the seeds one after another, a seed's nodes in grid order."""
    seeds = table.column("seed").to_numpy()
    order = np.unique(seeds, return_index=True)
    seeds = seeds[np.sort(order[1])]  # as they come
    x = np.unique(table.column("x").to_numpy())
    two_d = table.num_rows > 0 and table.column("y").null_count == 0
    axes = {"x": x, "y": np.unique(table.column("y").to_numpy())} if two_d else {"x": x}
    shape = (len(axes["y"]), len(x)) if two_d else (len(x),)
    column = {name: table.column(name).to_numpy(zero_copy_only=False) for name in ("seed", "u", "du")}

    def values(name: str) -> np.ndarray:
        return np.stack([column[name][column["seed"] == s].reshape(shape) for s in seeds]) if len(seeds) else np.zeros((0, *shape))

    return Profiles(seeds, axes, values("u"), values("du"))
