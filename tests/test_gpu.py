"""CUDA checks, run on a GPU machine by benchmarks/gpu_check.sh (`pytest -m gpu`); CI has no GPU."""

from __future__ import annotations

import pytest
import torch

from drm.measure import measure
from drm.train import PackedTrainer
from tests.conftest import small

pytestmark = pytest.mark.gpu


def _params(trainer: PackedTrainer) -> list[torch.Tensor]:
    return [p.detach().cpu() for p in trainer.model.parameters()]


@pytest.mark.parametrize("problem,kw", [("double_well", {"fourier": 2}), ("twin_branching", {"epsilon": 0.01})])
def test_cuda_training_equals_cpu_training(problem, kw):
    config = small(problem, epochs=100, **kw)
    cpu = PackedTrainer(config, [0, 1, 2])
    cpu.run()
    gpu = PackedTrainer(config, [0, 1, 2], device="cuda")
    gpu.run()
    for a, b in zip(_params(cpu), _params(gpu)):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)


def test_graphed_steps_equal_eager_steps():
    config = small("twin_branching", epochs=60, epsilon=0.01, dtype="float32")
    eager = PackedTrainer(config, [0, 1], device="cuda")
    eager.run()
    graphed = PackedTrainer(config, [0, 1], device="cuda", graphed=True)
    graphed.run()
    for a, b in zip(_params(eager), _params(graphed)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert graphed.curves().loss.shape == eager.curves().loss.shape


def test_a_training_step_never_waits_for_the_device():
    config = small("twin_branching", epochs=50, epsilon=0.01, dtype="float32")
    trainer = PackedTrainer(config, [0, 1, 2, 3], device="cuda")
    trainer.train_step()  # first-step allocations may synchronise; steps after it must not
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(10):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_measure_on_cuda_equals_measure_on_cpu():
    config = small("twin_branching", epochs=30, fourier=1)
    trainer = PackedTrainer(config, [0, 1], device="cuda")
    trainer.run()
    on_gpu = measure(trainer.model, config)
    on_cpu = measure(trainer.model.cpu(), config)
    assert on_gpu.energy == pytest.approx(on_cpu.energy, rel=1e-9)
    assert on_gpu.transitions.tolist() == on_cpu.transitions.tolist()
    assert on_gpu.bands.tolist() == on_cpu.bands.tolist()
