"""Small statistics with stated coverage: bootstrap and Wilson intervals, Holm's adjustment, rank trends."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% point


def bootstrap_ci(
    values: np.ndarray,
    statistic: Callable[..., np.ndarray] = np.mean,
    *,
    level: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` (called with axis=1 on a (B, n) resample matrix).

    Deterministic for a given seed, so a report is reproducible. NaN for fewer than two values.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = statistic(values[rng.integers(0, values.size, size=(resamples, values.size))], axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_cis(
    samples: list[np.ndarray],
    statistic: Callable[..., np.ndarray] = np.mean,
    *,
    level: float = 0.95,
    resamples: int = 4000,
    seed: int = 0,
) -> np.ndarray:
    """bootstrap_ci of every sample, (len(samples), 2): the same numbers (to round-off), computed together.

    bootstrap_ci draws its (B, n) index matrix from the seed alone, so every sample of n finite
    values is resampled by the same matrix: the samples of one size are stacked (G, n) and resampled
    at once, (G, B, n), in chunks of a few million values. 10,000 configurations take a second, not
    minutes."""
    out = np.full((len(samples), 2), np.nan)
    clean = [np.asarray(v, dtype=float)[np.isfinite(np.asarray(v, dtype=float))] for v in samples]
    by_size: dict[int, list[int]] = {}
    for j, values in enumerate(clean):
        if values.size >= 2:
            by_size.setdefault(values.size, []).append(j)
    tail = (1 - level) / 2
    for n, rows in by_size.items():
        index = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # bootstrap_ci's draws
        step = max(1, 4_000_000 // (resamples * n))
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            draws = _statistic(statistic, np.stack([clean[j] for j in chunk])[:, index])  # (G, n) -> (G, B, n) -> (G, B)
            out[chunk] = np.quantile(draws, [tail, 1 - tail], axis=1).T
    return out


def _statistic(statistic: Callable[..., np.ndarray], drawn: np.ndarray) -> np.ndarray:
    """`statistic` over the last axis of (G, B, n) resamples. The median (and mean) of two values and
    the median of three in closed form (numpy's own arithmetic: the mean of the middle two, or the middle one), which is
    what a sweep of few seeds per configuration asks 10,000 times; anything else as numpy computes it."""
    n = drawn.shape[-1]
    if statistic in (np.median, np.mean) and n == 2:
        return (drawn[..., 0] + drawn[..., 1]) / 2
    if statistic is np.median and n == 3:
        a, b, c = drawn[..., 0], drawn[..., 1], drawn[..., 2]
        return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    return statistic(drawn, axis=-1)


def wilson_ci(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (good coverage for small n and proportions near 0 or 1)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN, outside the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


def spearman_trend(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(rho, ci_low, ci_high, p_value) of Spearman's rank correlation of y on x.

    The interval is Fisher's z with the Fieller-Hartley-Pearson variance 1.06/(n-3); the p-value
    is scipy's. NaNs when y or x does not vary (no trend can be measured) or n < 4.
    """
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = x.size
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan, math.nan, math.nan, math.nan
    result = stats.spearmanr(x, y)
    rho = float(result.statistic)
    if abs(rho) >= 1:
        return rho, rho, rho, float(result.pvalue)
    half = Z95 * math.sqrt(1.06 / (n - 3))
    z = math.atanh(rho)
    return rho, math.tanh(z - half), math.tanh(z + half), float(result.pvalue)
