"""Collocation points: a pure function of (seed, step), uniform, on the right sets."""

from __future__ import annotations

import numpy as np
import torch

from drm.problems import Interval, UnitSquare
from drm.sampling import interior_points


def test_points_depend_only_on_seed_and_step():
    seeds = torch.tensor([0, 7, 3])
    a = interior_points(seeds, 5, 128, 2, torch.float64)
    b = interior_points(torch.tensor([7]), 5, 128, 2, torch.float64)
    assert torch.equal(a[1], b[0])  # the same member, packed or alone
    assert torch.equal(a, interior_points(seeds, torch.tensor(5), 128, 2, torch.float64))  # step as a tensor
    assert not torch.equal(a, interior_points(seeds, 6, 128, 2, torch.float64))
    assert not torch.equal(a[0], a[2])


def test_points_are_uniform_in_the_open_unit_cube():
    x = interior_points(torch.arange(4), 0, 50_000, 2, torch.float32).double()
    assert x.min() > 0 and x.max() < 1
    # Kolmogorov-Smirnov distance of each coordinate to U(0, 1); 1.63/sqrt(n) is the 1% critical value.
    for sample in x.permute(0, 2, 1).reshape(-1, 50_000):  # each coordinate of each member
        s = np.sort(sample.numpy())
        n = len(s)
        d = np.max(np.maximum(np.arange(1, n + 1) / n - s, s - np.arange(n) / n))
        assert d < 1.63 / np.sqrt(n)
    # Neighbouring indices are not correlated (a weak hash would show here).
    flat = x.reshape(-1).numpy()
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01


def test_boundary_points_1d_are_the_end_points():
    b = Interval().boundary_points(torch.tensor([1, 2]), 3, 2, torch.float64)
    assert b.shape == (2, 2, 1)
    assert b[:, :, 0].tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_boundary_points_2d_lie_on_each_edge_in_equal_shares():
    b = UnitSquare().boundary_points(torch.tensor([0, 1]), 3, 400, torch.float64)
    assert b.shape == (2, 400, 2)
    x, y = b[..., 0], b[..., 1]
    on_edge = (x == 0) | (x == 1) | (y == 0) | (y == 1)
    assert bool(on_edge.all())
    for edge in [(x == 0), (x == 1), (y == 0), (y == 1)]:
        assert edge.sum(dim=1).tolist() == [100, 100]
