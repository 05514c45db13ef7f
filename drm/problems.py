"""The variational problems of the paper: energy densities W(x, u, ∇u, u_2) on D = [0, 1]^d, u = 0 on ∂D.

Every problem carries its regularisation ε² u_2², where u_2 is the second derivative along the
direction in which the minimisers oscillate (u_xx in 1D, u_yy in 2D; ε > 0 in 2D is problem (19)).
The Deep Ritz loss of a network is the Monte Carlo mean of W plus penalty · mean(u(x_b)²), eq. (4)-(5).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, final

if TYPE_CHECKING:  # torch is imported by the code that evaluates densities, not to validate a config
    from torch import Tensor


class Problem(ABC):
    """What the trainer and the metrics need to know about a problem."""

    name: ClassVar[str]
    paper_id: ClassVar[str]
    equation: ClassVar[str]
    dim: ClassVar[int]
    oscillation_axis: ClassVar[int]  # index of the coordinate along which u_2 is taken
    default_activation: ClassVar[str]
    default_fourier_map: ClassVar[str]
    default_epochs: ClassVar[int]
    default_batch: ClassVar[int]
    default_boundary_batch: ClassVar[int]

    @abstractmethod
    def density(self, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: float | Tensor) -> Tensor:
        """W at N points of K members: u (K, N), grad (K, N, d), u_2 (K, N) or None -> (K, N)."""

    @staticmethod
    def _regularised(w: Tensor, u_2: Tensor | None, epsilon: float | Tensor) -> Tensor:
        """w + ε² u_2²; ε is a number, or a (K, 1) tensor with one ε per member of a mixed pack."""
        scalar = isinstance(epsilon, (int, float))  # torch is not imported here: a tensor is what is not a number
        if scalar and epsilon == 0:
            return w
        assert u_2 is not None, "epsilon > 0 needs the second-derivative stream"
        return w + (epsilon**2 if scalar else epsilon.square()) * u_2.square()


class _OneDimensional(Problem):
    dim = 1
    oscillation_axis = 0
    default_activation = "relu"
    default_fourier_map = "sincos"
    default_batch = 128
    default_boundary_batch = 2


@final
@dataclass(frozen=True)
class DoubleWell(_OneDimensional):
    """Problem (15): W = (u_x² − 1)²; minimum 0 is attained by every zig-zag with u_x = ±1."""

    name = "double_well"
    paper_id = "P1"
    equation = "(15)  I(u) = ∫ (u_x² − 1)² dx [+ ε² u_xx²],  u(0) = u(1) = 0"
    default_epochs = 100_000

    def density(self, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: float | Tensor) -> Tensor:
        u_x = grad[..., 0]
        return self._regularised((u_x.square() - 1).square(), u_2, epsilon)


@final
@dataclass(frozen=True)
class DoubleWellU2(_OneDimensional):
    """Problem (17): W = (u_x² − 1)² + u²; infimum 0, not attained (ever finer zig-zags)."""

    name = "double_well_u2"
    paper_id = "P2"
    equation = "(17)  I(u) = ∫ (u_x² − 1)² + u² dx [+ ε² u_xx²],  u(0) = u(1) = 0"
    default_epochs = 200_000

    def density(self, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: float | Tensor) -> Tensor:
        u_x = grad[..., 0]
        return self._regularised((u_x.square() - 1).square() + u.square(), u_2, epsilon)


@final
@dataclass(frozen=True)
class TwinBranching(Problem):
    """Problems (18)/(19): W = u_x² + (u_y² − 1)² [+ ε² u_yy²] on the unit square (twin branching)."""

    name = "twin_branching"
    paper_id = "P3 (ε = 0) / P4 (ε > 0)"
    equation = "(18)/(19)  I(u) = ∫∫ u_x² + (u_y² − 1)² [+ ε² u_yy²] dx dy,  u = 0 on ∂D"
    dim = 2
    oscillation_axis = 1
    default_activation = "smooth_abs"
    default_fourier_map = "x_sincos"
    default_epochs = 300_000
    default_batch = 600
    default_boundary_batch = 400

    def density(self, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: float | Tensor) -> Tensor:
        u_x, u_y = grad[..., 0], grad[..., 1]
        return self._regularised(u_x.square() + (u_y.square() - 1).square(), u_2, epsilon)


PROBLEMS: dict[str, Problem] = {p.name: p for p in (DoubleWell(), DoubleWellU2(), TwinBranching())}


def get_problem(name: str) -> Problem:
    """The problem called `name` (KeyError names the allowed ones)."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem {name!r}; allowed: {', '.join(PROBLEMS)}") from None
