"""Sweep specs: every shipped spec validates; each malformed spec exits 2 with one line naming its field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.spec import SpecError, load_spec, parse_spec
from tests.helpers import drmfm

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "sweeps").glob("*.yaml"))

BASE = {
    "name": "t",
    "problem": "double_well",
    "fixed": {"width": 16, "epochs": 10},
    "space": {"depth": [2, 3], "fourier": ["none", 2]},
    "seeds": 2,
}


def test_the_shipped_specs_cover_every_paper_figure():
    names = {p.stem for p in SPECS}
    assert {f"fig{i}" for i in range(3, 11)} <= names and "quickstart" in names


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_shipped_spec_passes_dry_run(path):
    for extra in ([], ["--quick"]):
        result = drmfm("sweep", str(path), "--dry-run", *extra)
        assert result.returncode == 0, result.stderr
        spec = load_spec(path)
        spec = spec.with_quick() if extra else spec
        steps, _ = spec.trial_steps()
        assert f"{spec.num_trials} trials" in result.stdout and f"× {spec.seeds} seeds" in result.stdout
        assert f"{steps:,}" in result.stdout


def test_grid_counts_are_the_product_of_the_lists():
    spec = parse_spec(BASE)
    assert spec.num_trials == 4 and spec.trial_steps() == (4 * 2 * 10, True)
    assert {p["fourier"] for p in spec.grid_points()} == {None, 2}


def _with(change):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    change(raw)
    return raw


MALFORMED = {
    "pack a shape": (lambda r: r.update(pack=["depth"]), "pack"),
    "pack a range": (lambda r: (r["space"].update(epsilon={"low": 0.0, "high": 0.1}),
                                r.update(pack=["epsilon"], search={"sampler": "random", "num_samples": 2})), "pack"),
    "pack with tpe": (lambda r: r.update(pack=["fourier"], search={"sampler": "tpe", "num_samples": 4}), "pack"),
    "pack with a scheduler": (lambda r: r.update(pack=["fourier"], scheduler={"type": "asha"}), "pack"),
    "pack everything": (lambda r: (r["space"].pop("depth"), r.update(pack=["fourier"])), "pack"),
    "unknown top key": (lambda r: r.update(bogus=1), "bogus"),
    "unknown fixed key": (lambda r: r["fixed"].update(widht=128), "fixed.widht"),
    "wrong type": (lambda r: r.update(seeds="eight"), "seeds"),
    "unknown problem": (lambda r: r.update(problem="allen_cahn"), "problem"),
    "empty space": (lambda r: r.update(space={}), "space"),
    "empty list": (lambda r: r["space"].update(depth=[]), "space.depth"),
    "low above high": (lambda r: r.update(space={"depth": {"low": 9, "high": 3}}, search={"sampler": "random", "num_samples": 2}), "space.depth"),
    "range in a grid": (lambda r: r["space"].update(depth={"low": 2, "high": 4}), "space.depth"),
    "sampler without num_samples": (lambda r: r.update(search={"sampler": "tpe"}), "search.num_samples"),
    "unknown sampler": (lambda r: r.update(search={"sampler": "cmaes"}), "search.sampler"),
    "metric not a column": (lambda r: r.update(objective={"metric": "accuracy"}), "objective.metric"),
    "modes for metrics": (lambda r: r.update(objective={"metric": ["energy", "transitions"], "mode": "min"}), "objective.mode"),
    "epsilon with relu somewhere in the space": (lambda r: r["space"].update(epsilon=[0.0, 0.1]), "space.epsilon"),
    "fourier not an integer": (lambda r: r["space"].update(fourier=["none", 2.5]), "space.fourier[1]"),
    "negative epochs": (lambda r: r["fixed"].update(epochs=-3), "fixed.epochs"),
    "fixed and varied": (lambda r: r["fixed"].update(depth=3), "space.depth"),
    "quick space not in space": (lambda r: r.update(quick={"space": {"width": [8]}}), "quick.space.width"),
    "scheduler with varied epochs": (lambda r: _vary_epochs(r, scheduler={"type": "asha"}), "scheduler"),
    "problem not a name": (lambda r: r.update(problem=["double_well"]), "problem"),
    "no metric": (lambda r: r.update(objective={"metric": [], "mode": []}), "objective.metric"),
    "a 2D metric in 1D": (lambda r: r.update(objective={"metric": "bands"}), "objective.metric"),
    "infinite cpus": (lambda r: r.update(resources={"cpu": float("inf")}), "resources.cpu"),
    "a fraction of two GPUs": (lambda r: r.update(resources={"gpu": 1.5}), "resources.gpu"),
    "half a layer": (lambda r: r.update(space={"depth": {"low": 2, "high": 6, "step": 0.5}}, search={"sampler": "random", "num_samples": 2}),
                     "space.depth.step"),
    "a boundary batch range": (lambda r: r.update(problem="twin_branching", space={"boundary_batch": {"low": 100, "high": 400}},
                                                  search={"sampler": "random", "num_samples": 2}), "space.boundary_batch"),
    "a range in a quick grid": (lambda r: r.update(quick={"space": {"depth": {"low": 2, "high": 3}}}), "quick.space.depth"),
    "figures not a setting": (lambda r: r.update(figures="all"), "figures"),
}


def _vary_epochs(raw, **extra):
    raw["fixed"].pop("epochs")
    raw["space"]["epochs"] = [10, 20]
    raw.update(extra)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_spec_exits_2_with_one_line(tmp_path, case):
    change, field = MALFORMED[case]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_with(change)))
    quick = ["--quick"] if case.startswith("a range in a quick") else []
    result = drmfm("sweep", str(path), "--dry-run", *quick)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"drmfm: error: {field}:"), lines[0]


def test_files_that_are_not_specs_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    for path, field in [(bad, "spec"), (tmp_path / "missing.yaml", "spec")]:
        result = drmfm("sweep", str(path), "--dry-run")
        assert result.returncode == 2 and result.stderr.startswith(f"drmfm: error: {field}:")


def test_parse_errors_name_the_field():
    with pytest.raises(SpecError) as info:
        parse_spec(_with(lambda r: r["space"].update(depth=[0])))
    assert info.value.field == "space.depth"


@pytest.mark.parametrize("storage", ["nope://bucket/drmfm", "s3://bucket/drmfm?endpoint_override=127.0.0.1:9&scheme=http"])
def test_a_storage_that_cannot_be_opened_or_reached_is_refused_before_anything_starts(tmp_path, storage):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(BASE))
    result = drmfm("sweep", str(spec), "--storage", storage, home=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith("drmfm: error: storage:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ray").exists()


def test_figures_default_to_one_per_trial_and_changing_them_keeps_the_sweep_resumable():
    assert parse_spec(BASE).figures == "trial"
    for setting in ("seed", "none"):
        spec = parse_spec(_with(lambda r, s=setting: r.update(figures=s)))
        assert spec.figures == setting and spec.spec_hash() == parse_spec(BASE).spec_hash()
    assert parse_spec(_with(lambda r: r["space"].update(depth=[3]))).spec_hash() != parse_spec(BASE).spec_hash()


def test_packed_dimensions_leave_the_search_and_ride_in_every_trial():
    spec = parse_spec(_with(lambda r: (r["space"].update(fourier=[1, 2, 3]), r.update(pack=["fourier"]))))
    assert spec.num_trials == 2 and list(spec.searched) == ["depth"]
    assert [c.fourier for c in spec.trial_configs({"depth": 2})] == [1, 2, 3]
    assert spec.trial_steps() == (2 * 3 * 2 * 10, True)
    from pipeline.samplers import search_space

    assert list(search_space(spec)) == ["depth"]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # Optuna's notice that qmc and gp may change
def test_every_sampler_a_spec_may_name_is_built_and_an_unknown_one_is_refused():
    import dataclasses

    import optuna

    from pipeline._optuna_samplers import TuneGridSampler
    from pipeline.samplers import SAMPLERS, sampler

    kinds = {
        "grid": TuneGridSampler,
        "random": optuna.samplers.RandomSampler,
        "tpe": optuna.samplers.TPESampler,
        "qmc": optuna.samplers.QMCSampler,
        "gp": optuna.samplers.GPSampler,
    }
    assert list(SAMPLERS) == list(kinds)  # the names the spec accepts are the ones that build, each Optuna's kind
    for name, kind in kinds.items():
        raw = _with(lambda r, name=name: r.setdefault("search", {}).update(sampler=name, **({} if name == "grid" else {"num_samples": 2})))
        assert isinstance(sampler(parse_spec(raw)), kind)
    spec = parse_spec(BASE)
    with pytest.raises(ValueError, match="search.sampler: unknown 'cmaes'; allowed: grid, random, tpe, qmc, gp"):
        sampler(dataclasses.replace(spec, search=dataclasses.replace(spec.search, sampler="cmaes")))
    with pytest.raises(SpecError, match="unknown 'cmaes'"):
        parse_spec(_with(lambda r: r.setdefault("search", {}).update(sampler="cmaes", num_samples=2)))


def test_a_spec_is_read_without_optuna_ray_or_mlflow():
    # the GPU check's machine has none of them, and benchmarks/mixed_packs.py reads the robustness specs there
    code = (
        "import sys\n"
        "for name in ('optuna', 'ray', 'mlflow'): sys.modules[name] = None  # an import of them raises\n"
        "from pipeline.spec import load_spec\n"
        "spec = load_spec('sweeps/robustness-2d.yaml')\n"
        "print(len(spec.trial_configs(spec.grid_points(list(spec.searched))[0])))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20"]  # frequency none, 1..4 × 4 ε
