"""Checks of drm.counts against analytic counts and a plain-Python reference."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from drm.counts import count_bands, count_transitions, trapezoid_weights

KS = (1, 3, 8)
X = np.linspace(0.0, 1.0, 20001)


def _cos_rows() -> np.ndarray:
    """d/dx sin(2 pi k x) / (2 pi k) = cos(2 pi k x): 2k sign changes on [0, 1] (zeros at (2j+1)/(4k))."""
    return np.stack([np.cos(2 * np.pi * k * X) for k in KS])


# ---------------------------------------------------------------- count_transitions


def test_transitions_clean_batch_is_2k() -> None:
    got = count_transitions(_cos_rows(), 0.0)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [2 * k for k in KS])


def test_transitions_noisy_band_removes_flicker() -> None:
    rng = np.random.default_rng(1234)
    g = _cos_rows() + 0.05 * rng.standard_normal((len(KS), X.size))
    np.testing.assert_array_equal(count_transitions(g, 0.2), [2 * k for k in KS])
    # Without the band every zero crossing flickers: strictly more counts in every row.
    assert np.all(count_transitions(g, 0.0) > np.array([2 * k for k in KS]))


def test_transitions_flat_zero_row() -> None:
    rng = np.random.default_rng(7)
    g = 1e-3 * rng.standard_normal((4, 5000))
    np.testing.assert_array_equal(count_transitions(g, 0.1), np.zeros(4))
    assert np.all(count_transitions(g, 0.0) > 100)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([1.0, 0.05, -0.05, 0.0, -0.1, 1.0], 0),  # + (band) + : the excursion stays inside the band
        ([1.0, 0.05, -0.05, 0.0, -1.0], 1),  # + (band) - : one transition across the band
        ([1.0, -1.0, 1.0, -1.0], 3),
        ([0.0, 0.0, -1.0, 0.05, 1.0, 0.0], 1),  # leading band samples carry no sign
        ([0.05, -0.05, 0.1, -0.1], 0),  # |g| <= threshold is inside the band, boundary included
        ([1.0, np.nan, -1.0], 1),
        ([1.0, np.nan, 1.0], 0),
        ([1.0, np.nan, -np.nan, 1.0, -1.0, np.nan, -1.0], 1),
        ([1.0, np.inf, -np.inf, 1.0], 0),
        ([np.nan, np.nan], 0),
    ],
)
def test_transitions_hand_rows(row: list[float], expected: int) -> None:
    assert count_transitions(np.array(row), 0.1) == expected


def test_transitions_matches_loop_reference_and_keeps_leading_shape() -> None:
    rng = np.random.default_rng(3)
    g = rng.standard_normal((3, 4, 50))
    g[rng.random(g.shape) < 0.1] = np.nan
    got = count_transitions(g, 0.5)
    assert got.shape == (3, 4)

    def ref(row: np.ndarray) -> int:
        last, n = 0, 0
        for v in row:
            if np.isfinite(v) and abs(v) > 0.5:
                s = 1 if v > 0 else -1
                n += last == -s
                last = s
        return n

    np.testing.assert_array_equal(got, [[ref(r) for r in img] for img in g])


# ---------------------------------------------------------------- count_bands


def _bfs_count(g: np.ndarray, threshold: float, min_pixels: int) -> int:
    """Independent reference: breadth-first search over 4-neighbours of one image."""
    c = np.where(np.isfinite(g) & (np.abs(g) > threshold), np.sign(g), 0)
    ny, nx = c.shape
    seen = np.zeros(c.shape, dtype=bool)
    count = 0
    for i in range(ny):
        for j in range(nx):
            if c[i, j] == 0 or seen[i, j]:
                continue
            seen[i, j] = True
            queue, size = deque([(i, j)]), 0
            while queue:
                a, b = queue.popleft()
                size += 1
                for u, v in ((a + 1, b), (a - 1, b), (a, b + 1), (a, b - 1)):
                    if 0 <= u < ny and 0 <= v < nx and not seen[u, v] and c[u, v] == c[a, b]:
                        seen[u, v] = True
                        queue.append((u, v))
            count += size >= min_pixels
    return count


def _stripes(m: int, n: int = 257) -> np.ndarray:
    """sign(sin(2 pi m y)) with y along axis -2: 2m alternating bands."""
    y = np.linspace(0.0, 1.0, n)[:, None]
    return np.sign(np.sin(2 * np.pi * m * y)) * np.ones((1, n))


def _checkerboard(blocks: int, n: int) -> np.ndarray:
    """blocks x blocks alternating-sign blocks: neighbours by an edge always differ in sign."""
    b = np.arange(n) * blocks // n
    return np.where((b[:, None] + b[None, :]) % 2 == 0, 1.0, -1.0)


@pytest.mark.parametrize("m", [1, 4])
def test_bands_stripes(m: int) -> None:
    got = count_bands(_stripes(m), 0.5)
    assert got.dtype == np.int64 and got.shape == ()
    assert got == 2 * m


def test_bands_checkerboard_3x3() -> None:
    assert count_bands(_checkerboard(3, 257), 0.5) == 9


def test_bands_branching_near_walls() -> None:
    # N = 16 horizontal stripes of H = 16 rows, sign (-1)^k, spanning 0 <= x <= 1.
    # Near each wall (x < 0.1 and x > 0.9) rows 6..9 of every stripe flip sign, so each stripe
    # splits into two prongs of its own sign (rows 0..5 and 10..15) around an opposite-sign lens.
    # Both prongs touch the stripe's middle part at x = 0.1 / 0.9: each stripe stays 1 component.
    # Each lens is bounded by its stripe's prongs above and below, the stripe's middle part on the
    # inner side and the wall outside, all of the other sign: 1 isolated component per stripe per
    # wall.  Expected count = N + 2N = 3N = 48.
    n_stripes, h, nx = 16, 16, 257
    x = np.linspace(0.0, 1.0, nx)
    row = np.arange(n_stripes * h)
    g = np.where((row // h) % 2 == 0, 1.0, -1.0)[:, None] * np.ones(nx)
    lens = ((row % h >= 6) & (row % h <= 9))[:, None] & ((x < 0.1) | (x > 0.9))[None, :]
    g[lens] *= -1
    assert count_bands(g, 0.5) == 3 * n_stripes == 48
    assert count_bands(g, 0.5) == _bfs_count(g, 0.5, 4)


def test_bands_diagonal_contact_does_not_connect() -> None:
    g = np.zeros((10, 10))
    g[1:5, 1:5] = 1.0
    g[5:9, 5:9] = 1.0  # touches the first block only at the corner (4,4)-(5,5)
    assert count_bands(g, 0.5) == 2
    g[4, 5] = 1.0  # one edge-sharing pixel bridges them
    assert count_bands(g, 0.5) == 1


def test_bands_batch_is_per_image() -> None:
    batch = np.stack([_stripes(2, 65), _checkerboard(3, 65), np.zeros((65, 65))])
    got = count_bands(batch, 0.5)
    np.testing.assert_array_equal(got, [4, 9, 0])
    np.testing.assert_array_equal(got, [count_bands(img, 0.5) for img in batch])
    # Uniform images would be one component if the bottom row of one image touched the next's top.
    np.testing.assert_array_equal(count_bands(np.ones((2, 3, 65, 65)), 0.5), np.ones((2, 3)))


def test_bands_noise_specks_are_ignored() -> None:
    g = _stripes(4)
    rng = np.random.default_rng(5)
    # Isolated single pixels of the opposite sign, well inside bands (rows 8..23 of each 32)
    # and at least 3 columns apart so that no two specks touch.
    rows = rng.choice([r for r in range(257) if 8 <= r % 32 <= 23], size=40, replace=False)
    cols = rng.choice(np.arange(2, 255, 3), size=40, replace=False)
    g[rows, cols] *= -1
    assert count_bands(g, 0.5) == 8
    assert count_bands(g, 0.5, min_pixels=1) == 8 + 40  # the specks are really there


def test_bands_all_inside_band_and_nan() -> None:
    rng = np.random.default_rng(11)
    assert count_bands(0.01 * rng.standard_normal((2, 33, 33)), 0.1).tolist() == [0, 0]
    g = np.ones((33, 33))
    g[16:18, :] = np.nan  # a nan wall separates like the band does
    assert count_bands(g, 0.5) == 2


def test_bands_match_bfs_reference_on_random_fields() -> None:
    rng = np.random.default_rng(2024)
    for _ in range(20):
        shape = tuple(rng.integers(1, 20, size=3))
        g = rng.standard_normal(shape)
        threshold, min_pixels = rng.uniform(0.0, 1.0), int(rng.integers(1, 6))
        got = count_bands(g, threshold, min_pixels=min_pixels)
        np.testing.assert_array_equal(got, [_bfs_count(img, threshold, min_pixels) for img in g])


# ---------------------------------------------------------------- trapezoid_weights


def test_trapezoid_x_squared_second_order() -> None:
    errors = []
    for n_int in (8, 16, 32, 64, 128):
        x = np.linspace(0.0, 1.0, n_int + 1)
        w = trapezoid_weights(n_int + 1)
        errors.append(w @ x**2 - 1.0 / 3.0)
        # Euler-Maclaurin with f'' constant: the error is exactly h^2/12 (f'(1) - f'(0)) = h^2/6.
        assert errors[-1] == pytest.approx(1.0 / (6 * n_int**2), rel=1e-9)
    ratios = np.array(errors[:-1]) / np.array(errors[1:])
    np.testing.assert_allclose(ratios, 4.0, rtol=1e-6)


@pytest.mark.parametrize("n", [2, 3, 10, 257])
def test_trapezoid_exact_on_linear(n: int) -> None:
    x = np.linspace(0.0, 1.0, n)
    w = trapezoid_weights(n)
    assert w.shape == (n,)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    assert w @ (3.0 - 2.0 * x) == pytest.approx(2.0, abs=1e-13)  # int_0^1 (3 - 2x) dx = 2


def test_trapezoid_rejects_single_node() -> None:
    with pytest.raises(ValueError):
        trapezoid_weights(1)


def test_a_count_that_changes_with_the_hysteresis_band_is_flagged_and_a_clean_one_is_not():
    """Row 0 switches between ±1 (its count is 3 at any τ up to 1); row 1 adds a wiggle of ±0.2 inside a
    phase, counted at τ = 0.1 and 0.05 but not at 0.3: sensitive."""
    from types import SimpleNamespace

    from drm.metrics import _tau_sensitive

    clean = np.repeat([1.0, -1.0, 1.0, -1.0], 50)
    wiggle = clean.copy()
    wiggle[20:30] = [0.2, -0.2] * 5
    rows = np.stack([clean, wiggle])
    view = SimpleNamespace(count=lambda offset, tau=None: count_transitions(rows, 0.1 if tau is None else tau), threshold=0.1)
    assert count_transitions(np.stack([clean, wiggle]), 0.1).tolist() == [3, 13]
    assert count_transitions(np.stack([clean, wiggle]), 0.3).tolist() == [3, 3]
    assert _tau_sensitive(view).tolist() == [False, True]


def test_the_device_count_equals_the_numpy_count():
    """Random signals with a dead band, NaNs and runs inside the band: the same counts, row by row."""
    import torch

    from drm.counts import count_transitions_on_device

    rng = np.random.default_rng(7)
    g = rng.normal(scale=0.5, size=(64, 257))
    g[rng.random(g.shape) < 0.05] = np.nan
    g[3] = 0.01  # entirely inside the band
    for tau in (0.0, 0.1, 0.3):
        assert count_transitions_on_device(torch.tensor(g), tau).tolist() == count_transitions(g, tau).tolist()


def test_the_frozen_step_is_where_the_last_run_of_equal_counts_begins():
    from drm.counts import frozen_step

    steps = np.array([0, 10, 20, 30, 40])
    counts = np.array([[1, 5, 2], [2, 5, 2], [2, 5, 3], [4, 5, 2], [4, 5, 2]])  # (n, K)
    assert frozen_step(steps, counts).tolist() == [30, 0, 30]
    assert frozen_step(steps[:0], counts[:0]).tolist() == [-1, -1, -1]
