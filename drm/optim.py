"""Adam over packed parameters, one member frozen without touching the others.

Adam is elementwise, so Adam on parameters stacked along K is K independent Adams, each the one
its member would have alone (torch.optim.Adam's update). What packing adds is a
per-member mask: a member that diverged is frozen (its update is exactly zero and its non-finite
gradient is never read). The step count, the learning rate and the bias corrections are 0-d device
tensors, so a step reads nothing back from the device and can be captured in a CUDA graph.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cosine_lr(lr: float, step: Tensor | int, total: int) -> Tensor:
    """Cosine annealing from lr to 0 over `total` steps (CosineAnnealingLR with eta_min = 0), float64."""
    step = torch.as_tensor(step, dtype=torch.float64)
    return 0.5 * lr * (1.0 + torch.cos(step * (math.pi / total)))


class PackedAdam:
    """Adam (β = (0.9, 0.999), ε = 1e-8) over tensors whose leading axis is the member K.

    The update is torch's fused Adam kernel (one pass over parameters, gradients and moments, the
    kernel behind torch.optim.Adam(fused=True)). A frozen member's gradient and first moment are
    zeroed before the step, so its update is exactly zero whatever its second moment holds.
    """

    def __init__(self, params: list[Tensor], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.betas = betas
        self.eps = eps
        # torch's fused kernels keep the step count as a float32 tensor (exact below 2^24 steps).
        self.t = torch.zeros((), dtype=torch.float32, device=self.params[0].device)
        # CUDA's fused kernel reads a tensor lr as float32 (rounding lr by < 6e-8 relative); the CPU
        # kernel takes it at the parameters' precision.
        self._lr_dtype = torch.float32 if self.t.device.type == "cuda" else self.params[0].dtype
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def count_step(self) -> None:
        """Start a step: Adam's step count t += 1, once for every member, before its chunks update."""
        self.t += 1

    @torch.no_grad()
    def update(self, lr: Tensor, active: Tensor, grads: list[Tensor], members: slice = slice(None)) -> None:
        """Update `members` (a slice of K; default all) with their gradients `grads` (one per parameter,
        each (k, ...)) at learning rate `lr` (0-d), where `active` (k,) is True; after `count_step()`.

        A chunk of members is updated as soon as its backward is done, while its gradients are still
        in cache: members never interact, so updating them chunk by chunk is the same update."""
        params = [p[members] for p in self.params]  # views along K: the update lands in place
        exp_avg = [m[members] for m in self.exp_avg]
        # On a CPU, asking whether every member is active reads no device: while all are, the two
        # masking passes are skipped (~6% of a 1D step). On a GPU the mask is always applied: the
        # question would wait for the device, and a captured graph cannot branch.
        if self.t.device.type != "cpu" or not bool(active.all()):
            frozen = ~active.reshape(-1, 1, 1)  # (k, 1, 1)
            for g, m in zip(grads, exp_avg):
                g.masked_fill_(frozen, 0.0)  # a diverged member's gradient may be non-finite: never read it
                m.masked_fill_(frozen, 0.0)
        torch._fused_adam_(
            params,
            grads,
            exp_avg,
            [v[members] for v in self.exp_avg_sq],
            [],
            [self.t] * len(params),
            lr=lr.to(device=self.t.device, dtype=self._lr_dtype),
            beta1=self.betas[0],
            beta2=self.betas[1],
            weight_decay=0.0,
            eps=self.eps,
            amsgrad=False,
            maximize=False,
        )

    def state_dict(self) -> dict:
        return {"t": self.t.clone(), "exp_avg": [m.clone() for m in self.exp_avg], "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}

    def load_state_dict(self, state: dict) -> None:
        self.t.copy_(state["t"])
        for mine, theirs in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
            mine.copy_(theirs)
