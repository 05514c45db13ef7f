"""The paper's problems (section 4): P1 (15), P2 (17), P3 (18) and P4 (19)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import numpy as np

from drm.problems.base import Problem
from drm.problems.domains import Interval, UnitSquare

if TYPE_CHECKING:
    from torch import Tensor


@final
@dataclass(frozen=True)
class DoubleWell(Problem):
    """Problem (15): W = (u_x² − 1)²; minimum 0 is attained by every zig-zag with u_x = ±1."""

    name = "double_well"
    label = "P1, eq. (15)"
    equation = "(15)  I(u) = ∫ (u_x² − 1)² dx [+ ε² u_xx²],  u(0) = u(1) = 0"
    domain = Interval()
    oscillation_axis = 0
    default_activation = "relu"
    default_fourier_map = "sincos"
    default_epochs = 100_000
    default_batch = 128
    mirror_symmetric = True

    def density(self, x: Tensor, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: Tensor) -> Tensor:
        u_x = grad[..., 0]
        return self.regularised((u_x.square() - 1).square(), u_2, epsilon)


@final
@dataclass(frozen=True)
class DoubleWellU2(Problem):
    """Problem (17): W = (u_x² − 1)² + u²; infimum 0, not attained (ever finer zig-zags)."""

    name = "double_well_u2"
    label = "P2, eq. (17)"
    equation = "(17)  I(u) = ∫ (u_x² − 1)² + u² dx [+ ε² u_xx²],  u(0) = u(1) = 0"
    domain = Interval()
    oscillation_axis = 0
    default_activation = "relu"
    default_fourier_map = "sincos"
    default_epochs = 200_000
    default_batch = 128
    mirror_symmetric = True
    minimiser_without_epsilon = False
    reference_label = "zig-zag with T kinks: 1/(12T²)"
    reference_note = ("For P2 the best zig-zag with T kinks has energy 1/(12T²) (a reference, not a bound; T = 0 is u ≈ 0, "
                      "energy 1).")

    def density(self, x: Tensor, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: Tensor) -> Tensor:
        u_x = grad[..., 0]
        return self.regularised((u_x.square() - 1).square() + u.square(), u_2, epsilon)

    def closed_form_energy(self, transitions: np.ndarray, epsilon: float) -> np.ndarray | None:
        """At ε = 0, the best zig-zag (|u_x| = 1) with T kinks, 1/(12 T²); T = 0 is u ≈ 0, energy 1. A
        reference, not a bound: a slope below 1 lowers it, by 2.5% at T = 1 and under 0.5% from T = 3
        (drm.classical solves it: tests/test_classical.py), so a trained network may beat it slightly."""
        if epsilon != 0:
            return None
        t = np.asarray(transitions, dtype=float)
        return np.where(t > 0, 1.0 / (12.0 * np.maximum(t, 1.0) ** 2), 1.0)


@final
@dataclass(frozen=True)
class TwinBranching(Problem):
    """Problems (18)/(19): W = u_x² + (u_y² − 1)² [+ ε² u_yy²] on the unit square (twin branching)."""

    name = "twin_branching"
    label = "P3/P4, eqs. (18)-(19)"
    equation = "(18)/(19)  I(u) = ∫∫ u_x² + (u_y² − 1)² [+ ε² u_yy²] dx dy,  u = 0 on ∂D"
    domain = UnitSquare()
    oscillation_axis = 1
    default_activation = "smooth_abs"
    default_fourier_map = "x_sincos"
    default_epochs = 300_000
    default_batch = 600
    trivial_state = True
    mirror_symmetric = True
    minimiser_without_epsilon = False

    def density(self, x: Tensor, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: Tensor) -> Tensor:
        u_x, u_y = grad[..., 0], grad[..., 1]
        return self.regularised(u_x.square() + (u_y.square() - 1).square(), u_2, epsilon)
