"""drmfm ntk: the Gram matrices against an explicit Jacobian product, and the decay fit against known spectra."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.ntk import decay_exponent, decay_fit, decay_table, fit_range, gram, grid_points, jacobians, k2_claim, numerical_rank, spectra
from drm.config import TrainConfig
from drm.network import initial_parameters, layer_sizes
from drm.problems import get_problem
from tests.helpers import drmfm


def explicit_jacobians(depth: int, width: int, fourier: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """u and u_x of a tanh MLP on [sin 2^i πx, cos 2^i πx], written out by hand; Jacobians by autograd.functional."""
    sizes = layer_sizes(2, depth, width)
    init = initial_parameters(0, sizes)
    flat0 = torch.cat([t.reshape(-1) for wb in init for t in wb])
    shapes = [t.shape for wb in init for t in wb]

    def outputs(flat: torch.Tensor) -> torch.Tensor:
        tensors, start = [], 0
        for shape in shapes:
            n = math.prod(shape)
            tensors.append(flat[start : start + n].reshape(shape))
            start += n
        xs = x.clone().requires_grad_(True)
        h = torch.cat([torch.sin(2**fourier * math.pi * xs), torch.cos(2**fourier * math.pi * xs)], dim=1)
        for layer in range(len(sizes) - 1):
            w, b = tensors[2 * layer], tensors[2 * layer + 1]
            h = h @ w.T + b
            if layer < len(sizes) - 2:
                h = torch.tanh(h)
        u = h[:, 0]
        (u_x,) = torch.autograd.grad(u.sum(), xs, create_graph=True)
        return torch.cat([u, u_x[:, 0]])

    jac = torch.autograd.functional.jacobian(outputs, flat0)
    n = x.shape[0]
    return jac[:n], jac[n:]


def test_the_gram_matrices_equal_an_explicit_jacobian_product():
    x = grid_points(get_problem("double_well"), 7)
    config = TrainConfig(problem="double_well", depth=2, width=5, fourier=1, activation="tanh")
    j_u, j_x = jacobians(config, x)
    e_u, e_x = explicit_jacobians(2, 5, 1, x)
    # Parameter order differs (weights stored transposed); the Gram matrices do not depend on it.
    assert gram(j_u) == pytest.approx((e_u @ e_u.T).numpy(), rel=1e-10, abs=1e-12)
    assert gram(j_u, j_x) == pytest.approx((torch.cat([e_u, e_x]) @ torch.cat([e_u, e_x]).T).numpy(), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("problem", ["double_well", "twin_branching"])
def test_the_gram_matrices_are_symmetric_positive_semidefinite(problem):
    for s in spectra(problem, depth=2, width=16, fourier=2, points=24):
        lam = s.eigenvalues
        assert lam[0] > 0 and lam.min() >= -1e-10 * lam[0]
        assert np.all(np.diff(lam) <= 1e-12 * lam[0])  # sorted, descending
    g = gram(*jacobians(TrainConfig(problem=problem, depth=2, width=16, fourier=2), grid_points(get_problem(problem), 24)))
    assert np.array_equal(g, g.T)


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.5])
def test_the_decay_fit_recovers_a_known_spectrum(alpha):
    rng = np.random.default_rng(0)
    n = 200
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    k = np.arange(1, n + 1)
    kernel = (q * k**-alpha) @ q.T
    lam = np.linalg.eigvalsh((kernel + kernel.T) / 2)[::-1]
    assert decay_exponent(lam, 2, 50) == pytest.approx(alpha, abs=1e-6)


def _kernel(eigenvalues: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """A symmetric PSD n × n kernel with the given leading eigenvalues (the rest zero)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    lam = np.zeros(n)
    lam[: eigenvalues.size] = eigenvalues
    kernel = (q * lam) @ q.T
    return np.linalg.eigvalsh((kernel + kernel.T) / 2)[::-1]


