"""drmfm ntk: the Gram matrices against an explicit Jacobian product, and the decay fit against known spectra."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.ntk import decay_exponent, gram, grid_points, jacobians, spectra
from drm.config import TrainConfig
from drm.network import initial_parameters, layer_sizes
from tests.test_cli import drmfm


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
    x = grid_points(1, 7)
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
    g = gram(*jacobians(TrainConfig(problem=problem, depth=2, width=16, fourier=2), grid_points(2 if problem == "twin_branching" else 1, 24)))
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


def test_ntk_command_writes_its_tables_and_figure(tmp_path):
    result = drmfm("ntk", "--points", "32", "--depth", "2", "--width", "32", "--out", str(tmp_path / "ntk"))
    assert result.returncode == 0, result.stderr
    assert "k^-" in result.stdout and "map none" in result.stdout and "map 2" in result.stdout
    for name in ("eigenvalues.csv", "decay.csv", "spectrum.png"):
        assert (tmp_path / "ntk" / name).stat().st_size > 0
    bad = drmfm("ntk", "--problem", "nope")
    assert bad.returncode == 2 and "problem" in bad.stderr
