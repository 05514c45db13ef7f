"""Collocation points that depend only on (seed, step): a counter-based generator.

Each packed member draws its points from its own seed, so a member's training is the same whether
it trains alone or beside others, on any device, and a checkpoint needs no generator state: the
step number is the state. The generator hashes (seed, stream, step, index) with a 32-bit integer
mixer (Wellons' "lowbias32"), evaluated with int64 tensor arithmetic so that it runs unchanged on
CPU and CUDA in one vectorised pass for all K members.
"""

from __future__ import annotations

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF
_STREAM_INTERIOR, _STREAM_EDGE = 1, 2


def _mul32(x: Tensor, c: int) -> Tensor:
    # x * c mod 2^32 without int64 overflow: split c in 16-bit halves (each product < 2^48).
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _MASK32


def _mix32(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _uniform(seeds: Tensor, step: int | Tensor, stream: int, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """U(0, 1) numbers of shape (K, *shape), a pure function of (seed, step, stream, index).

    `step` may be a 0-d int64 device tensor, so that a captured CUDA graph samples anew each replay.
    """
    n = 1
    for s in shape:
        n *= s
    key = _mix32((seeds.to(torch.int64) & _MASK32) ^ ((stream * 0x9E3779B9) & _MASK32))
    key = _mix32(key ^ (step & _MASK32))  # (K,)
    index = torch.arange(n, device=seeds.device, dtype=torch.int64)
    bits = _mix32(_mix32(key[:, None] ^ index[None, :]) ^ key[:, None])  # (K, n)
    # 23 bits + 1/2: strictly inside (0, 1) and exact in float32 as in float64.
    u = ((bits >> 9).to(torch.float64) + 0.5) * 2.0**-23
    return u.to(dtype).reshape(len(seeds), *shape)


def interior_points(seeds: Tensor, step: int | Tensor, n: int, dim: int, dtype: torch.dtype) -> Tensor:
    """Uniform points in the open unit cube: (K, n, d)."""
    return _uniform(seeds, step, _STREAM_INTERIOR, (n, dim), dtype)


def edge_positions(seeds: Tensor, step: int | Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """U(0, 1) positions along a domain's edges, (K, *shape): the boundary points' own stream."""
    return _uniform(seeds, step, _STREAM_EDGE, shape, dtype)
