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


def test_a_count_that_changes_at_a_known_step_gives_that_count_frozen_step():
    """With lr = 1e-12 nothing moves, so the count only changes where the weights and map of a trained net
    with another frequency (another count) are put in: at step 100, the first point logged after it is the
    frozen step."""
    import torch

    config = TrainConfig(problem="double_well", width=16, epochs=200, lr=1e-12, fourier=1, log_points=50).resolve()
    trained = PackedTrainer(TrainConfig(problem="double_well", width=16, epochs=300, lr=3e-3, fourier=3), [0])
    trained.run()
    trainer = PackedTrainer(config, [0])
    trainer.run(steps=100)
    with torch.no_grad():
        for name, value in trained.model.state_dict().items():
            trainer.model.state_dict()[name].copy_(value)
    trainer.run()
    curves = trainer.curves()
    before, after = curves.transitions[curves.steps < 100, 0], curves.transitions[curves.steps >= 100, 0]
    assert len(set(before)) == 1 and len(set(after)) == 1 and before[0] != after[0]  # one change, where the weights changed
    m = measure(trainer.model, trainer.pack, history=curves)
    assert m.count_frozen_step[0] == curves.steps[curves.steps >= 100][0] == 100
    assert curves.steps[-1] == config.epochs - 1 and curves.transitions[-1, 0] == m.transitions[0]  # the last point is the end's count


def test_the_curves_last_count_is_the_final_count():
    config = TrainConfig(problem="double_well_u2", width=32, epochs=600, lr=3e-3, fourier=2).resolve()
    trainer = PackedTrainer(config, SEEDS)
    trainer.run()
    curves = trainer.curves()
    m = measure(trainer.model, trainer.pack, history=curves)
    assert curves.transitions[-1].tolist() == m.transitions.tolist()
    assert all(0 <= s <= config.epochs - 1 for s in m.count_frozen_step)


def test_in_2d_the_curves_also_count_bands_and_their_last_point_is_the_final_count():
    config = TrainConfig(problem="twin_branching", width=32, epochs=400, lr=3e-3, fourier=2, epsilon=0.1 / 16, batch=200,
                         boundary_batch=80, log_points=20).resolve()
    trainer = PackedTrainer(config, [0, 1, 2])
    trainer.run()
    curves = trainer.curves()
    m = measure(trainer.model, trainer.pack, history=curves)
    assert curves.bands.shape == curves.transitions.shape == (len(curves.steps), 3)
    assert curves.bands[-1].tolist() == m.bands.tolist()  # the same image, the same bands
    assert curves.transitions[-1].tolist() == m.transitions.tolist()
