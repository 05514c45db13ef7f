"""The members of one packed model, made once and read by the trainer, the loss, the measurements
and the row builders.

A pack is one configuration × seeds, or a mixed pack: configurations that differ only in the map's
frequency and ε (`drm.config.check_pack`), each with its seeds, in contiguous slices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from drm.config import TrainConfig, check_pack
from drm.problems import Problem, get_problem

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Pack:
    """K members: configs[k] (resolved) trains with seeds[k]."""

    configs: tuple[TrainConfig, ...]
    seeds: tuple[int, ...]

    @classmethod
    def of(cls, config: TrainConfig | Sequence[TrainConfig], seeds: Sequence[int]) -> Pack:
        """One configuration for every seed, or one configuration per seed (a mixed pack)."""
        if isinstance(config, TrainConfig):
            configs = [config.resolve()] * len(seeds)
        else:
            if len(config) != len(seeds):
                raise ValueError(f"{len(config)} configurations for {len(seeds)} seeds: one per member")
            configs = check_pack(list(config))
        return cls(tuple(configs), tuple(int(s) for s in seeds))

    @property
    def K(self) -> int:
        return len(self.seeds)

    @property
    def config(self) -> TrainConfig:
        """What every member shares (all but the frequency and ε in a mixed pack)."""
        return self.configs[0]

    @cached_property
    def problem(self) -> Problem:
        return get_problem(self.config.problem)

    @cached_property
    def mixed(self) -> bool:
        return len({c.config_hash() for c in self.configs}) > 1

    @property
    def fourier(self) -> list[int] | int | None:
        """The map's frequency: one per member in a mixed pack with a map, else the shared one."""
        return [c.fourier for c in self.configs] if self.mixed and self.config.fourier is not None else self.config.fourier

    @cached_property
    def needs_u2(self) -> bool:
        """Whether the second-derivative stream is carried: once one member has ε > 0, for all."""
        return any(c.needs_u2 for c in self.configs)

    @property
    def second_axis(self) -> int | None:
        """The axis of u_2 when it is carried, else None."""
        return self.problem.oscillation_axis if self.needs_u2 else None

    def epsilon(self, device: torch.device | str) -> Tensor:
        """ε of every member, (K, 1), in float64 whatever the model's dtype: ε² is rounded once, to the
        density's dtype (`Problem.regularised`), as a Python number would be."""
        import torch

        return torch.tensor([[c.epsilon] for c in self.configs], dtype=torch.float64, device=device)

    def slices(self) -> list[tuple[TrainConfig, range]]:
        """Each configuration with its members, in order (one slice for an unmixed pack)."""
        out: list[tuple[TrainConfig, range]] = []
        start = 0
        for k in range(1, self.K + 1):
            if k == self.K or self.configs[k] != self.configs[start]:
                out.append((self.configs[start], range(start, k)))
                start = k
        return out
