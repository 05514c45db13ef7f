"""A hidden layer applied to all derivative streams at once, as one autograd node with a hand-written backward.

Rows of the layer's input h (K, T, F) and output (K, T, H) are laid out as
    [value (Nv = N + Nb) | ∂/∂x_1 (N) | ... | ∂/∂x_d (N) | ∂²/∂x_a² (N), when asked for]
and with z = h W (+ b on the value rows) and z0 the value rows of the N interior points,

    out_value = σ(z_value)
    out_j     = σ'(z0) z_j                                  (first-derivative streams)
    out_2     = σ''(z0) z_a² + σ'(z0) z_2                   (second-derivative stream)

Left to autograd, the slices, products and concatenations of these formulas allocate and
zero-fill a full (K, T, H) tensor per term, and that memory traffic, not the matrix products,
would bound a step. Here the layer saves (h, W, b, z) and the activation's derivatives it computed
anyway, writes its output and z's gradient into one buffer each, and its backward is the
transpose, with g = ∂L/∂out (with drm._fused's compiled passes, z is saved without its bias and
nothing else: both kernels add b and recompute σ's derivatives; the eager ReLU writes its output
over z, whose signs, all its backward reads, σ keeps):

    ∂L/∂z_value = g_value σ'(z_value) + [Σ_j g_j z_j σ''(z0) + g_2 (σ'''(z0) z_a² + σ''(z0) z_2)]_interior
    ∂L/∂z_j     = g_j σ'(z0) + [j = a] 2 g_2 σ''(z0) z_a
    ∂L/∂z_2     = g_2 σ'(z0)
    ∂L/∂W = hᵀ ∂L/∂z,   ∂L/∂h = ∂L/∂z Wᵀ,   ∂L/∂b = Σ_value rows ∂L/∂z
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from drm.activations import Activation

if TYPE_CHECKING:
    from drm._fused import FusedPasses


@dataclass(frozen=True)
class StreamLayout:
    """Row layout of a (K, T, ·) stream tensor."""

    n_interior: int  # N: points with derivative streams
    n_value: int  # Nv = N + Nb: rows of the value stream (interior, then boundary)
    dim: int  # d: first-derivative streams
    second_axis: int | None  # a: the second-derivative stream's axis, or None

    @property
    def rows(self) -> int:
        return self.n_value + (self.dim + (self.second_axis is not None)) * self.n_interior

    def split(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Views: value (K, Nv, H), first derivatives (K, d, N, H), second (K, N, H) | None."""
        K, _, H = z.shape
        N, Nv, d = self.n_interior, self.n_value, self.dim
        first = z[:, Nv : Nv + d * N].view(K, d, N, H)
        second = z[:, Nv + d * N :] if self.second_axis is not None else None
        return z[:, :Nv], first, second


def _mask_positive(x: Tensor, z: Tensor, out: Tensor) -> Tensor:
    """out = x · [z > 0] in one pass (ReLU's own backward kernel; z broadcasts against x)."""
    return torch.ops.aten.threshold_backward.grad_input(x, z, 0.0, grad_input=out)


Saved = tuple["Tensor | None", ...]


def _forward_streams(z: Tensor, activation: Activation, layout: StreamLayout) -> tuple[Tensor, Saved]:
    """σ on every stream of z (K, T, H), whose value rows already carry the bias.

    Returns the output and what the backward reads besides z: for a smooth σ, σ' on the value rows
    and σ'' (and the third derivative with a second-derivative stream) on the interior rows. ReLU's
    output is z itself, overwritten: the backward reads only the value rows' signs, which σ keeps.
    Writing in place saves filling a new (K, T, H) tensor: a 1D K = 64 step takes about 6% less time
    on an AMD EPYC (BENCHMARKS.md).
    """
    N, a = layout.n_interior, layout.second_axis
    z_value, z_first, z_second = layout.split(z)
    if activation.name == "relu":  # σ'' = 0 almost everywhere: every derivative stream is masked, in place
        _mask_positive(z_first, z_value[:, :N][:, None], out=z_first)
        if z_second is not None:
            _mask_positive(z_second, z_value[:, :N], out=z_second)
        z_value.clamp_min_(0.0)  # σ(z) > 0 where z > 0: the sign the masks and the backward read survives
        return z, ()
    out = torch.empty_like(z)
    o_value, o_first, o_second = layout.split(out)
    sigma = activation.derivatives(z_value[:, :N], 2 if a is None else 3)  # each (K, N, H)
    o_value[:, :N].copy_(sigma[0])
    s1_boundary = None
    if layout.n_value > N:
        on_boundary = activation.derivatives(z_value[:, N:], 1)  # (K, Nb, H) each
        o_value[:, N:].copy_(on_boundary[0])
        s1_boundary = on_boundary[1]
    torch.mul(z_first, sigma[1][:, None], out=o_first)
    if o_second is not None:
        torch.mul(z_second, sigma[1], out=o_second)
        o_second.addcmul_(sigma[2], z_first[:, a].square())
    return out, (sigma[1], sigma[2], sigma[3] if a is not None else None, s1_boundary)


