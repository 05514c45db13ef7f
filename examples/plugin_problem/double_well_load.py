"""The double well under a body load: I(u) = ∫ (u_x² − 1)² + (u − f(x))² dx, f = 0.1 sin 2πx, on [0, 1]
with u(0) = u(1) = 0 (and the ε² u_xx² term every drmfm problem carries).

A minimiser still wants u_x = ±1, now around the load f instead of around 0: a zig-zag that follows f.
Everything drmfm needs is here: the domain, the density W(x, u, ∇u, u_2; ε), the defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

from drm.problems import Interval, Problem

if TYPE_CHECKING:  # the density needs only tensor methods: `drmfm problems` does not import torch for it
    from torch import Tensor

LOAD = 0.1


@final
@dataclass(frozen=True)
class DoubleWellLoad(Problem):
    name = "double_well_load"
    label = "double well under the load 0.1 sin 2πx"
    equation = "I(u) = ∫ (u_x² − 1)² + (u − 0.1 sin 2πx)² dx [+ ε² u_xx²],  u(0) = u(1) = 0"
    domain = Interval()
    oscillation_axis = 0
    default_activation = "relu"
    default_fourier_map = "sincos"
    default_epochs = 100_000
    default_batch = 128

    def density(self, x: Tensor, u: Tensor, grad: Tensor, u_2: Tensor | None, epsilon: Tensor) -> Tensor:
        load = LOAD * (2 * math.pi * x[..., 0]).sin()  # x (K or 1, N, 1) -> (K or 1, N)
        return self.regularised((grad[..., 0].square() - 1).square() + (u - load).square(), u_2, epsilon)
