"""Microstructure counts on sampled derivatives: transitions along lines and bands on grids.

Both counts use a hysteresis (dead) band of half-width ``threshold``: a sample g with
|g| <= threshold (or g non-finite) carries no sign, so noise flickering around zero
cannot create spurious sign changes or specks of "the other" phase.
"""

from __future__ import annotations

import numpy as np

__all__ = ["count_transitions", "count_transitions_on_device", "count_bands", "frozen_step", "trapezoid_weights"]


def _banded_sign(g: np.ndarray, threshold: float) -> np.ndarray:
    """int8 sign of g outside the band |g| <= threshold, 0 inside it or where g is not finite."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    g = np.asarray(g, dtype=float)
    outside = np.isfinite(g) & (np.abs(g) > threshold)
    return np.where(outside, np.sign(g), 0.0).astype(np.int8)


def count_transitions(g: np.ndarray, threshold: float) -> np.ndarray:
    """Count sign changes of g along its last axis, with a hysteresis band.

    g: array (..., n) of a derivative sampled along a line. Returns int64 array (...) of sign
    changes, ignoring samples with |g| <= threshold (hysteresis band). Non-finite samples (nan)
    count as inside the band. A row entirely inside the band gives 0.

    With s_i = sign(g_i) for |g_i| > threshold, the count is #{i : s_i * s_{p(i)} < 0}, where
    p(i) is the last index before i with |g_{p(i)}| > threshold.
    """
    s = _banded_sign(g, threshold)
    n = s.shape[-1]
    if n == 0:
        return np.zeros(s.shape[:-1], dtype=np.int64)
    # Forward-fill the last signed sample: the running max of "index if signed else -1"
    # is the index of the most recent sample outside the band (or -1 before any).
    idx = np.where(s != 0, np.arange(n), -1)
    last = np.maximum.accumulate(idx, axis=-1)
    filled = np.take_along_axis(s, np.maximum(last, 0), axis=-1)
    filled = np.where(last >= 0, filled, 0).astype(np.int64)
    # The filled sign only changes at signed samples, and once non-zero never returns
    # to 0, so a product < 0 marks exactly one +/- flip across the band.
    flips = filled[..., 1:] * filled[..., :-1] < 0
    return flips.sum(axis=-1, dtype=np.int64)


def count_transitions_on_device(g, threshold: float):
    """`count_transitions` of a torch tensor g (..., n), on its device, without reading it back: an int64
    tensor (...). The same forward fill of the last signed sample, with torch.cummax."""
    import torch

    s = torch.where(torch.isfinite(g) & (g.abs() > threshold), torch.sign(g), torch.zeros_like(g)).to(torch.int8)
    n = s.shape[-1]
    index = torch.arange(n, device=g.device).expand_as(s)
    last = torch.where(s != 0, index, torch.full_like(index, -1)).cummax(dim=-1).values
    filled = torch.where(last >= 0, s.gather(-1, last.clamp(min=0)), torch.zeros_like(s)).to(torch.int64)
    return (filled[..., 1:] * filled[..., :-1] < 0).sum(dim=-1)


def frozen_step(steps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per member, the first logged step from which its count never changed again: steps (n,), counts
    (n, K) -> (K,) int64 (-1 where nothing was logged)."""
    counts = np.asarray(counts)
    if counts.shape[0] == 0:
        return np.full(counts.shape[1:], -1, dtype=np.int64)
    same = counts == counts[-1]  # (n, K)
    # The first index of the final run of equal counts: after the last index that differs.
    differs = np.where(~same, np.arange(len(steps))[:, None], -1).max(axis=0)
    return np.asarray(steps)[differs + 1].astype(np.int64)