def test_a_kernel_of_known_rank_is_fitted_below_half_its_rank():
    k = np.arange(1, 17)
    lam = _kernel(k**-2.0, 128)  # rank 16 of 128, a k^-2 spectrum up to it
    assert numerical_rank(lam) == 16
    assert fit_range(16, 128, None) == (2, 8)  # N/8 = 16 would reach the rank's edge: stopped at rank/2
    assert fit_range(16, 128, (2, 60)) == (2, 8)  # an asked range too
    alpha, r2_power, r2_exponential = decay_fit(lam, *fit_range(16, 128, None))
    assert alpha == pytest.approx(2.0, abs=1e-6) and r2_power == pytest.approx(1.0) and r2_power > r2_exponential


def test_an_exponential_spectrum_is_said_to_be_no_power_law():
    lam = _kernel(np.exp(-0.4 * np.arange(1, 60)), 100)
    alpha, r2_power, r2_exponential = decay_fit(lam, 2, 30)
    assert r2_exponential == pytest.approx(1.0) and r2_power < r2_exponential


def test_with_i_4_the_features_alias_and_the_rank_is_n_over_8():
    found = spectra("double_well", depth=2, width=16, fourier=4, points=64)
    scalar = next(s for s in found if s.kernel == "u" and s.fourier == 4)
    assert scalar.rank <= 64 // 8 and scalar.fit_to <= scalar.rank // 2  # x and x + 1/8 share their features


def test_the_exponent_is_averaged_over_seeds_with_its_spread():
    found = spectra("double_well", depth=2, width=16, fourier=1, points=48, seeds=(0, 1, 2))
    decay = decay_table(found).set_index(["kernel", "fourier"])
    row = decay.loc[("u", 1)]
    mine = [s for s in found if s.kernel == "u" and s.fourier == 1]
    alphas = [decay_fit(s.eigenvalues, s.fit_from, s.fit_to)[0] for s in mine]  # each seed refitted here
    assert row["seeds"] == 3 and row["alpha"] == pytest.approx(np.mean(alphas))
    assert row["alpha_sd"] == pytest.approx(np.std(alphas, ddof=1)) and row["alpha_sd"] > 0
    assert (row["alpha_min"], row["alpha_max"]) == pytest.approx((min(alphas), max(alphas)))


def test_the_papers_k2_claim_is_set_against_plain_drm():
    decay = pd.DataFrame([
        {"kernel": "u", "fourier": "none", "alpha": 2.8, "alpha_min": 2.6, "alpha_max": 3.0, "power_law": True},
        {"kernel": "u", "fourier": 1, "alpha": 2.1, "alpha_min": 1.9, "alpha_max": 2.3, "power_law": True},
    ])
    assert k2_claim(decay) == "the paper's k^-2 at i = 1: α = 2.10 with the map against 2.80 for plain DRM; 2 lies within the seeds' range"
    decay.loc[1, ["alpha_min", "alpha_max", "power_law"]] = [2.2, 2.4, False]
    said = k2_claim(decay)
    assert "outside the seeds' range (2.20..2.40)" in said and "no power law fits" in said


def test_ntk_command_writes_its_tables_and_figure(tmp_path):
    result = drmfm("ntk", "--points", "32", "--depth", "2", "--width", "32", "--seeds", "2", "--out", str(tmp_path / "ntk"))
    assert result.returncode == 0, result.stderr
    assert "map none: rank" in result.stdout and "map 2: rank" in result.stdout and "2 seeds" in result.stdout
    for name in ("eigenvalues.csv", "decay.csv", "seeds.csv", "local_slopes.csv", "spectrum.png"):
        assert (tmp_path / "ntk" / name).stat().st_size > 0
    assert len(pd.read_csv(tmp_path / "ntk" / "seeds.csv")) == 2 * 2 * 2  # kernels × maps × seeds
    bad = drmfm("ntk", "--problem", "nope")
    assert bad.returncode == 2 and "problem" in bad.stderr
