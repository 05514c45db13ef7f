"""Activations with their derivatives, for derivative streams carried forward.

σ(z) for the value stream; σ'(z) scales the first-derivative streams; σ''(z) enters the second
derivative stream: (σ∘z)'' = σ''(z) z'² + σ'(z) z''; σ''' enters its backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Activation:
    """An activation by name: relu, smooth_abs = sqrt(z²+ρ²), smooth_relu = (z + sqrt(z²+ρ²))/2, tanh."""

    name: str
    rho: float = 0.1

    @property
    def smooth(self) -> bool:
        return self.name != "relu"

    def __call__(self, z: Tensor) -> Tensor:
        if self.name == "relu":
            return torch.relu(z)
        if self.name == "smooth_abs":
            return torch.sqrt(z * z + self.rho**2)
        if self.name == "smooth_relu":
            return 0.5 * (z + torch.sqrt(z * z + self.rho**2))
        if self.name == "tanh":
            return torch.tanh(z)
        raise ValueError(f"unknown activation {self.name!r}")

    def derivatives(self, z: Tensor, order: int, value: bool = True) -> list[Tensor | None]:
        """[σ(z), σ'(z), ..., σ^(order)(z)] for order <= 3. None stands for a derivative that is zero,
        and for σ itself when `value` is False (a backward pass needs only the derivatives).

        For use outside autograd (the stream layers' own forward and backward): it works in place.
        """
        if self.name == "relu":
            out: list[Tensor | None] = [torch.relu(z) if value else None, (z > 0).to(z.dtype)]
            return (out + [None, None])[: order + 1]  # σ' is piecewise constant
        if self.name in ("smooth_abs", "smooth_relu"):
            return self._smooth_derivatives(z, order, value)
        if self.name == "tanh":
            t = torch.tanh(z)
            s1 = 1 - t * t
            s2 = -2 * t * s1 if order >= 2 else None
            s3 = s1 * (6 * t * t - 2) if order >= 3 else None
            return [t, s1, s2, s3][: order + 1]
        raise ValueError(f"unknown activation {self.name!r}")

    def _smooth_derivatives(self, z: Tensor, order: int, value: bool) -> list[Tensor | None]:
        # r = sqrt(z² + ρ²): σ' = z/r, σ'' = ρ²/r³, σ''' = -3ρ² z/r⁵; smooth_relu halves them and
        # adds z/2 and 1/2. In-place chains: these passes over (K, N, H) bound the layer's cost.
        rho2 = self.rho**2
        q = (z * z).add_(rho2)
        inv_r = torch.rsqrt(q)
        out: list[Tensor | None] = [q.mul_(inv_r) if value else None]  # r = q / sqrt(q)
        if order >= 1:
            out.append(z * inv_r)
        if order >= 2:
            out.append(inv_r.square().mul_(inv_r).mul_(rho2))
        if order >= 3:
            out.append(torch.mul(out[2], out[1]).mul_(inv_r).mul_(-3.0))
        if self.name == "smooth_relu":
            if value:
                out[0] = out[0].add_(z).mul_(0.5)
            if order >= 1:
                out[1] = out[1].add_(1.0).mul_(0.5)
            for s in out[2:]:
                s.mul_(0.5)
        return out
