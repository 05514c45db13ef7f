"""Fourier feature maps of the input (section 2.3 of the paper), with their derivative streams.

`sincos`:   δ(x) = [sin(x B), cos(x B)]
`x_sincos`: δ(x) = [x, sin(x B), cos(x B)]
with B = 2^i π · I_d (frequency "2^i π"). No map (plain DRM) is δ(x) = x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def feature_count(dim: int, kind: str) -> int:
    """F: the map's outputs for d inputs ('identity' is no map)."""
    return {"identity": dim, "sincos": 2 * dim, "x_sincos": 3 * dim}[kind]


class FourierMap(nn.Module):
    """δ: R^d -> R^F. B is a buffer (moves with the module, is not trained); forward has no side effects."""

    B: Tensor

    def __init__(self, dim: int, fourier: int | None | Sequence[int], kind: str = "sincos"):
        """`fourier`: i (frequency 2^i·π), None (no map), or one i per member of a packed model."""
        super().__init__()
        per_member = not isinstance(fourier, int) and fourier is not None
        if per_member and len(set(fourier)) == 1:
            fourier, per_member = fourier[0], False
        self.dim = dim
        self.fourier = list(fourier) if per_member else fourier
        self.kind = kind if fourier is not None else "identity"
        eye = torch.eye(dim, dtype=torch.float64)
        if per_member:  # B (K, d, d): member k's frequencies
            omega = torch.tensor([2.0**i * math.pi for i in fourier], dtype=torch.float64)
            self.register_buffer("B", omega[:, None, None] * eye)
        else:  # B (d, d), shared by every member
            self.register_buffer("B", (0.0 if fourier is None else 2.0**fourier * math.pi) * eye)
        self.out_features = feature_count(dim, self.kind)

    def _frequencies(self, dtype: torch.dtype, members: slice | None) -> Tensor:
        """B (d, d), or the (k, d, d) rows of `members` when each member has its own."""
        B = self.B if self.B.dim() == 2 or members is None else self.B[members]
        return B.to(dtype)

    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        """x (..., d) -> δ(x) (..., F); `members`: which members' frequencies x (k, N, d) belongs to."""
        if self.kind == "identity":
            return x
        xb = x @ self._frequencies(x.dtype, members)  # (..., d)
        parts = [torch.sin(xb), torch.cos(xb)]
        return torch.cat(([x] if self.kind == "x_sincos" else []) + parts, dim=-1)

    def jet(self, x: Tensor, second_axis: int | None, members: slice | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """δ(x), ∂δ/∂x_j for every j, and ∂²δ/∂x_a² for a = second_axis (or None).

        x (K, N, d) -> (K, N, F), (d, K, N, F), (K, N, F) | None; `members` as in forward.
        """
        d = self.dim
        eye = torch.eye(d, dtype=x.dtype, device=x.device)  # row j = ∂x/∂x_j
        if self.kind == "identity":
            tangent = eye[:, None, None, :].expand(d, *x.shape)  # (d, K, N, d)
            second = torch.zeros_like(x) if second_axis is not None else None
            return x, tangent, second
        B = self._frequencies(x.dtype, members)
        xb = x @ B  # (K, N, d)
        sin, cos = torch.sin(xb), torch.cos(xb)
        # ∂(x B)/∂x_j = row j of B: (d, 1, 1, d), or (d, K, 1, d) per member
        b_j = B[:, None, None, :] if B.dim() == 2 else B.transpose(0, 1)[:, :, None, :]
        tangent = [cos * b_j, -sin * b_j]  # each (d, K, N, d)
        value = [sin, cos]
        second = None
        if second_axis is not None:
            b_a2 = B[second_axis].square() if B.dim() == 2 else B[:, second_axis, None, :].square()  # (d,) or (K, 1, d)
            second = [-sin * b_a2, -cos * b_a2]
        if self.kind == "x_sincos":
            value.insert(0, x)
            tangent.insert(0, eye[:, None, None, :].expand(d, *x.shape))
            if second is not None:
                second.insert(0, torch.zeros_like(x))
        return (
            torch.cat(value, dim=-1),
            torch.cat(tangent, dim=-1),
            torch.cat(second, dim=-1) if second is not None else None,
        )
