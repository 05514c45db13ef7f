"""Quadrature energies of functions whose energy is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from drm.measure import quadrature_energy
from drm.problems import get_problem


def _zigzag(T: int):
    """The zig-zag with slopes ±1 and T kinks, the first at 1/(2T), then every 1/T: u(0) = u(1) = 0.

    With s = T x: u = tri(s) / T, tri(s) = 1/2 - |((s + 1/2) mod 2) - 1| (0 at s = 0, peaks ±1/2).
    """

    def fields(points: torch.Tensor):
        s = points[:, 0] * T
        phase = torch.remainder(s + 0.5, 2.0)
        u = (0.5 - torch.abs(phase - 1.0)) / T
        u_x = torch.where(phase < 1.0, 1.0, -1.0).to(points.dtype)
        return u[None], u_x[None, :, None], None

    return fields


@pytest.mark.parametrize("T", [1, 2, 5, 16])
def test_p1_zigzags_have_zero_energy(T):
    energy = quadrature_energy(get_problem("double_well"), 0.0, _zigzag(T))
    assert energy.item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("T", [1, 2, 5, 16, 40])
def test_p2_zigzag_with_T_kinks_has_energy_one_over_12_T_squared(T):
    # ∫ u² of a triangle wave of amplitude 1/(2T) is (1/(2T))²/3 = 1/(12T²); (u_x² - 1)² vanishes.
    # The trapezoid rule's error on piecewise-quadratic u² (kinks on nodes) is h²/6 ≈ 4e-10.
    energy = quadrature_energy(get_problem("double_well_u2"), 0.0, _zigzag(T))
    assert energy.item() == pytest.approx(1 / (12 * T**2), abs=1e-9)


def test_zigzag_fixture_is_the_stated_function():
    u, u_x, _ = _zigzag(2)(torch.tensor([[0.0], [0.25], [0.5], [0.75], [1.0], [0.1]], dtype=torch.float64))
    torch.testing.assert_close(u[0], torch.tensor([0.0, 0.25, 0.0, -0.25, 0.0, 0.1], dtype=torch.float64))
    assert u_x[0, 5, 0].item() == 1.0


@pytest.mark.parametrize("problem,epsilon", [("double_well", 0.0), ("double_well", 0.3), ("double_well_u2", 0.2)])
def test_1d_smooth_function_energy(problem, epsilon):
    a = 0.4
    pi = math.pi

    def fields(points):
        x = points[:, 0]
        u = a * torch.sin(pi * x)
        return u[None], (a * pi * torch.cos(pi * x))[None, :, None], (-a * pi**2 * torch.sin(pi * x))[None]

    # ∫(a²π²cos² - 1)² = 3a⁴π⁴/8 - a²π² + 1;  ∫u² = a²/2;  ε²∫u_xx² = ε²a²π⁴/2
    expected = 3 * a**4 * pi**4 / 8 - a**2 * pi**2 + 1 + epsilon**2 * a**2 * pi**4 / 2
    if problem == "double_well_u2":
        expected += a**2 / 2
    energy = quadrature_energy(get_problem(problem), epsilon, fields)
    assert energy.item() == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("epsilon", [0.0, 0.1 / 16, 0.25])
def test_2d_smooth_function_energy(epsilon):
    a = 0.3
    pi = math.pi

    def fields(points):
        x, y = points[:, 0], points[:, 1]
        sx, cx, sy, cy = torch.sin(pi * x), torch.cos(pi * x), torch.sin(pi * y), torch.cos(pi * y)
        u = a * sx * sy
        grad = torch.stack([a * pi * cx * sy, a * pi * sx * cy], dim=-1)
        return u[None], grad[None], (-a * pi**2 * sx * sy)[None]

    # ∫∫u_x² = a²π²/4;  ∫∫(u_y² - 1)² = 9a⁴π⁴/64 - a²π²/2 + 1;  ε²∫∫u_yy² = ε²a²π⁴/4
    expected = a**2 * pi**2 / 4 + 9 * a**4 * pi**4 / 64 - a**2 * pi**2 / 2 + 1 + epsilon**2 * a**2 * pi**4 / 4
    energy = quadrature_energy(get_problem("twin_branching"), epsilon, fields)
    assert energy.item() == pytest.approx(expected, rel=1e-9)
