"""Bad input of every kind: exit 2, one line naming the field, no traceback, nothing written, no wait."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import yaml_strict
from pipeline.spec import parse_spec
from tests.helpers import drmfm

SPEC = {
    "name": "bad",
    "problem": "double_well",
    "fixed": {"width": 16, "epochs": 10},
    "space": {"fourier": ["none", 2]},
    "seeds": 1,
}


def one_line(result) -> str:
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    return lines[0]


def nothing_written(home: Path) -> bool:
    return not home.exists() or not any(home.iterdir())


SPEC_TEXTS = {
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "spec: ", "not UTF-8"),
    "latin-1": ("name: café\nproblem: double_well\n".encode("latin-1"), "spec: ", "not UTF-8"),
    "a key twice": (b"name: a\nproblem: double_well\nseeds: 1\nspace: {depth: [2]}\nseeds: 2\n", "spec: ",
                    "'seeds' is given twice (again at line 5)"),
    "a nested key twice": (b"name: a\nproblem: double_well\nseeds: 1\nspace: {depth: [2], depth: [3]}\n", "spec: ", "'depth' is given twice"),
    "a name of 101": (yaml.safe_dump({**SPEC, "name": "n" * 101}).encode(), "name: ", "1 to 100"),
    "a name ending in a newline": (yaml.safe_dump({**SPEC, "name": "bad\n"}).encode(), "name: ", "allowed"),
    "a step past the range": (yaml.safe_dump({**SPEC, "space": {"depth": {"low": 2, "high": 3, "step": 5}},
                                              "search": {"sampler": "random", "num_samples": 2}}).encode(),
                              "space.depth.step: ", "larger than the range"),
    "a grace period past the epochs": (yaml.safe_dump({**SPEC, "scheduler": {"type": "asha", "grace_period": 50}}).encode(),
                                       "scheduler.grace_period: ", "past the 10 epochs"),
    "a frequency that overflows": (yaml.safe_dump({**SPEC, "space": {"fourier": [2, 40]}}).encode(), "space.fourier: ", "0..12"),
}


@pytest.mark.parametrize("case", list(SPEC_TEXTS))
def test_a_spec_that_cannot_be_read_exits_2_naming_why(tmp_path, case):
    data, field, why = SPEC_TEXTS[case]
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    line = one_line(drmfm("sweep", str(path), home=tmp_path / "home"))
    assert line.startswith(f"drmfm: error: {field}") and why in line, line
    assert nothing_written(tmp_path / "home")


def test_numbers_are_read_as_written_yaml_1_1_strings_included():
    raw = yaml_strict.load(b"fixed: {lr: 1e-4, penalty: 5E2, rho: .1, epochs: 100, batch: 0x10}\nspace: {depth: [3, 5]}\nname: n\n")
    assert raw["fixed"] == {"lr": 1e-4, "penalty": 500.0, "rho": 0.1, "epochs": 100, "batch": 16}
    assert isinstance(raw["fixed"]["epochs"], int)
    spec = parse_spec({**SPEC, "fixed": {**SPEC["fixed"], "lr": yaml_strict.load(b"1e-4")}})
    assert spec.fixed["lr"] == pytest.approx(1e-4)


def test_a_spec_with_lr_1e_4_runs(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: lr\nproblem: double_well\nfixed: {lr: 1e-4, width: 16, epochs: 10}\nspace: {depth: [2]}\nseeds: 1\n")
    result = drmfm("sweep", str(path), "--dry-run")
    assert result.returncode == 0 and "1 trials × 1 seeds" in result.stdout, result.stderr


def test_a_request_this_machine_cannot_meet_exits_at_once(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "resources": {"cpu": 1000}}))
    start = time.monotonic()
    line = one_line(drmfm("sweep", str(path), home=tmp_path / "home", timeout=60))
    assert line.startswith("drmfm: error: resources.cpu: 1000 CPUs per trial; this machine has") and time.monotonic() - start < 30
    assert nothing_written(tmp_path / "home")


def test_a_step_past_memory_exits_2_before_any_work(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "space": {"width": [16, 2_000_000]}, "fixed": {"epochs": 10}}))
    line = one_line(drmfm("sweep", str(path), home=tmp_path / "home"))
    assert line.startswith("drmfm: error: width/seeds: one step of 1 member(s) of width 2000000") and "GiB" in line and "width=2000000" in line
    for flags in (["--width", "5000000"], ["--seeds", "10000000"]):
        line = one_line(drmfm("train", *flags, "--no-mlflow", home=tmp_path / "home"))
        assert line.startswith("drmfm: error: width/seeds: one step of") and "GiB free" in line and "this machine has" in line
    assert nothing_written(tmp_path / "home")


def test_an_address_that_does_not_answer_is_given_up_within_30_s(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    start = time.monotonic()
    line = one_line(drmfm("sweep", str(path), "--address", "127.0.0.1:1", home=tmp_path / "home", timeout=120))
    assert line.startswith("drmfm: error: address: nothing answers at 127.0.0.1:1") and time.monotonic() - start < 30
    assert nothing_written(tmp_path / "home")


@pytest.mark.slow
def test_an_address_that_answers_but_is_no_ray_is_given_up_within_30_s(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    with socket.socket() as listener:  # accepts TCP, says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        start = time.monotonic()
        line = one_line(drmfm("sweep", str(path), "--address", f"127.0.0.1:{port}", home=tmp_path / "home", timeout=120))
        took = time.monotonic() - start
    assert line.startswith("drmfm: error: address: ") and f"127.0.0.1:{port}" in line, line
    assert took < 45  # the 30 s bound, and the command's start and end


def test_a_home_or_an_out_under_a_file_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    for args in (["sweep", str(spec)], ["train", "--epochs", "5", "--no-mlflow"], ["status"]):
        line = one_line(drmfm(*args, home=tmp_path / "file" / "home"))
        assert line.startswith("drmfm: error: home: ") and "is under" in line and "a file" in line
    results = _results_folder(tmp_path / "results" / "s")
    line = one_line(drmfm("analyze", str(results), "--out", str(tmp_path / "file" / "out")))
    assert line.startswith("drmfm: error: out: ") and "a file" in line
    line = one_line(drmfm("ntk", "--points", "16", "--out", str(tmp_path / "file" / "ntk")))
    assert line.startswith("drmfm: error: out: ")


def test_status_names_a_sweep_whose_saved_spec_is_corrupt_and_counts_the_others(tmp_path):
    home = tmp_path / "home"
    for name, text in (("broken", "{not json"), ("other-program", '{"spec": 3}')):
        (home / "ray" / name).mkdir(parents=True)
        (home / "ray" / name / "drmfm-spec.json").write_text(text)
    result = drmfm("status", home=home)
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert len(lines) == 2 and all("cannot be counted: drmfm-spec.json is not the spec drmfm saved" in line for line in lines)
    assert lines[0].startswith("broken: ") and lines[1].startswith("other-program: ")


def _results_folder(folder: Path) -> Path:
    (folder / "replicates").mkdir(parents=True)
    pq.write_table(pa.table({"seed": [0]}), folder / "replicates" / "good.parquet")
    return folder


def test_analyze_names_a_file_that_is_not_parquet(tmp_path):
    folder = _results_folder(tmp_path / "results" / "s")
    (folder / "replicates" / "broken.parquet").write_bytes(b"PAR1 but not really")
    line = one_line(drmfm("analyze", str(folder)))
    assert line.startswith("drmfm: error: results: ") and "replicates/broken.parquet is not a readable Parquet file" in line
    assert not (folder / "analysis").exists()


def test_the_ui_on_a_port_in_use_exits_2(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_line(drmfm("ui", "--port", str(port), home=tmp_path, timeout=60))
    assert line.startswith(f"drmfm: error: port: {port} on 127.0.0.1 is taken")


def test_ntk_points_are_bounded(tmp_path):
    line = one_line(drmfm("ntk", "--points", "100000", home=tmp_path))
    assert line.startswith("drmfm: error: points: 100000 is not allowed; allowed: 8..4096")
    assert nothing_written(tmp_path)


def test_a_frequency_past_the_bound_is_refused_by_train(tmp_path):
    line = one_line(drmfm("train", "--fourier", "13", "--no-mlflow", home=tmp_path))
    assert line.startswith("drmfm: error: fourier: 13 is not allowed; allowed: 0..12")
