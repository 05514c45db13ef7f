"""The method as it is usually written: one torch.nn model, derivatives by autograd with
create_graph=True (double backward), torch.optim.Adam and CosineAnnealingLR.

It is the truth the packed trainer is tested against (same seed → same points, same initial
weights) and the baseline `drmfm bench` measures against. Keep it plain.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from drm.activations import Activation
from drm.config import TrainConfig
from drm.features import FourierMap
from drm.network import initial_parameters, layer_sizes
from drm.problems import get_problem


class _Act(nn.Module):
    def __init__(self, activation: Activation):
        super().__init__()
        self.activation = activation

    def forward(self, z: Tensor) -> Tensor:
        return self.activation(z)


class ReferenceNet(nn.Module):
    """u(x) = MLP(δ(x)) with nn.Linear layers, initialised like member `seed` of a packed model."""

    def __init__(self, config: TrainConfig, seed: int):
        super().__init__()
        config = config.resolve()
        dim = get_problem(config.problem).dim
        self.features = FourierMap(dim, config.fourier, config.fourier_map)
        sizes = layer_sizes(self.features.out_features, config.depth, config.width)
        layers: list[nn.Module] = []
        for i, (w, b) in enumerate(initial_parameters(seed, sizes)):
            linear = nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
            with torch.no_grad():
                linear.weight.copy_(w)
                linear.bias.copy_(b)
            layers.append(linear)
            if i < len(sizes) - 2:
                layers.append(_Act(Activation(config.activation, config.rho)))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, d) -> u (N,)."""
        return self.mlp(self.features(x))[:, 0]


def reference_loss(net: ReferenceNet, config: TrainConfig, x: Tensor, x_boundary: Tensor) -> tuple[Tensor, Tensor]:
    """Deep Ritz loss (4)-(5) of one model with autograd derivatives (create_graph=True)."""
    problem = get_problem(config.problem)
    x = x.requires_grad_(True)
    u = net(x)
    (grad,) = torch.autograd.grad(u.sum(), x, create_graph=True)  # (N, d)
    u_2 = None
    if config.needs_u2:
        a = problem.oscillation_axis
        (hess_row,) = torch.autograd.grad(grad[:, a].sum(), x, create_graph=True)
        u_2 = hess_row[:, a]
    epsilon = torch.full((1, 1), config.epsilon, dtype=torch.float64, device=u.device)
    # One member, as the density takes them: x (1, N, d), u (1, N), grad (1, N, d), u_2 (1, N).
    energy_mc = problem.density(x[None], u[None], grad[None], None if u_2 is None else u_2[None], epsilon)[0].mean()
    return energy_mc + config.penalty * net(x_boundary).square().mean(), energy_mc


class ReferenceTrainer:
    """Trains one seed the plain way; `train_step()` is the step `drmfm bench` times."""

    def __init__(self, config: TrainConfig, seed: int, device: str | torch.device = "cpu"):
        self.config = config.resolve()
        self.problem = get_problem(self.config.problem)
        self.dtype = getattr(torch, self.config.dtype)
        self.device = torch.device(device)
        self.net = ReferenceNet(self.config, seed).to(device=self.device, dtype=self.dtype)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.config.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=self.config.epochs)
        self.seeds = torch.tensor([seed], device=self.device)
        self.step = 0
        self.losses: list[Tensor] = []

    def train_step(self) -> None:
        c, domain = self.config, self.problem.domain
        t = self.step if c.resample else 0
        x = domain.interior_points(self.seeds, t, c.batch, self.dtype)[0]
        x_boundary = domain.boundary_points(self.seeds, t, c.boundary_batch, self.dtype)[0]
        self.optimizer.zero_grad(set_to_none=True)
        loss, _ = reference_loss(self.net, c, x, x_boundary)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.losses.append(loss.detach())
        self.step += 1
