"""Derivative streams carried forward equal torch.autograd's derivatives (float64, 1e-10)."""

from __future__ import annotations

import itertools

import pytest
import torch

from drm.activations import Activation
from drm.problems import get_problem
from drm.reference import ReferenceNet
from drm.streams import StreamLayout, hidden_layer, output_layer
from drm.train import build_model
from tests.helpers import small

ACTIVATIONS = ["relu", "smooth_abs", "smooth_relu", "tanh"]
CASES = [
    (problem, activation, epsilon, fourier, fmap)
    for problem, activation, epsilon, (fourier, fmap) in itertools.product(
        ["double_well", "twin_branching"], ACTIVATIONS, [0.0, 0.05], [(None, None), (2, "sincos"), (1, "x_sincos")]
    )
    if not (activation == "relu" and epsilon > 0)
]


@pytest.mark.parametrize("problem,activation,epsilon,fourier,fmap", CASES)
def test_jet_equals_autograd(problem, activation, epsilon, fourier, fmap):
    config = small(problem, activation=activation, epsilon=epsilon, fourier=fourier, fourier_map=fmap, rho=0.3)
    p = get_problem(problem)
    seeds = [3, 11]
    model = build_model(config, seeds, "cpu", torch.float64)
    x = torch.rand(2, 9, p.dim, dtype=torch.float64)
    x_boundary = torch.rand(2, 5, p.dim, dtype=torch.float64)
    second_axis = p.oscillation_axis if epsilon > 0 else None
    jet = model.jet(x, x_boundary, second_axis)
    for k, seed in enumerate(seeds):
        net = ReferenceNet(config, seed)
        xk = x[k].clone().requires_grad_(True)
        u = net(xk)
        (grad,) = torch.autograd.grad(u.sum(), xk, create_graph=True)
        torch.testing.assert_close(jet.u[k], u, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(jet.grad[k], grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(jet.u_boundary[k], net(x_boundary[k]), rtol=1e-10, atol=1e-10)
        if second_axis is not None:
            a = second_axis
            (hessian_row,) = torch.autograd.grad(grad[:, a].sum(), xk)
            torch.testing.assert_close(jet.u_2[k], hessian_row[:, a], rtol=1e-10, atol=1e-10)
        else:
            assert jet.u_2 is None


LAYER_CASES = list(itertools.product(ACTIVATIONS, [1, 2], [None, "last"]))


@pytest.mark.parametrize("problem,fourier", [("double_well", 2), ("twin_branching", 1), ("double_well", None)])
def test_a_relu_net_carries_its_second_derivative_stream_too(problem, fourier):
    """ε > 0 with ReLU is refused for training, but u_2 is still what autograd gives when asked for."""
    config = small(problem, activation="relu", fourier=fourier)
    p = get_problem(problem)
    model = build_model(config, [5], "cpu", torch.float64)
    x = torch.rand(1, 11, p.dim, dtype=torch.float64)
    jet = model.jet(x, None, p.oscillation_axis)
    net = ReferenceNet(config, 5)
    xk = x[0].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(xk).sum(), xk, create_graph=True)
    (hessian_row,) = torch.autograd.grad(grad[:, p.oscillation_axis].sum(), xk)
    torch.testing.assert_close(jet.u_2[0], hessian_row[:, p.oscillation_axis], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("activation,dim,second_axis", LAYER_CASES)
def test_hidden_layer_backward_is_the_gradient(activation, dim, second_axis):
    second_axis = dim - 1 if second_axis == "last" else None
    layout = StreamLayout(n_interior=3, n_value=5, dim=dim, second_axis=second_axis)
    h = torch.randn(2, layout.rows, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 1, 4, dtype=torch.float64, requires_grad=True)
    act = Activation(activation, rho=0.3)
    assert torch.autograd.gradcheck(lambda h, w, b: hidden_layer(h, w, b, act, layout), (h, w, b))


def test_output_layer_backward_is_the_gradient():
    h = torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 1, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, w, b: output_layer(h, w, b, 5), (h, w, b))


def test_activation_derivatives_match_autograd():
    z = torch.linspace(-3, 3, 101, dtype=torch.float64, requires_grad=True)
    for name in ["smooth_abs", "smooth_relu", "tanh"]:
        act = Activation(name, rho=0.2)
        s = act.derivatives(z.detach().clone(), 3)
        expected = [act(z)]
        for _ in range(3):
            (d,) = torch.autograd.grad(expected[-1].sum(), z, create_graph=True)
            expected.append(d)
        for got, want in zip(s, expected):
            torch.testing.assert_close(got, want.detach(), rtol=1e-12, atol=1e-12)
