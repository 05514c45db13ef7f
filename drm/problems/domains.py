"""The domains D of the problems, with u = 0 on ∂D: where the points are drawn, and where a trained
network is measured (the quadrature grid of its energy, the lines along which its transitions are
counted, the points of ∂D on which its boundary error is taken).

A domain is a small frozen value; a problem names one. The dimension-specific geometry lives here
and nowhere else: the trainer, the measurements and the pipeline ask the domain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drm.counts import trapezoid_weights

if TYPE_CHECKING:  # torch is imported by the code that samples or measures, not to validate a config
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Grid:
    """The measurement grid: points (n, d), trapezoid weights (n,), and its shape (n,) or (ny, nx)
    with the coordinates of its axes (x; or x, y), for the saved profiles."""

    points: Tensor
    weights: Tensor
    shape: tuple[int, ...]
    axes: dict[str, np.ndarray]


@dataclass(frozen=True)
class Interval:
    """D = [0, 1]: the boundary is the two end points; transitions are counted on the quadrature grid."""

    nodes: int = 20_001  # the energy's quadrature and the counting grid
    max_nodes: int = 160_001  # the finest grid the energy is refined to (drm.measurement.refined_energy)
    curve_nodes: int = 1_025  # the grid transitions are counted on at each learning-curve point (a cheap one)
    profile_nodes: int = 2_001  # the stored profiles' grid: every 10th node of the measurement grid (drm.profiles)
    max_counting_nodes: int = 160_001  # the finest counting grid (drm.measurement.settled_counting)
    dim: ClassVar[int] = 1
    label: ClassVar[str] = "[0, 1]"
    default_boundary_batch: ClassVar[int] = 2
    wall_offsets: ClassVar[tuple[float, ...]] = ()  # an interval has no walls to count beside

    @property
    def counting_nodes(self) -> int:
        """The nodes transitions are counted on: the measurement grid's."""
        return self.nodes

    def counting(self, nodes: int) -> Interval:
        """This interval with transitions counted on `nodes` nodes (its measurement grid: the profiles')."""
        return dataclasses.replace(self, nodes=nodes)

    def check_boundary_batch(self, n: int) -> str | None:
        return None if n == 2 else "1D problems use the two end points: allowed 2"

    def curve_points(self, axis: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """Where a learning-curve point counts transitions: `curve_nodes` nodes on [0, 1], (n, 1)."""
        return self.counting(self.curve_nodes).quadrature(dtype, device).points

    def curve_image(self, dtype: torch.dtype, device: torch.device | str) -> None:
        """An interval has no image to count bands on."""
        return None

    def interior_points(self, seeds: Tensor, step: int | Tensor, n: int, dtype: torch.dtype) -> Tensor:
        from drm.sampling import interior_points

        return interior_points(seeds, step, n, self.dim, dtype)  # (K, n, 1)

    def boundary_points(self, seeds: Tensor, step: int | Tensor, n: int, dtype: torch.dtype) -> Tensor:
        import torch

        # Built on the device (arange), not copied from the host: no copy may wait on the host
        # inside a step, and none is allowed while a CUDA graph is captured.
        ends = torch.arange(2, dtype=dtype, device=seeds.device)[:, None]  # (2, 1): x = 0, 1
        return ends.expand(len(seeds), 2, 1)

    def quadrature(self, dtype: torch.dtype, device: torch.device | str, nodes: int | None = None) -> Grid:
        """The trapezoid rule on `nodes` (default: the measurement grid's) equispaced nodes."""
        import torch

        n = nodes or self.nodes
        t = torch.linspace(0, 1, n, dtype=dtype, device=device)
        w = torch.as_tensor(trapezoid_weights(n), dtype=dtype, device=device)
        return Grid(t[:, None], w, (n,), {"x": np.linspace(0, 1, n)})

    def line(self, axis: int, offset: float, dtype: torch.dtype, device: torch.device | str) -> Tensor | None:
        """The counting line: on an interval, the quadrature grid itself (None)."""
        return None

    def edge(self, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        import torch

        return torch.tensor([[0.0], [1.0]], dtype=dtype, device=device)  # (2, 1)


@dataclass(frozen=True)
class UnitSquare:
    """D = [0, 1]²: boundary points in equal shares on the four edges; transitions counted along the
    oscillation axis on lines across D (the middle one, and two near the walls)."""

    nodes: int = 257  # per side of the quadrature grid: x = 0.5 is a node
    max_nodes: int = 1_025  # per side of the finest grid the energy is refined to (drm.measurement.refined_energy)
    curve_nodes: int = 1_025  # along the middle line, at each learning-curve point (a cheap count)
    curve_image_nodes: int = 257  # per side of the image bands are counted on at each learning-curve point: the measurement grid
    max_counting_nodes: int = 65_537  # along the finest counting lines (drm.measurement.settled_counting)
    profile_nodes: int = 129  # per side of the stored profiles' grid: every other node of the measurement grid (drm.profiles)
    line_nodes: int = 4_097  # along each counting line
    dim: ClassVar[int] = 2
    label: ClassVar[str] = "[0, 1]²"
    default_boundary_batch: ClassVar[int] = 400
    wall_offsets: ClassVar[tuple[float, ...]] = (0.05, 0.95)

    @property
    def counting_nodes(self) -> int:
        """The nodes along each counting line (bands are counted on the measurement grid)."""
        return self.line_nodes

    def counting(self, nodes: int) -> UnitSquare:
        """This square with its counting lines of `nodes` nodes."""
        return dataclasses.replace(self, line_nodes=nodes)

    def curve_points(self, axis: int, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """Where a learning-curve point counts transitions: the middle line, `curve_nodes` nodes, (n, 2)."""
        return self.counting(self.curve_nodes).line(axis, 0.5, dtype, device)

    def curve_image(self, dtype: torch.dtype, device: torch.device | str) -> tuple[Tensor, tuple[int, int]]:
        """Where a learning-curve point counts bands: a `curve_image_nodes`² image, the measurement grid's (a
        coarser one, 129², missed a band of a field the final count resolved)."""
        grid = self.quadrature(dtype, device, self.curve_image_nodes)
        return grid.points, grid.shape

    def check_boundary_batch(self, n: int) -> str | None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 4:
            return f"{n!r} is not allowed; allowed: an integer >= 4"
        return f"{n} is not a multiple of 4 (one share per edge)" if n % 4 else None

    def interior_points(self, seeds: Tensor, step: int | Tensor, n: int, dtype: torch.dtype) -> Tensor:
        from drm.sampling import interior_points

        return interior_points(seeds, step, n, self.dim, dtype)  # (K, n, 2)

    def boundary_points(self, seeds: Tensor, step: int | Tensor, n: int, dtype: torch.dtype) -> Tensor:
        import torch

        from drm.sampling import edge_positions

        k, per_edge = len(seeds), n // 4
        t = edge_positions(seeds, step, (4, per_edge), dtype)  # (K, 4, n/4): position along the edge
        fixed = (torch.arange(4, dtype=dtype, device=seeds.device) % 2)[None, :, None].expand_as(t)  # 0, 1, 0, 1
        # Edges x = 0, x = 1 (t runs along y), then y = 0, y = 1 (t runs along x).
        xs = torch.cat([fixed[:, :2], t[:, 2:]], dim=1)  # (K, 4, n/4)
        ys = torch.cat([t[:, :2], fixed[:, 2:]], dim=1)
        return torch.stack([xs, ys], dim=-1).reshape(k, 4 * per_edge, 2)

    def quadrature(self, dtype: torch.dtype, device: torch.device | str, nodes: int | None = None) -> Grid:
        """The tensor trapezoid rule on `nodes`² (default: the measurement grid's) equispaced nodes."""
        import torch

        n = nodes or self.nodes
        t = torch.linspace(0, 1, n, dtype=dtype, device=device)
        w = torch.as_tensor(trapezoid_weights(n), dtype=dtype, device=device)
        yy, xx = torch.meshgrid(t, t, indexing="ij")  # (ny, nx): y along axis 0
        points = torch.stack([xx, yy], dim=-1).reshape(-1, 2)  # (ny·nx, 2)
        axes = {"x": np.linspace(0, 1, n), "y": np.linspace(0, 1, n)}
        return Grid(points, (w[:, None] * w[None, :]).reshape(-1), (n, n), axes)

    def line(self, axis: int, offset: float, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """The counting line along `axis` with the other coordinate at `offset` (x = offset, y ∈ [0, 1]
        for axis 1): (line_nodes, 2)."""
        import torch

        t = torch.linspace(0, 1, self.line_nodes, dtype=dtype, device=device)
        other = torch.full_like(t, offset)
        return torch.stack([t, other] if axis == 0 else [other, t], dim=1)

    def edge(self, dtype: torch.dtype, device: torch.device | str) -> Tensor:
        """1025 points on each of the four edges: (4100, 2)."""
        import torch

        t = torch.linspace(0, 1, 1025, dtype=dtype, device=device)
        zero, one = torch.zeros_like(t), torch.ones_like(t)
        return torch.cat([torch.stack(p, dim=1) for p in ((zero, t), (one, t), (t, zero), (t, one))])


Domain = Interval | UnitSquare
