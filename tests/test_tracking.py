"""MLflow runs of a trial across retries (real MLflow on SQLite): finished runs stay finished."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from pipeline.recorder import Recorder
from pipeline.run_names import VIEW_TAG, Layout, child_name, parameter_tags, parent_name
from pipeline.tables import CURVES, PROFILES, TrialTables, conform, replicates_schema
from pipeline.tracking import Tracker, ensure_experiment
from tests.helpers import small


def _tables(trial_id: str, runs: tuple[str, dict[int, str]], config_hash: str = "hash") -> TrialTables:
    parent, children = runs
    rows = [{"sweep": "s", "trial_id": trial_id, "seed": seed, "status": "ok", "energy": 0.5 + seed, "transitions": 4,
             "mlflow_run_id": run, "mlflow_parent_run_id": parent, "config_hash": config_hash} for seed, run in children.items()]
    curves = conform(pa.table({"sweep": ["s"] * 4, "trial_id": [trial_id] * 4, "seed": [0, 0, 1, 1], "step": [0, 10, 0, 10],
                       "loss": [1.0, 0.5, 1.0, 0.4], "energy_mc": [0.9, 0.4, 0.9, 0.3], "lr": [1e-4] * 4}), CURVES)
    return TrialTables(trial_id, pa.Table.from_pylist(rows, schema=replicates_schema()), curves, PROFILES.empty_table(), b"w")


def test_a_retry_neither_reopens_nor_fails_the_runs_of_a_landed_trial(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "s", tmp_path / "artifacts")
    recorder = Recorder(tmp_path / "results", uri, "s", "s")
    runs = recorder.open_runs("t-0", {"depth": 3}, "hash", [0, 1])
    recorder.land(_tables("t-0", runs), runs)
    tracker = Tracker(uri, "s", "s")
    statuses = lambda: {tracker.client.get_run(r).info.status for r in [runs[0], *runs[1].values()]}  # noqa: E731
    assert statuses() == {"FINISHED"}
    again = recorder.open_runs("t-0", {"depth": 3}, "hash", [0, 1])  # the retry of a multi-pack trial
    assert again == runs and statuses() == {"FINISHED"}
    recorder.fail_runs(again)  # …which then fails in another pack
    assert statuses() == {"FINISHED"}
    history = tracker.client.get_metric_history(runs[1][0], "loss")
    recorder.land(_tables("t-0", runs), runs)  # landed again: the history is not logged twice
    assert len(tracker.client.get_metric_history(runs[1][0], "loss")) == len(history) == 2
    other = recorder.open_runs("t-1", {"depth": 5}, "hash2", [0])
    recorder.fail_runs(other)
    assert tracker.client.get_run(other[0]).info.status == "FAILED"
    assert np.isclose(tracker.client.get_run(runs[1][1]).data.metrics["energy"], 1.5)
    assert recorder.tracking_failure() is None


def _counting_searches(tracker: Tracker) -> list:
    searches, search = [], tracker.client.search_runs
    tracker.client.search_runs = lambda *a, **k: searches.append(k.get("filter_string")) or search(*a, **k)
    return searches


def test_an_indexed_tracker_finds_every_run_by_its_configuration_without_a_search_each(tmp_path):
    """A sweep's recorder keeps an index of the sweep's runs: a fresh sweep's starts empty; a resumed
    one's is read in the background, and meanwhile each configuration is searched. Either way the
    runs a killed driver left are found and reopened, the ones it creates are found again, and a new
    configuration costs no search once the index is there (a search's time grows with the store)."""
    import time

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "s", tmp_path / "artifacts")
    fresh = Tracker(uri, "s", "s", indexed=True)
    searches = _counting_searches(fresh)
    left = fresh.open("t-0", [0, 1], {"depth": 3}, "hash")  # then the driver is killed: RUNNING, no rows
    assert searches == [] and fresh._index is not None
    other_sweep = Tracker(uri, "s", "other").open("t-9", [0], {"depth": 3}, "hash")
    resumed = Tracker(uri, "s", "s", indexed=True)
    for _ in range(200):
        if resumed._index is not None:
            break
        time.sleep(0.05)
    searches = _counting_searches(resumed)
    again = resumed.open("t-0", [0, 1, 2], {"depth": 3}, "hash")
    assert again.parent == left.parent and {s: again.children[s] for s in (0, 1)} == left.children and 2 in again.children
    new = resumed.open("t-1", [0], {"depth": 4}, "hash1")
    assert new.parent not in (left.parent, other_sweep.parent) and resumed.open("t-1", [0], {"depth": 4}, "hash1") == new
    assert searches == []  # every configuration from the index
    unindexed = Tracker(uri, "s", "s")  # what the index holds is what a search finds
    for config_hash in ("hash", "hash1", "nothing"):
        assert unindexed._found(config_hash) == resumed._found(config_hash)
    assert unindexed._found("hash")[2] == again.children[2] and unindexed._found("nothing") == {}


