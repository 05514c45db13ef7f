"""CUDA checks, run on a GPU machine by benchmarks/gpu_check.sh (`pytest -m gpu`); CI has no GPU."""

from __future__ import annotations

import pytest
import torch

from drm.measurement import measure
from drm.train import PackedTrainer
from tests.helpers import small

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
    # CUDA's fused Adam takes lr in float32 (relative rounding < 6e-8 of a 1e-4 step): 100 steps
    # move a parameter by at most ~1e-9 from the CPU run's float64 arithmetic.
    for a, b in zip(_params(cpu), _params(gpu)):
        torch.testing.assert_close(b, a, rtol=1e-7, atol=1e-8)


def test_graphed_steps_equal_eager_steps():
    config = small("twin_branching", epochs=60, epsilon=0.01, dtype="float32")
    eager = PackedTrainer(config, [0, 1], device="cuda", graphed=False)
    eager.run()
    graphed = PackedTrainer(config, [0, 1], device="cuda", graphed=True)
    graphed.run()
    for a, b in zip(_params(eager), _params(graphed)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert graphed.curves().loss.shape == eager.curves().loss.shape


@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype feature")
@pytest.mark.parametrize("graphed", [False, True])
def test_a_training_step_never_waits_for_the_device(graphed):
    config = small("twin_branching", epochs=50, epsilon=0.01, dtype="float32")
    trainer = PackedTrainer(config, [0, 1, 2, 3], device="cuda", graphed=graphed)
    for _ in range(5):
        trainer.train_step()  # warm-up (and capture): allocations may synchronise; steps after must not
    try:
        torch.cuda.set_sync_debug_mode("error")
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


def test_a_step_that_cannot_be_captured_runs_eagerly_and_says_so(monkeypatch):
    config = small("double_well", fourier=2, epochs=40, dtype="float32")
    eager = PackedTrainer(config, [0, 1], device="cuda", graphed=False)
    eager.run()
    trainer = PackedTrainer(config, [0, 1], device="cuda")
    assert trainer.graphed and trainer.step_mode.startswith("graphed")

    def refuse(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    trainer.run()
    assert not trainer.graphed and "capture failed" in trainer.step_mode
    for a, b in zip(_params(eager), _params(trainer)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_a_mixed_pack_is_graphed_and_equals_its_eager_run():
    configs = [small("twin_branching", fourier=i, epsilon=e, epochs=40, dtype="float32") for i in (1, 2) for e in (0.0, 0.01)]
    eager = PackedTrainer(configs, [0, 1, 2, 3], device="cuda", graphed=False)
    eager.run()
    graphed = PackedTrainer(configs, [0, 1, 2, 3], device="cuda")
    graphed.run()
    assert graphed.graphed
    for a, b in zip(_params(eager), _params(graphed)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_fused_passes_graphed_equal_the_eager_passes():
    """The compiled elementwise passes (Triton on CUDA) inside a captured step equal the eager passes."""
    config = small("twin_branching", epochs=40, epsilon=0.01, dtype="float32")
    eager = PackedTrainer(config, [0, 1, 2, 3], device="cuda", graphed=False, fuse=False)
    eager.run()
    fused = PackedTrainer(config, [0, 1, 2, 3], device="cuda", fuse=True)
    assert fused.passes == "fused (torch.compile)", fused.passes
    fused.run()
    assert fused.graphed, fused.step_mode
    for a, b in zip(_params(eager), _params(fused)):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_mixed_packs_script_times_each_pack_graphed_and_eager(tmp_path):
    # benchmarks/mixed_packs.py on CUDA: every pack of the trial twice, and the graphed rows were captured
    from tests.helpers import benchmark_script, write_mixed_spec

    mixed_packs = benchmark_script("mixed_packs")
    path = write_mixed_spec(tmp_path, depths=[2])
    rows = mixed_packs.main(["--device", "cuda", "--spec", str(path), "--seconds", "0.05"])["results"]
    assert [(r["K"], r["graphed"]) for r in rows] == [(4, True), (4, False), (8, True), (8, False)]
    for row in rows:
        assert row["step_mode"].startswith("graphed" if row["graphed"] else "eager"), row["step_mode"]
        assert row["trial_steps_per_s"] > 0 and row["mixed_time_over_one_config"] > 0
