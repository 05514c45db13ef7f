"""Browsing a sweep in MLflow as its users do: real MLflow on SQLite, `drmfm ui`, and Debian's
Chromium, headless, reading the pages the UI renders.

One finished quick sweep (the quickstart's quick: 4 configurations × 2 seeds) and its analysis
serve every test here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.run_names import VIEW_TAG
from tests.helpers import ROOT, drmfm, free_port, listening, loopback, mlflow_runs, process_tree, replicate_rows, spawn, wait_for

pytestmark = pytest.mark.slow  # a sweep, two analyses, a server and a browser: ~1.5 min

SWEEP = "quickstart-quick"
# Where the browser test leaves its screenshot of the runs view for the README (make readme-screenshot).
SCREENSHOT = os.environ.get("DRMFM_README_SCREENSHOT")


def chromium() -> str:
    """Debian's Chromium (`make test` installs it); a test that needs it fails without it, never skips."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("the browser tests need Chromium: install it (Debian: apt-get install chromium), or run `make test`", pytrace=False)
    return found


def browse(url: str, *, screenshot: Path | None = None, size: str = "1600,900") -> str:
    """The DOM the page renders in headless Chromium (and a screenshot of it)."""
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={size}", "--virtual-time-budget=20000"]
    if screenshot is not None:
        subprocess.run([*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    return subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("browse") / "home"
    done = drmfm("sweep", "sweeps/quickstart.yaml", "--quick", home=home, timeout=600)
    assert done.returncode == 0, done.stderr
    analysed = drmfm("analyze", str(home / "results" / SWEEP), timeout=600)
    assert analysed.returncode == 0, analysed.stderr
    assert "run 'analysis'" in analysed.stdout and f"experiment '{SWEEP}'" in analysed.stdout
    return home


def _client(home: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def test_the_experiment_is_model_training_and_its_runs_are_named_tagged_and_summarised(home):
    client = _client(home)
    experiment = client.get_experiment_by_name(SWEEP)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert VIEW_TAG in experiment.tags
    runs = mlflow_runs(home, SWEEP)
    parents = {r.info.run_name: r for r in runs if r.data.tags["role"] == "parent"}
    # The varying parameters in the spec's order (depth, then fourier), as the paper writes them.
    assert set(parents) == {"depth 3 · no map", "depth 3 · i 2", "depth 5 · no map", "depth 5 · i 2"}
    rows = replicate_rows(home, SWEEP)
    for name, parent in parents.items():
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(c.info.run_name for c in children) == ["seed 0", "seed 1"]
        for run in [parent, *children]:
            assert run.data.tags["configuration"] == name
            assert run.data.tags["depth"] == name.split(" ")[1]
            assert run.data.tags["fourier"] == ("none" if "no map" in name else "2")
        # The parent's medians and IQRs, against the rows of the tables (computed here, not read back).
        mine = [r for r in rows if r["mlflow_parent_run_id"] == parent.info.run_id and r["status"] == "ok"]
        assert len(mine) == 2
        for metric in ("transitions", "energy", "boundary_l2"):
            values = np.array([r[metric] for r in mine], dtype=float)
            q25, q75 = np.percentile(values, [25, 75])
            assert parent.data.metrics[f"{metric}_median"] == pytest.approx(np.median(values))
            assert parent.data.metrics[f"{metric}_iqr"] == pytest.approx(q75 - q25)
        assert parent.data.metrics["n_ok"] == 2 and parent.data.metrics["n_seeds"] == 2
    # The UI's search box works on the tags: depth 5 is two parents and their four seeds.
    found = client.search_runs([experiment.experiment_id], filter_string="tags.depth = '5'")
    assert sorted(r.data.tags["role"] for r in found) == ["child"] * 4 + ["parent"] * 2


def test_figures_trial_gives_one_figure_per_parent_run(home):
    client = _client(home)
    for run in mlflow_runs(home, SWEEP):
        names = [a.path for a in client.list_artifacts(run.info.run_id)]
        want = {"parent": ["profiles.png"], "child": []}.get(run.data.tags["role"])
        if want is not None:
            assert names == want, (run.info.run_name, names)


def test_the_analysis_is_one_run_of_the_experiment_replaced_when_analyze_runs_again(home):
    from mlflow.entities import ViewType

    client = _client(home)
    experiment = client.get_experiment_by_name(SWEEP).experiment_id

    def analyses(view=ViewType.ACTIVE_ONLY):
        return client.search_runs([experiment], filter_string="tags.role = 'analysis'", run_view_type=view)

    (first,) = analyses()
    assert first.info.run_name == "analysis" and first.info.status == "FINISHED" and "sweep" not in first.data.tags
    logged = {a.path for a in client.list_artifacts(first.info.run_id)}
    assert {"report.md", "summary.csv", "effects.csv", "reproduction.csv", "figures"} <= logged
    figures = {Path(a.path).name for a in client.list_artifacts(first.info.run_id, "figures")}
    written = {p.name for p in (home / "results" / SWEEP / "analysis" / "figures").iterdir()}
    assert figures == written and f"parallel_coordinates_{SWEEP}.png" in figures

    quiet = drmfm("analyze", str(home / "results" / SWEEP), "--no-mlflow", timeout=600)
    assert quiet.returncode == 0 and "--no-mlflow: the analysis is not logged to MLflow" in quiet.stderr
    assert [r.info.run_id for r in analyses()] == [first.info.run_id]

    again = drmfm("analyze", str(home / "results" / SWEEP), timeout=600)
    assert again.returncode == 0, again.stderr
    (second,) = analyses()
    assert second.info.run_id != first.info.run_id
    assert {r.info.run_id for r in analyses(ViewType.DELETED_ONLY)} == {first.info.run_id}
    assert not Path(first.info.artifact_uri.removeprefix("file://")).parent.exists()  # the replaced run's folder is gone
    # A sweep's bookkeeping never touches it: the parents and children are as many as before.
    assert sum(r.data.tags["role"] in ("parent", "child") for r in mlflow_runs(home, SWEEP)) == 12


def test_drmfm_ui_serves_the_runs_view_and_the_report_on_loopback(home, tmp_path):
    browser = chromium()
    assert browser
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as out:  # a file, not a pipe: a pipe nobody reads would stall the server's logging
        ui = spawn([sys.executable, "-m", "pipeline.cli", "ui", SWEEP, "--home", str(home), "--port", str(port)],
                   cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        def ready() -> bool:  # the ready line comes once the UI answers
            assert ui.poll() is None, "drmfm ui ended before it was ready:\n" + log.read_text()
            return "MLflow UI ready: " in log.read_text()

        wait_for(ready, 240, "drmfm ui to say it is ready")
        url = re.search(r"MLflow UI ready: (http://127\.0\.0\.1:\d+/\S+)", log.read_text()).group(1)
        assert "/runs?workflowType=machine_learning&viewStateShareKey=" in url

        tree = process_tree(ui.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in tree if Path(f"/proc/{pid}").exists()]
        assert not [c for c in commands if "huey" in c], commands  # no job runner
        assert len(tree) <= 3, commands  # drmfm ui, mlflow server, one uvicorn worker
        sockets = listening(tree)
        assert sockets and [s for s in sockets if not loopback(s[0])] == [], sockets

        shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "runs.png"
        dom = browse(url, screenshot=shot)
        for run in mlflow_runs(home, SWEEP):
            if run.data.tags["role"] == "parent":
                assert run.info.run_name in dom, run.info.run_name
        assert 'col-id="metrics.`transitions_median`"' in dom  # a metric column, on screen
        assert 'col-id="tags.`depth`"' in dom  # and a varying parameter
        assert shot.stat().st_size > 10_000

        client = _client(home)
        experiment = client.get_experiment_by_name(SWEEP).experiment_id
        (analysis,) = client.search_runs([experiment], filter_string="tags.role = 'analysis'")
        report = f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs/{analysis.info.run_id}/artifacts/report.md?workflowType=machine_learning"
        page = browse(report)
        assert "Band counts: analysis" in page and "Per configuration" in page
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_drmfm_ui_refuses_an_unknown_sweep_in_one_line(home):
    done = drmfm("ui", "no-such-sweep", "--port", str(free_port()), home=home, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"drmfm: error: name: no sweep 'no-such-sweep' in {home / 'mlflow.db'}; allowed: {SWEEP}"]
