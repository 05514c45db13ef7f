"""The stream layer's elementwise passes fused by torch.compile (drm._fused, issue 17): the compiled
forward and backward equal the eager ones on every activation and layout (float64, 1e-10); a packed
run trained with them equals the eager run; short runs keep the eager passes, and the trainer says
which it used. The compiler's warm-up is part of this file's time (a few seconds per layout)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from drm._fused import backward_passes, forward_passes, fused_passes
from drm.activations import Activation
from drm.autotune import Tuning
from drm.config import TrainConfig
from drm.streams import StreamLayout, _backward_streams, _forward_streams
from drm.train import MIN_EPOCHS_TO_FUSE, PackedTrainer

LAYOUTS = {
    "1d": StreamLayout(12, 14, 1, None),
    "1d with u_xx": StreamLayout(12, 14, 1, 0),
    "2d with u_yy": StreamLayout(10, 16, 2, 1),
    "2d, no boundary rows": StreamLayout(10, 10, 2, None),
}
ACTIVATIONS = [Activation("relu"), Activation("tanh"), Activation("smooth_abs", 0.1), Activation("smooth_relu", 0.2)]


# A ReLU net has no second-derivative stream (drm.config refuses ε > 0 with relu).
PAIRS = [(a, name) for a in ACTIVATIONS for name, layout in LAYOUTS.items() if a.smooth or layout.second_axis is None]


def _eager(z: torch.Tensor, b: torch.Tensor, g: torch.Tensor, activation: Activation, layout: StreamLayout):
    """The eager layer's passes (drm/streams.py) on z without its bias: the output, ∂L/∂z and ∂L/∂b."""
    biased = z.clone()
    biased[:, : layout.n_value] += b
    out, saved = _forward_streams(biased, activation, layout)
    grad_z = _backward_streams(g, biased, saved, activation, layout)
    return out, grad_z, grad_z[:, : layout.n_value].sum(dim=1, keepdim=True)


@pytest.mark.parametrize("activation,layout_name", PAIRS, ids=[f"{a.name}-{name}" for a, name in PAIRS])
def test_the_fused_formulas_equal_the_eager_passes(activation, layout_name):
    layout = LAYOUTS[layout_name]
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(3, layout.rows, 5, dtype=torch.float64, generator=generator)
    b = torch.randn(3, 1, 5, dtype=torch.float64, generator=generator)
    g = torch.randn(z.shape, dtype=torch.float64, generator=generator)
    out, grad_z, grad_b = _eager(z, b, g, activation, layout)
    torch.testing.assert_close(forward_passes(z, b, activation, layout), out, rtol=0, atol=1e-12)
    fused_z, fused_b = backward_passes(g, z, b, activation, layout)
    torch.testing.assert_close(fused_z, grad_z, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused_b, grad_b, rtol=0, atol=1e-12)


# Compiled, each activation once and each kind of layout once (a compile costs seconds).
COMPILED = [(Activation("relu"), "1d"), (Activation("tanh"), "2d, no boundary rows"), (Activation("smooth_relu", 0.2), "1d with u_xx"),
            (Activation("smooth_abs", 0.1), "2d with u_yy")]


@pytest.mark.parametrize("activation,layout_name", COMPILED, ids=[f"{a.name}-{name}" for a, name in COMPILED])
def test_the_compiled_passes_equal_the_eager_ones_for_any_chunk_size(activation, layout_name):
    layout = LAYOUTS[layout_name]
    passes, how = fused_passes(activation, layout, 5, torch.device("cpu"), torch.float64)
    assert passes is not None and how == "fused (torch.compile)", how
    for K in (1, 2, 7):  # the member axis is dynamic: every chunk size is served
        z = torch.randn(K, layout.rows, 5, dtype=torch.float64)
        b = torch.randn(K, 1, 5, dtype=torch.float64)
        g = torch.randn_like(z)
        out, grad_z, grad_b = _eager(z, b, g, activation, layout)
        torch.testing.assert_close(passes.forward(z, b), out, rtol=0, atol=1e-12)
        fused_z, fused_b = passes.backward(g, z, b)
        torch.testing.assert_close(fused_z, grad_z, rtol=0, atol=1e-12)
        torch.testing.assert_close(fused_b, grad_b, rtol=0, atol=1e-12)