def _row_runs(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split (B, ny, nx) classes into maximal horizontal runs of equal class.

    Returns (run_id per pixel, flat index of each run's first pixel). Runs restart at every
    row start, so they never cross rows or images.
    """
    start = np.ones(c.shape, dtype=bool)
    start[..., 1:] = c[..., 1:] != c[..., :-1]
    run_id = np.cumsum(start.ravel()) - 1
    return run_id.reshape(c.shape), np.flatnonzero(start)


def _vertical_run_edges(c: np.ndarray, run_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run pairs linked by a same-class vertical 4-neighbour contact, one edge per overlap."""
    same_v = (c[:, 1:, :] == c[:, :-1, :]) & (c[:, 1:, :] != 0)
    # An overlap of two runs yields contacts in consecutive columns; keeping only the
    # leftmost contact of each overlap shrinks the edge list to ~ the number of runs.
    redundant = np.zeros_like(same_v)
    redundant[..., 1:] = same_v[..., :-1] & (c[:, :-1, 1:] == c[:, :-1, :-1])
    b, r, j = np.nonzero(same_v & ~redundant)
    return run_id[b, r, j], run_id[b, r + 1, j]


def _union_find(n: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Root (minimum node index) of each of n nodes' connected component under edges (u, v).

    Vectorised hook-and-compress (Shiloach-Vishkin style): each round hooks every root to the
    smallest root it shares an edge with, then pointer-jumps parent = parent[parent] until
    every node points at a root. Parents only ever decrease, so the forest stays acyclic.
    """
    parent = np.arange(n)
    while u.size:
        ru, rv = parent[u], parent[v]
        live = ru != rv
        u, v, ru, rv = u[live], v[live], ru[live], rv[live]
        if not u.size:
            break
        np.minimum.at(parent, np.maximum(ru, rv), np.minimum(ru, rv))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return parent


def count_bands(g: np.ndarray, threshold: float, *, min_pixels: int = 4) -> np.ndarray:
    """Count bands: 4-connected components of {g > threshold} plus those of {g < -threshold}.

    g: array (..., ny, nx) of u_y on a grid. Returns int64 array (...) = number of 4-connected
    components of the set {g > threshold} plus that of {g < -threshold}. Pixels inside the band
    (|g| <= threshold or non-finite) belong to no component. Components smaller than
    `min_pixels` (keyword argument, default 4) are ignored as noise specks. Leading axes are
    independent images: components never connect across them.
    """
    g = np.asarray(g)
    if g.ndim < 2:
        raise ValueError(f"count_bands needs an array (..., ny, nx), got shape {g.shape}")
    lead, (ny, nx) = g.shape[:-2], g.shape[-2:]
    n_img = int(np.prod(lead, dtype=np.int64))
    if n_img == 0 or ny == 0 or nx == 0:
        return np.zeros(lead, dtype=np.int64)
    c = _banded_sign(g, threshold).reshape(n_img, ny, nx)

    # Components of horizontal runs are components of pixels, and there are far fewer runs.
    run_id, run_start = _row_runs(c)
    root = _union_find(run_start.size, *_vertical_run_edges(c, run_id))

    run_len = np.diff(np.append(run_start, c.size))
    signed = c.ravel()[run_start] != 0
    size = np.bincount(root[signed], weights=run_len[signed], minlength=run_start.size)
    # Roots are the smallest run of their component, so each kept root is counted once and
    # its first pixel tells which image it lives in.
    kept = np.flatnonzero(size >= max(min_pixels, 1))
    image = run_start[kept] // (ny * nx)
    return np.bincount(image, minlength=n_img).astype(np.int64).reshape(lead)


def trapezoid_weights(n: int) -> np.ndarray:
    """Weights (n,) of the composite trapezoid rule on n equispaced nodes of [0, 1] (sum to 1).

    With h = 1/(n-1): w = h * (1/2, 1, ..., 1, 1/2), so sum_i w_i f(x_i) = int_0^1 f dx
    - h^2/12 (f'(1) - f'(0)) + O(h^4): exact for linear f, second order otherwise.
    """
    if n < 2:
        raise ValueError(f"trapezoid rule needs n >= 2 nodes, got {n}")
    w = np.full(n, 1.0 / (n - 1))
    w[[0, -1]] *= 0.5
    return w
