"""`drmfm bench`'s shares of a step (pipeline.bench.step_shares), on steps whose make-up is known; the benchmark scripts that read them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from drm import autotune
from drm.config import TrainConfig
from drm.train import PackedTrainer
from pipeline.bench import CASES, flops_per_trial_step, step_shares
from tests.helpers import ROOT, benchmark_script, write_mixed_spec

CPU = torch.device("cpu")


def test_a_step_of_products_is_counted_as_products():
    a, b, out = torch.randn(384, 384), torch.randn(384, 384), torch.empty(384, 384)
    matmul, other = step_shares(lambda: [torch.mm(a, b, out=out) for _ in range(20)], CPU)
    assert matmul > 0.8 and other < 0.05 and matmul + other <= 1.0


def test_compiled_elementwise_passes_count_as_elementwise():
    # drm._fused's passes run as a compiled graph, which has no aten operator inside: before they were
    # counted, a fused step showed a few percent of elementwise time where it spent a sixth.
    x = torch.randn(1 << 20)
    passes = torch.compile(lambda t: (t.sin() * t.cos()).exp(), dynamic=False)
    passes(x)
    matmul, other = step_shares(lambda: passes(x), CPU)
    assert matmul == 0.0 and other > 0.5 and other <= 1.0


def test_products_on_another_thread_are_not_the_steps():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    stop = threading.Event()

    def elsewhere() -> None:
        while not stop.is_set():
            torch.mm(a, b)

    worker = threading.Thread(target=elsewhere)
    worker.start()
    try:
        matmul, other = step_shares(lambda: time.sleep(0.02), CPU)
    finally:
        stop.set()
        worker.join()
    assert matmul == 0.0 and other == 0.0


@pytest.mark.parametrize("case", ["1d", "2d"])
def test_the_step_profile_accounts_for_every_counted_product(case):
    # benchmarks/step_profile.py names each product of a step; together they are the FLOPs the bench
    # counts from the configuration, less the output layer's ∂L/∂h (width 1: an elementwise product)
    step_profile = benchmark_script("step_profile")
    config = TrainConfig(**{**CASES[case].as_dict(), "width": 32, "batch": 32}).resolve()
    K, steps = 3, 2  # chunks of 2 and 1 members
    trainer = PackedTrainer(config, list(range(K)), device=CPU, tuning=autotune.Tuning(2, "given"), fuse=False)
    _, products, _ = step_profile.profile_step(trainer, steps)
    dim = 1 if case == "1d" else 2
    rows = config.batch + config.boundary_batch + dim * config.batch + (config.batch if config.needs_u2 else 0)
    assert sum(flop for _, _, flop in products.values()) / steps == pytest.approx(K * (flops_per_trial_step(config) - 2.0 * rows * config.width))
    assert {name for name, _, _ in products} == {"first layer z = h W", "hidden z = h W", "output u = h w", "output dL/dW",
                                                 "hidden dL/dW = ht g", "hidden dL/dh = g Wt", "first layer dL/dW"}


def test_the_mixed_packs_script_times_the_packs_a_trial_trains(tmp_path):
    # benchmarks/mixed_packs.py builds a trial's packs from its spec: frequency none apart (its own
    # shape), every frequency × ε with a map together, configuration by configuration with all seeds
    mixed_packs = benchmark_script("mixed_packs")
    path = write_mixed_spec(tmp_path, depths=[2, 3])
    out = mixed_packs.main(["--spec", str(path), "--seconds", "0.01"])
    plain, mapped = out["results"]
    assert (plain["K"], plain["configurations"], plain["fourier"], plain["epsilon"]) == (4, 2, [None], [0.0, 0.01])
    assert (mapped["K"], mapped["configurations"], mapped["fourier"], mapped["epsilon"]) == (8, 4, [1, 2], [0.0, 0.01])
    assert plain["point"] == mapped["point"] == {"depth": 2}  # the first trial of the grid
    # members are charged their own FLOPs: an ε = 0 member carried with the u_yy stream is charged without it
    loaded = mixed_packs.load_spec(path)
    members = [loaded.trial_config({"depth": 2, "fourier": f, "epsilon": e}) for f in (1, 2) for e in (0.0, 0.01) for _ in range(2)]
    assert [c.config_hash() for c in mixed_packs.trial_packs(loaded, {"depth": 2})[1]] == [c.config_hash() for c in members]
    with_u2, without = flops_per_trial_step(members[2]), flops_per_trial_step(members[0])
    assert without < with_u2
    assert mapped["gflops"] * 1e9 / mapped["trial_steps_per_s"] == pytest.approx((with_u2 + without) / 2)
    assert all(seconds > 0 for seconds in mapped["paired_seconds_a_step"].values()) and mapped["mixed_time_over_one_config"] > 0
    assert mapped["of_peak"] == pytest.approx(mapped["gflops"] / out["matmul_peak_gflops"]["float32"])
    assert "eager (cpu; eager passes" in mapped["step_mode"] and not mapped["graphed"]  # 10 epochs: too few to compile, as in the trial
    header, *lines = benchmark_script("summary").mixed_lines(out)  # as cpu_check.sh and gpu_check.sh print them
    assert "matmul peak float32" in header and len(lines) == 2
    assert lines[1].startswith("mixed K = 8   eager") and f"{mapped['of_peak']:6.1%} of peak" in lines[1]


def test_the_gpu_check_script_stops_a_step_at_its_limit_and_goes_on(tmp_path):
    # benchmarks/gpu_check.sh runs inside one call of a lease: a step that hangs is stopped at its
    # limit, said in the log (not written into its JSON), and the later steps still run. Here a
    # stand-in Python hangs in the bench; the mixed packs' figures are summarised all the same.
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/bash\n"
        'case "$*" in\n'
        '  *"pipeline.cli bench"*) exec sleep 60 ;;\n'
        f'  *summary.py*) exec {sys.executable} "$@" ;;\n'
        '  *mixed_packs.py*) echo \'{"device": "GPU", "torch": "2.11", "threads": 16, "matmul_peak_gflops": {"float32": 51000.0}, '
        '"results": [{"spec": "robustness-2d", "K": 256, "graphed": true, "step_mode": "graphed (one CUDA graph per step)", '
        '"trial_steps_per_s": 9000.0, "of_peak": 0.41, "mixed_time_over_one_config": 1.01}]}\' ;;\n'
        '  *) echo "ran: $*" ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(out), "LIMIT_BENCH": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr  # a step failed: the exit status says so
    log = (out / "gpu-check.log").read_text()
    assert "(stopped at its limit of 1 s)" in log and (out / "bench-cuda.json").read_text() == ""
    assert "bench-cuda.json: no figures" in log
    assert "robustness-2d K = 256 graphed     9,000 trial-steps/s   41.0% of peak" in log
    assert "ran: -m pytest" in log and "ran: benchmarks/precision.py" in log and "=== done" in log
    assert log.splitlines()[-1] == "failed: bench (exit 124)"  # written whole before the script returned
    assert sorted(p.name for p in out.iterdir()) == ["bench-cuda.json", "gpu-check.log", "mixed-packs.json", "precision.json"]
    env["DEADLINE"] = "0"  # past its deadline, every step is skipped, and said to be
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "ran:" not in done.stdout and "failed: install (skipped)" in done.stdout