def _backward_streams(g: Tensor, z: Tensor, saved: Saved, activation: Activation, layout: StreamLayout) -> Tensor:
    """∂L/∂z (K, T, H) from g = ∂L/∂out, the pre-activations z and the forward's saved derivatives."""
    N, a = layout.n_interior, layout.second_axis
    grad = torch.empty_like(z)
    z_value, z_first, z_second = layout.split(z)
    g_value, g_first, g_second = layout.split(g)
    d_value, d_first, d_second = layout.split(grad)
    if activation.name == "relu":  # σ' is piecewise constant: only the masks act
        _mask_positive(g_value, z_value, out=d_value)
        _mask_positive(g_first, z_value[:, :N][:, None], out=d_first)
        if d_second is not None:
            _mask_positive(g_second, z_value[:, :N], out=d_second)
        return grad
    s1, s2, s3, s1_boundary = saved
    torch.mul(g_value[:, :N], s1, out=d_value[:, :N])
    if s1_boundary is not None:
        torch.mul(g_value[:, N:], s1_boundary, out=d_value[:, N:])
    torch.mul(g_first, s1[:, None], out=d_first)
    # Σ_j g_j z_j (+ g_2 z_2), then one product with σ''(z0)
    acc = g_first[:, 0] * z_first[:, 0]
    for j in range(1, layout.dim):
        acc.addcmul_(g_first[:, j], z_first[:, j])
    if d_second is not None:
        z_a = z_first[:, a]
        torch.mul(g_second, s1, out=d_second)
        d_first[:, a].addcmul_(g_second, s2 * z_a, value=2.0)
        acc.addcmul_(g_second, z_second)
        d_value[:, :N].addcmul_(g_second, torch.mul(s3, z_a).mul_(z_a))  # third derivative · z_a²
    d_value[:, :N].addcmul_(acc, s2)
    return grad


class _HiddenLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor, activation: Activation, layout: StreamLayout, fused: FusedPasses | None) -> Tensor:  # type: ignore[override]
        z = torch.bmm(h, w)  # (K, T, H), without the bias
        if fused is not None:  # one compiled pass, the bias added inside; its backward recomputes σ's derivatives from z
            out, saved = fused.forward(z, b.detach()), ()  # detached: the compiled code is handed plain tensors
        else:
            z[:, : layout.n_value].add_(b)  # only the value rows carry the bias
            out, saved = _forward_streams(z, activation, layout)
        ctx.activation, ctx.layout, ctx.fused = activation, layout, fused
        ctx.save_for_backward(h, w, b, z, *saved)
        return out

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor, Tensor, None, None, None]:  # type: ignore[override]
        h, w, b, z, *saved = ctx.saved_tensors
        if ctx.fused is not None:
            grad_z, grad_b = ctx.fused.backward(g.contiguous(), z, b.detach())  # (K, T, H), (K, 1, H)
        else:
            grad_z = _backward_streams(g.contiguous(), z, tuple(saved), ctx.activation, ctx.layout)  # (K, T, H)
            grad_b = grad_z[:, : ctx.layout.n_value].sum(dim=1, keepdim=True)  # (K, 1, H)
        grad_w = torch.bmm(h.transpose(1, 2), grad_z)  # (K, F, H)
        grad_h = torch.bmm(grad_z, w.transpose(1, 2)) if ctx.needs_input_grad[0] else None  # (K, T, F)
        return grad_h, grad_w, grad_b, None, None, None


def hidden_layer(h: Tensor, w: Tensor, b: Tensor, activation: Activation, layout: StreamLayout, fused: FusedPasses | None = None) -> Tensor:
    """σ(h W + b) on every stream: h (K, T, F), w (K, F, H), b (K, 1, H) -> (K, T, H).

    `fused`: the elementwise passes compiled for this layout (drm._fused); default the eager ones."""
    return _HiddenLayer.apply(h, w, b, activation, layout, fused)


class _OutputLayer(torch.autograd.Function):
    # A width-1 layer is a matrix-vector product per member: as a bmm with one output column it
    # runs several times slower than the same work written as a (1, H) x (H, T) product, forward and
    # backward (`benchmarks/products.py`, 2 threads: 1.32 against 0.16 ms for ∂L/∂W at K = 64, T = 258).
    @staticmethod
    def forward(ctx, h: Tensor, w: Tensor, b: Tensor, n_value: int) -> Tensor:  # type: ignore[override]
        out = torch.bmm(w.transpose(1, 2), h.transpose(1, 2))[:, 0]  # (K, 1, H) x (K, H, T) -> (K, T)
        out[:, :n_value].add_(b[:, :, 0])
        ctx.n_value = n_value
        ctx.save_for_backward(h, w)
        return out

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor | None, Tensor, Tensor, None]:  # type: ignore[override]
        h, w = ctx.saved_tensors
        g = g.contiguous()[:, :, None]  # (K, T, 1)
        grad_w = torch.bmm(g.transpose(1, 2), h).transpose(1, 2)  # (K, 1, T) x (K, T, H) -> (K, H, 1)
        grad_b = g[:, : ctx.n_value].sum(dim=1, keepdim=True)  # (K, 1, 1)
        grad_h = g * w.transpose(1, 2) if ctx.needs_input_grad[0] else None  # (K, T, H)
        return grad_h, grad_w, grad_b, None


def output_layer(h: Tensor, w: Tensor, b: Tensor, n_value: int) -> Tensor:
    """h W + b on every stream, bias on the value rows: h (K, T, H), w (K, H, 1), b (K, 1, 1) -> (K, T)."""
    return _OutputLayer.apply(h, w, b, n_value)
