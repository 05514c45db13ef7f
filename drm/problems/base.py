"""The one interface a problem implements: I(u) = ∫_D W(x, u, ∇u, u_2; ε) dx with u = 0 on ∂D.

Every problem carries its regularisation ε² u_2², where u_2 is the second derivative along the
direction in which the minimisers oscillate (u_xx in 1D, u_yy in 2D; ε > 0 in 2D is problem (19)).
The Deep Ritz loss of a network is the Monte Carlo mean of W plus penalty · mean(u(x_b)²), eq. (4)-(5).
A problem is a small frozen value: its domain (drm.problems.domains), its density, the paper's
defaults, how reports name it, and the references it knows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drm.problems.domains import Domain

if TYPE_CHECKING:  # torch is imported by the code that evaluates densities, not to validate a config
    from torch import Tensor


class Problem(ABC):
    """What the trainer, the measurements and the analysis need to know about a problem."""

    name: ClassVar[str]  # how specs, flags and tables name it
    label: ClassVar[str]  # how reports name it ("P1, eq. (15)")
    equation: ClassVar[str]
    domain: ClassVar[Domain]
    oscillation_axis: ClassVar[int]  # index of the coordinate along which u_2 is taken and transitions are counted
    default_activation: ClassVar[str]
    default_fourier_map: ClassVar[str]
    default_epochs: ClassVar[int]
    default_batch: ClassVar[int]
    # Whether u ≡ 0 is a candidate minimiser whose count is 0 (the trivial state of P3): the analysis
    # then asks how often a configuration escapes it.
    trivial_state: ClassVar[bool] = False

    @property
    def dim(self) -> int:
        return self.domain.dim

    @property
    def default_boundary_batch(self) -> int:
        return self.domain.default_boundary_batch

    @property
    def axis_name(self) -> str:
        """The coordinate of the oscillations: x or y."""
        return "xy"[self.oscillation_axis]

    @abstractmethod
    def density(self, x: Tensor, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: Tensor) -> Tensor:
        """W at N points of K members: x (K or 1, N, d), u (K, N), grad (K, N, d), u_2 (K, N) or None
        (when no member has ε > 0), epsilon (K or 1, 1) float64 -> (K, N)."""

    @staticmethod
    def regularised(w: Tensor, u_2: Tensor | None, epsilon: Tensor) -> Tensor:
        """w + ε² u_2²; u_2 is None only when no member has ε > 0 (a `Pack` carries it whenever one has).
        ε (K, 1) is float64: ε² is rounded once, to w's dtype."""
        return w if u_2 is None else w + epsilon.square().to(w.dtype) * u_2.square()

    def closed_form_energy(self, transitions: np.ndarray, epsilon: float) -> np.ndarray | None:
        """The energy of the best profile with this many transitions at ε, where the problem knows it in
        closed form; else None (drm.classical solves for it, where the density is mirror symmetric)."""
        return None

    reference_label: ClassVar[str | None] = None  # how a figure's legend names the closed form (at ε = 0)
    reference_note: ClassVar[str | None] = None  # what the report says of it

    # The classical references (drm.classical) solve one cell of a laminate and mirror it: they need W
    # even in u and in each derivative, and independent of x. A problem declares it; else it has none.
    mirror_symmetric: ClassVar[bool] = False
    # Whether I has a minimiser at ε = 0 (P1: any zig-zag, energy 0). Where it has none (P2, P3: ever
    # finer profiles lower it), a reference table has no best and a run no energy_gap.
    minimiser_without_epsilon: ClassVar[bool] = True