def test_a_tracking_failure_is_said_once_and_turns_tracking_off(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recorder = Recorder(tmp_path / "results", uri, "missing-experiment", "s")  # the driver never created it
    assert recorder.open_runs("t", {}, "h", [0]) is None
    assert recorder.open_runs("u", {}, "h", [0]) is None
    warnings = [line for line in capsys.readouterr().err.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and "does not exist" in recorder.tracking_failure()


@pytest.mark.parametrize("figures, parent, child", [("trial", ["profiles.png"], []), ("seed", [], ["profile-seed{seed}.png"]), ("none", [], [])])
def test_the_figures_setting_decides_the_artifacts_per_trial(tmp_path, figures, parent, child):
    import torch

    from drm.train import PackedTrainer
    from pipeline.trial import TrialRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "s", tmp_path / "artifacts")
    recorder = Recorder(tmp_path / "results", uri, "s", "s", layout=Layout(("depth",)))
    config = small("double_well", epochs=20, dtype="float32")
    seeds = [0, 1, 2]
    runs = recorder.open_runs("t-0", config.as_dict(), config.config_hash(), seeds)
    run = TrialRun(PackedTrainer(config, seeds, torch.device("cpu")), "s", ["t-0"], "node", {"t-0": runs}, figures=figures)
    run.train()
    run.land(recorder.land)
    client = Tracker(uri, "s", "s").client
    assert [a.path for a in client.list_artifacts(runs[0])] == parent
    for seed, child_run in runs[1].items():
        assert [a.path for a in client.list_artifacts(child_run)] == [name.format(seed=seed) for name in child]
    assert client.get_run(runs[0]).info.run_name == "depth 3"
    assert {client.get_run(c).info.run_name for c in runs[1].values()} == {"seed 0", "seed 1", "seed 2"}


def test_run_names_read_as_the_paper_writes_a_setting():
    params = {"depth": 5, "fourier": 2, "epsilon": 0.0, "epochs": 100_000, "lr": 1e-4}
    assert parent_name(params, ("depth", "fourier", "epsilon", "epochs")) == "depth 5 · i 2 · ε 0 · 100k"
    other = {**params, "fourier": None, "epsilon": 0.1 / 16, "epochs": 600}
    assert parent_name(other, ("fourier", "epsilon", "epochs")) == "no map · ε 0.00625 · 600 epochs"
    assert parent_name(params, ("lr",)) == "lr 0.0001"
    sampled = {"lr": 0.004669295331523649, "depth": 4}
    assert parent_name(sampled, ("depth", "lr")) == "depth 4 · lr 0.004669"  # shown to 4 digits, grouped by the exact value
    exact = {"depth": "4", "lr": "0.004669295331523649", "configuration": "depth 4 · lr 0.004669295331523649"}
    assert parameter_tags(sampled, ("depth", "lr")) == exact
    tags = parameter_tags({**params, "fourier": None}, ("depth", "fourier", "epsilon"))
    assert tags == {"depth": "5", "fourier": "none", "epsilon": "0", "configuration": "depth 5 · no map · ε 0"}
    assert child_name(3) == "seed 3"


def test_an_experiment_of_an_earlier_version_is_tagged_as_model_training_and_given_its_view(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    old = client.create_experiment("s")  # no kind: MLflow 3 would open it on its GenAI pages
    assert ensure_experiment(uri, "s", None, Layout(("depth",)).view()) == old
    tags = client.get_experiment(old).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert json.loads(tags[VIEW_TAG])["selectedColumns"][:2] == ["metrics.`transitions_median`", "metrics.`transitions_iqr`"]
    assert "tags.`depth`" in json.loads(tags[VIEW_TAG])["selectedColumns"]


def test_a_sweep_names_its_runs_by_what_varies_and_its_parents_carry_the_objective_as_tune_aggregates_it():
    from pipeline.spec import parse_spec
    from pipeline.tracking import parent_metrics

    spec = parse_spec({"name": "s", "problem": "double_well", "fixed": {"epochs": 10}, "seeds": 2,
                       "space": {"width": [32], "depth": [3, 5], "lr": [1e-4, 1e-3]}, "objective": {"metric": "transitions", "agg": "mean"}})
    layout = Layout.of(spec)
    assert layout == Layout(("depth", "lr"), "transitions", "mean")  # a one-value list names nothing
    assert "metrics.`transitions_mean`" in json.loads(layout.view())["selectedColumns"]
    rows = [{"status": "ok", "transitions": 4, "energy": 0.2}, {"status": "ok", "transitions": 8, "energy": None},
            {"status": "diverged", "transitions": 100, "energy": 9.0}]
    metrics = parent_metrics(rows, ("transitions", "mean"))
    assert metrics["transitions_mean"] == 6 and metrics["transitions_median"] == 6 and metrics["transitions_iqr"] == 2
    assert metrics["energy_median"] == 0.2 and "energy_iqr" not in metrics  # one seed gives it: no spread to show
    assert (metrics["n_ok"], metrics["n_seeds"]) == (2, 3)


def test_the_analysis_goes_to_the_store_that_holds_its_sweep(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from pipeline.analysis_run import record

    home, elsewhere = tmp_path / "home", tmp_path / "server"
    for folder in (home / "results" / "s" / "analysis", elsewhere):
        folder.mkdir(parents=True)
    ensure_experiment(f"sqlite:///{home / 'mlflow.db'}", "train", None)  # the home's store holds another experiment
    ensure_experiment(f"sqlite:///{elsewhere / 'mlflow.db'}", "s", elsewhere / "artifacts")  # the sweep recorded with $MLFLOW_TRACKING_URI
    (home / "results" / "s" / "analysis" / "report.md").write_text("# Band counts: analysis\n")
    done = SimpleNamespace(sweeps=["s"], out=str(home / "results" / "s" / "analysis"), files=["report.md"], summary=[1, 2], runs_ok=4)
    said = []
    record([str(home / "results" / "s")], done, None, said.append)
    assert said == [f"MLflow: no active experiment 's' in sqlite:///{home / 'mlflow.db'} (the home {home}) (a sweep's experiment is its name; "
                    "`drmfm train` records to 'train'): the analysis is not logged"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere / 'mlflow.db'}")
    record([str(home / "results" / "s")], done, None, said.append)
    client = MlflowClient(f"sqlite:///{elsewhere / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("s").experiment_id], filter_string="tags.role = 'analysis'")
    assert run.data.metrics == {"configurations": 2, "runs_ok": 4} and [a.path for a in client.list_artifacts(run.info.run_id)] == ["report.md"]
