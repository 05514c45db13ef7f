"""The packed network: K independent MLPs u_k(x) = MLP_k(δ(x)), evaluated with derivative streams.

Parameters are stacked on a leading K axis, so one batched matrix product per layer trains all
members. The derivatives the energy needs (∇u, and u_2 = ∂²u/∂x_a² along the oscillation axis
when ε > 0) are carried forward through the layers with the value, stacked as extra rows of the
same product: for z = h W + b and h' = σ(z),

    ∂h'/∂x_j   = σ'(z) ∂z/∂x_j,                ∂z/∂x_j   = (∂h/∂x_j) W
    ∂²h'/∂x_a² = σ''(z) (∂z/∂x_a)² + σ'(z) ∂²z/∂x_a²,

so the loss is an ordinary function of the parameters and needs one ordinary backward
(no create_graph, no double backward).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor, nn

from drm.activations import Activation
from drm.features import FourierMap
from drm.streams import StreamLayout, hidden_layer, output_layer

if TYPE_CHECKING:
    from drm._fused import FusedPasses


class Jet(NamedTuple):
    """A packed network's value and derivatives at N interior and Nb boundary points of K members."""

    u: Tensor  # (K, N)
    grad: Tensor  # (K, N, d)
    u_2: Tensor | None  # (K, N): ∂²u/∂x_a² along the oscillation axis, when asked for
    u_boundary: Tensor  # (K, Nb)


def layer_sizes(in_features: int, depth: int, width: int) -> list[int]:
    """[F, H, ..., H, 1]: `depth` hidden layers of `width` (the paper's "3 × 128" is depth 3)."""
    return [in_features] + [width] * depth + [1]


def initial_parameters(seed: int, sizes: list[int]) -> list[tuple[Tensor, Tensor]]:
    """One member's initial (W (out, in), b (out,)) per layer, float64, from its own seed.

    The distribution is torch.nn.Linear's default, U(−1/√fan_in, 1/√fan_in) for weights and
    biases, drawn from a private generator so that a member's start depends on its seed alone.
    """
    gen = torch.Generator().manual_seed(int(seed))
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(n_in)
        w = torch.empty(n_out, n_in, dtype=torch.float64).uniform_(-bound, bound, generator=gen)
        b = torch.empty(n_out, dtype=torch.float64).uniform_(-bound, bound, generator=gen)
        params.append((w, b))
    return params


class PackedMLP(nn.Module):
    """K MLPs with shared shape: weights (K, in, out), biases (K, 1, out)."""

    def __init__(self, seeds: list[int], dim: int, depth: int, width: int, activation: Activation, features: FourierMap):
        super().__init__()
        self.seeds = [int(s) for s in seeds]
        self.dim = dim
        self.activation = activation
        self.features = features
        self.sizes = layer_sizes(features.out_features, depth, width)
        per_member = [initial_parameters(s, self.sizes) for s in self.seeds]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([m[i][0].T for m in per_member])) for i in range(len(self.sizes) - 1)
        )  # each (K, in, out)
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([m[i][1][None, :] for m in per_member])) for i in range(len(self.sizes) - 1)
        )  # each (K, 1, out)

    @property
    def K(self) -> int:
        return len(self.seeds)

    def forward(self, x: Tensor) -> Tensor:
        """u at points x (K, N, d) -> (K, N)."""
        h = self.features(x)  # (K, N, F)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)  # (K, N, out)
            if i < len(self.weights) - 1:
                h = self.activation(h)
        return h[..., 0]

    def member_params(self, members: slice) -> tuple[list[Tensor], list[Tensor]]:
        """Views of the weights and biases of `members` (a slice of the K axis), for `jet(params=...)`."""
        return [w[members] for w in self.weights], [b[members] for b in self.biases]

    def jet(
        self,
        x: Tensor,
        boundary: Tensor | None = None,
        second_axis: int | None = None,
        params: tuple[list[Tensor], list[Tensor]] | None = None,
        members: slice | None = None,
        fused: FusedPasses | None = None,
    ) -> Jet:
        """u, ∇u (and u_2 along `second_axis`) at x (K, N, d); u alone at boundary (K, Nb, d).

        `params` (from `member_params(members)`) evaluates the subset `members`; default: all of them.
        `fused`: the hidden layers' elementwise passes compiled for this layout (drm._fused).
        """
        weights, biases = params if params is not None else (list(self.weights), list(self.biases))
        K, N, d = x.shape
        phi, dphi, d2phi = self.features.jet(x, second_axis, members)  # (K,N,F), (d,K,N,F), (K,N,F)|None
        parts = [phi]
        if boundary is not None:
            parts.append(self.features(boundary, members))
        n_value = N + (0 if boundary is None else boundary.shape[1])
        parts.extend(dphi.unbind(0))
        if d2phi is not None:
            parts.append(d2phi)
        layout = StreamLayout(N, n_value, d, second_axis)
        h = torch.cat(parts, dim=1)  # (K, T, F), rows as in StreamLayout
        if fused is not None and fused.layout != layout:
            raise ValueError(f"fused passes compiled for {fused.layout}, called with {layout}")
        for w, b in zip(weights[:-1], biases[:-1]):
            h = hidden_layer(h, w, b, self.activation, layout, fused)  # (K, T, H)
        out = output_layer(h, weights[-1], biases[-1], n_value)  # (K, T)
        u_all = out[:, :n_value]
        grad = out[:, n_value : n_value + d * N].reshape(K, d, N).transpose(1, 2)  # (K, N, d)
        u_2 = out[:, n_value + d * N :] if second_axis is not None else None
        return Jet(u=u_all[:, :N], grad=grad, u_2=u_2, u_boundary=u_all[:, N:])
