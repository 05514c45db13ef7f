"""Short real trainings show the paper's qualitative result: the Fourier map brings transitions."""

from __future__ import annotations

import numpy as np
import pytest

from drm.config import TrainConfig
from drm.measurement import measure
from drm.train import PackedTrainer

SEEDS = list(range(6))


def _train(**kw) -> np.ndarray:
    config = TrainConfig(problem="double_well", depth=3, width=128, epochs=2000, **kw).resolve()
    trainer = PackedTrainer(config, SEEDS)
    trainer.run()
    assert trainer.status() == ["ok"] * len(SEEDS)
    m = measure(trainer.model, config)
    assert np.all(m.boundary_l2 < 0.05)  # the penalty holds u(0) = u(1) = 0
    return m.transitions


@pytest.mark.slow
def test_p1_plain_drm_stays_coarse_and_the_fourier_map_refines():
    plain = _train()
    mapped = _train(fourier=2)
    assert np.all(plain <= 2), plain  # fig. 3: one transition whatever the depth
    assert np.mean(mapped > plain) > 0.5, (plain, mapped)  # fig. 4: more transitions with i = 2


@pytest.mark.slow
def test_p1_energy_falls_below_the_no_transition_state():
    # u = 0 has energy 1 (u_x = 0 everywhere); any zig-zag has less; training must get well below it.
    config = TrainConfig(problem="double_well", fourier=2, epochs=2000).resolve()
    trainer = PackedTrainer(config, [0, 1])
    trainer.run()
    energies = measure(trainer.model, config).energy
    assert np.all(energies < 0.2), energies
    curves = trainer.curves()
    assert curves.loss[-1].mean() < curves.loss[0].mean()