def test_each_layout_compiles_into_a_cache_of_its_own(monkeypatch):
    # dynamo keeps compiled graphs, and counts its recompile limit, per code object: were every layout's
    # passes one closure's code, a process of many shapes (a sweep's worker, a test session) would
    # exhaust one shared cache, and a chunk's first call past the limit would fail mid-run
    import drm._fused

    monkeypatch.setattr(drm._fused, "_RECOMPILE_LIMIT", 1)
    said: list[str] = []
    with torch._dynamo.config.patch(recompile_limit=1):
        for width in (3, 6, 3):  # shapes compiled nowhere else in this file; the third is compiled already
            passes, how = fused_passes(Activation("tanh"), LAYOUTS["1d"], width, torch.device("cpu"), torch.float64, say=said.append)
            assert how == "fused (torch.compile)", how
    assert said == ["compiling the elementwise passes"] * 2  # a progress display is told of each compile, and only then


def test_where_compiling_fails_the_eager_passes_run_and_say_why(tmp_path):
    # No C++ compiler, and a fresh kernel cache so that nothing compiled before is reused.
    script = (
        "from drm.autotune import Tuning\n"
        "from drm.config import TrainConfig\n"
        "from drm.train import MIN_EPOCHS_TO_FUSE, PackedTrainer\n"
        "config = TrainConfig(problem='double_well', depth=2, width=8, fourier=2, batch=16, epochs=MIN_EPOCHS_TO_FUSE, dtype='float64')\n"
        "trainer = PackedTrainer(config, [0, 1], fuse=True, tuning=Tuning(2, 'given'))\n"
        "trainer.run(3)\n"
        "print(trainer.passes)\n"
        "print(trainer.step_mode)\n"
        "print(trainer.step)\n"
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-compiler"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    passes, step_mode, steps = done.stdout.strip().splitlines()[-3:]
    assert passes.startswith("eager passes (torch.compile failed: ") and passes in step_mode
    assert steps == "3"


CONFIGS = {
    "1d relu": TrainConfig(problem="double_well", depth=3, width=16, fourier=2, batch=32, epochs=12, dtype="float64"),
    "2d smooth_abs": TrainConfig(problem="twin_branching", depth=2, width=16, fourier=2, batch=48, boundary_batch=32, epsilon=0.1 / 16,
                                 activation="smooth_abs", epochs=12, dtype="float64"),
}


@pytest.mark.parametrize("case", CONFIGS)
def test_a_packed_run_with_fused_passes_equals_the_eager_run(case):
    config, seeds = CONFIGS[case], [0, 1, 2, 3]
    eager = PackedTrainer(config, seeds, fuse=False, tuning=Tuning(4, "given"))
    fused = PackedTrainer(config, seeds, fuse=True, tuning=Tuning(3, "given"))  # chunks of 3 and 1: both kernels
    assert fused.passes == "fused (torch.compile)" and "fused (torch.compile)" in fused.step_mode
    assert eager.passes == "eager passes"
    eager.run()
    fused.run()
    for a, b in zip(eager.model.parameters(), fused.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
    torch.testing.assert_close(fused.last_loss, eager.last_loss, rtol=0, atol=1e-10)


def test_a_short_run_keeps_the_eager_passes_and_says_so():
    trainer = PackedTrainer(CONFIGS["1d relu"], [0, 1])
    assert trainer.passes == "eager passes (12 steps: too few to compile)" and trainer.passes in trainer.step_mode
    assert MIN_EPOCHS_TO_FUSE > CONFIGS["1d relu"].epochs
