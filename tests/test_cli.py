"""The command line: bad input exits 2 with one line; a real `drmfm train` prints and lands its tables."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.helpers import benchmark_script, drmfm

BAD_TRAIN = [
    (["--problem", "nope"], "problem"),
    (["--epochs", "-5"], "epochs"),
    (["--epochs", "0"], "epochs"),
    (["--width", "0"], "width"),
    (["--depth", "0"], "depth"),
    (["--epsilon", "-0.1"], "epsilon"),
    (["--epsilon", "0.1"], "epsilon"),  # ε > 0 with the 1D default, relu
    (["--fourier", "two"], "fourier"),
    (["--fourier", "-1"], "fourier"),
    (["--device", "tpu"], "device"),
    (["--activation", "sigmoid"], "activation"),
    (["--fourier-map", "wavelet"], "fourier_map"),
    (["--dtype", "float16"], "dtype"),
    (["--seeds", "0"], "seeds"),
    (["--seed-list", "1,1"], "seed-list"),
    (["--problem", "twin_branching", "--boundary-batch", "10"], "boundary_batch"),
    (["--epochs", "many"], "--epochs"),
    (["--no-such-flag"], "--no-such-flag"),
]


@pytest.mark.parametrize("args,field", BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input_exits_2_with_one_line(tmp_path, args, field):
    result = drmfm("train", *args, home=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert field in lines[0] and "Traceback" not in lines[0]
    assert not (tmp_path / "results").exists()  # nothing half-written


def test_cuda_on_a_machine_without_it_is_bad_input(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the case is about machines without it")
    result = drmfm("train", "--device", "cuda", home=tmp_path)
    assert result.returncode == 2 and "device" in result.stderr and len(result.stderr.splitlines()) == 1


def test_every_command_has_help():
    listed = drmfm("--help")
    commands = ["problems", "train", "bench", "sweep", "status", "analyze", "recount", "ntk", "ui"]
    assert listed.returncode == 0 and all(c in listed.stdout for c in commands), listed.stdout
    for command in commands:
        result = drmfm(command, "--help")
        assert result.returncode == 0 and "Usage" in result.stdout, (command, result.stderr)


def test_problems_lists_the_three_problems():
    result = drmfm("problems")
    assert result.returncode == 0
    for name in ["double_well", "double_well_u2", "twin_branching"]:
        assert name in result.stdout


def test_train_prints_one_line_per_seed_and_writes_tables(tmp_path):
    result = drmfm(
        "train", "--problem", "double_well_u2", "--fourier", "1", "--epochs", "60", "--seed-list", "2,5,9", home=tmp_path
    )
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "results").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("train-")
    table = pq.read_table(next((runs[0] / "replicates").glob("*.parquet")))
    assert sorted(table.column("seed").to_pylist()) == [2, 5, 9]
    for seed, energy in zip(table.column("seed").to_pylist(), table.column("energy").to_pylist()):
        line = next(line for line in result.stdout.splitlines() if line.strip().strip("│").split("│")[0].strip() == str(seed))
        assert f"{energy:.5g}" in line


def test_a_diverging_train_exits_1_and_says_so(tmp_path):
    result = drmfm("train", "--epochs", "100", "--lr", "1e4", "--fourier", "2", "--seeds", "2", home=tmp_path)
    assert result.returncode == 1
    assert "diverged" in result.stderr.splitlines()[-1]


@pytest.mark.slow
def test_bench_json_has_the_interface_fields(tmp_path, capsys):
    result = drmfm("bench", "--device", "cpu", "--json", "--seconds", "0.05", timeout=600)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"device", "torch", "threads", "dtype", "matmul_peak_gflops", "results"} <= set(out)
    methods = {(r["case"], r["method"], r["K"]) for r in out["results"]}
    assert methods == {(c, "reference", 1) for c in ("1d", "2d")} | {(c, "packed", k) for c in ("1d", "2d") for k in (1, 8, 64)}
    for r in out["results"]:
        assert r["trial_steps_per_s"] > 0 and r["gflops"] > 0
        ref = next(x for x in out["results"] if x["case"] == r["case"] and x["method"] == "reference")
        assert r["ratio_to_reference"] == pytest.approx(r["trial_steps_per_s"] / ref["trial_steps_per_s"])
        # where the step's time goes (issue 17): shares of its wall time, and the packed step's chunks as measured
        assert 0 < r["matmul_share"] < 1 and 0 < r["elementwise_share"] < 1 and r["matmul_share"] + r["elementwise_share"] <= 1.0
        if r["method"] == "packed":
            tuning = r["tuning"]
            assert tuning["members_per_chunk"] in range(1, r["K"] + 1)
            if r["K"] > 1:
                assert tuning["source"] == "measured" and str(tuning["members_per_chunk"]) in tuning["seconds_per_step"]
                assert tuning["paired"]["passes"]["kept"] is r["passes"].startswith("eager")  # the pair that decided the passes
            assert r["passes"] == "fused (torch.compile)" or r["passes"].startswith("eager passes (faster here than fused: ")  # measured
        else:
            assert r["tuning"] is None and r["passes"] is None
    assert "tuning the step" in result.stderr  # what a packed row waits for before its timing, as progress
    # benchmarks/summary.py, what cpu_check.sh and gpu_check.sh print: the bench's table, a row a line in a log
    saved = tmp_path / "bench.json"
    saved.write_text(result.stdout)
    benchmark_script("summary").main([str(saved)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert len(rows) == len(out["results"])
    for line, r in zip(rows, out["results"], strict=True):
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert cells[:4] == [r["case"], r["method"], "no", str(r["K"])]
        assert cells[6] == f"{r['gflops'] / out['matmul_peak_gflops']:.0%}"  # of peak
