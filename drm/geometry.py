"""The geometry of a microstructure, from the derivative along the oscillation axis sampled on lines
(u_x in 1D; u_y on lines x = const in 2D): where its interfaces are, how wide and how even its bands,
its dominant wavenumber, how the count of interfaces grows toward a wall, and how far u is from the
mirror symmetry x -> 1 − x.

Interfaces are the sign changes of the counts (drm.counts, the same hysteresis band τ), each placed
midway between the last sample of one sign and the first of the other. The branching construction
of Kohn and Müller refines bands toward the walls with width ~ d^(2/3) at distance d, so the count of
interfaces on the line at distance d grows like N(d) ~ d^(−2/3); a laminate keeps N(d) constant.
"""

from __future__ import annotations

import numpy as np

# Distances to the wall of the lines N(d) is counted on: 1/2, 1/4, ... 1/64 (each at d and 1 − d).
WALL_DISTANCES = tuple(0.5 / 2**j for j in range(6))
FFT_PADDING = 8  # zero padding of the FFT: the dominant wavenumber to 1/8 of a cycle per unit length


def interface_positions(g: np.ndarray, threshold: float, coords: np.ndarray) -> list[np.ndarray]:
    """Per row of g (..., n) sampled at `coords` (n,): the positions of its sign changes (hysteresis τ)."""
    g = np.asarray(g, dtype=float).reshape(-1, np.shape(g)[-1])
    out = []
    for row in g:
        signed = np.flatnonzero(np.isfinite(row) & (np.abs(row) > threshold))
        s = np.sign(row[signed])
        flip = np.flatnonzero(s[1:] != s[:-1])  # between signed[flip] and signed[flip + 1]
        out.append(0.5 * (coords[signed[flip]] + coords[signed[flip + 1]]))
    return out


def band_widths(positions: np.ndarray) -> np.ndarray:
    """The widths of the bands between consecutive interfaces (those cut by a wall are left out)."""
    return np.diff(positions)


def width_statistics(positions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per member: the mean band width and its coefficient of variation (NaN with fewer than 2 interfaces)."""
    mean = np.full(len(positions), np.nan)
    cv = np.full(len(positions), np.nan)
    for k, p in enumerate(positions):
        w = band_widths(p)
        if len(w):
            mean[k] = w.mean()
            cv[k] = w.std() / w.mean()
    return mean, cv


def dominant_wavenumber(g: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Per row of g (..., n) on uniform `coords`: the wavenumber (cycles per unit length) of the largest
    Fourier amplitude of g without its mean (NaN where g is constant)."""
    g = np.asarray(g, dtype=float).reshape(-1, np.shape(g)[-1])
    g = np.where(np.isfinite(g), g, 0.0)
    g = g - g.mean(axis=1, keepdims=True)
    n = g.shape[1] * FFT_PADDING
    amplitude = np.abs(np.fft.rfft(g, n=n, axis=1))
    frequency = np.fft.rfftfreq(n, d=float(coords[1] - coords[0]))
    amplitude[:, 0] = 0.0
    peak = amplitude.argmax(axis=1)
    return np.where(amplitude.max(axis=1) > 0, frequency[peak], np.nan)


def branching_exponent(distances: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per member, −(slope) of log N(d) against log d by least squares: counts (len(distances), K).
    2/3 for the branching construction, 0 for a laminate; NaN with fewer than three lines that counted."""
    d = np.log(np.asarray(distances, dtype=float))
    out = np.full(counts.shape[1], np.nan)
    for k in range(counts.shape[1]):
        seen = counts[:, k] > 0
        if seen.sum() >= 3:
            out[k] = -np.polyfit(d[seen], np.log(counts[seen, k]), 1)[0]
    return out


def symmetry_error(u: np.ndarray) -> np.ndarray:
    """‖u(x, y) − u(1 − x, y)‖ / ‖u‖ per member of u (K, ny, nx) on a grid symmetric in x (NaN where u ≡ 0)."""
    u = np.asarray(u, dtype=float)
    flat = u.reshape(len(u), -1)
    norm = np.linalg.norm(flat, axis=1)
    diff = np.linalg.norm((u - u[..., ::-1]).reshape(len(u), -1), axis=1)
    return np.where(norm > 0, diff / np.where(norm > 0, norm, 1.0), np.nan)
