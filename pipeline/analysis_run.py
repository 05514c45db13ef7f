"""The analysis inside its sweep's experiment: `drmfm analyze` logs report.md, the CSVs and the
figures to one run named "analysis" (tag role=analysis), replacing the one an earlier analysis
logged. Only analyze makes this run; a sweep's bookkeeping never touches it (it has no `sweep` tag).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from drm.storage import Storage, first_line
from pipeline.host import Process

ANALYSIS = {"role": "analysis"}


def store_for(folders: list[str], tracking_uri: str | None) -> tuple[str | None, str]:
    """The store an analysis of `folders` is logged to, and where it was found (or why there is none):
    `--tracking-uri` when given, else the store of the home that holds the results
    (HOME/results/<sweep> -> HOME/mlflow.db), else $MLFLOW_TRACKING_URI."""
    if tracking_uri:
        return tracking_uri, "--tracking-uri"
    homes = {Path(f).resolve().parent.parent for f in folders if "://" not in f}
    for home in sorted(homes):
        if (home / "mlflow.db").is_file():
            return f"sqlite:///{home / 'mlflow.db'}", f"the home {home}"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI"
    return None, "no MLflow store beside the results (HOME/mlflow.db) and no --tracking-uri"


def record(results: list[str], done, tracking_uri: str | None, say) -> None:
    """`drmfm analyze`'s analysis (`done`, analysis.analyze.Analysis) as the run "analysis" of its
    sweep's experiment, or one line (`say`) saying why not."""
    sweeps = done.sweeps
    if len(sweeps) != 1:
        say(f"MLflow: the results hold {len(sweeps)} sweeps ({', '.join(sweeps)}); an analysis is logged for one sweep's results only")
        return
    uri, where = store_for(results, tracking_uri)
    if uri is None:
        say(f"MLflow: {where}: the analysis is not logged")
        return
    try:
        run = log_analysis(uri, sweeps[0], done.out, done.files, {"configurations": len(done.summary), "runs_ok": done.runs_ok})
    except ImportError:
        say("MLflow: not installed here (pip install 'drmfm[sweep]'): the analysis is not logged")
    except Exception as e:  # noqa: BLE001 - the report is written; MLflow is a view of it
        say(f"MLflow at {uri}: the analysis is not logged ({why(e)})")
    else:
        print(f"mlflow:  run 'analysis' ({run}) in experiment {sweeps[0]!r} at {uri} (found from {where})")


def log_analysis(uri: str, experiment: str, out: str, files: list[str], metrics: dict[str, float]) -> str:
    """Log `files` (paths under the analysis folder `out`) to a new "analysis" run of `experiment`,
    then delete the analysis runs it replaces; returns the new run's id. A failure leaves the
    earlier run as it was (the new one is deleted)."""
    from mlflow.entities import Metric, ViewType
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import _owner_tags, _quiet

    _quiet()
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        raise LookupError(f"no experiment {experiment!r} in {uri} (the sweep creates it)")
    earlier = client.search_runs([found.experiment_id], filter_string="tags.role = 'analysis'", run_view_type=ViewType.ACTIVE_ONLY)
    tags = {**ANALYSIS, "analysis_of": experiment, **_owner_tags(Process.current())}
    run = client.create_run(found.experiment_id, run_name="analysis", tags=tags).info.run_id
    try:
        source = Storage(out)
        with tempfile.TemporaryDirectory() as folder:
            for name in files:
                path = Path(folder, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(source.read_bytes(*name.split("/")))
            client.log_artifacts(run, folder)
        client.log_batch(run, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()])
        client.set_terminated(run, "FINISHED")
    except BaseException:
        client.set_terminated(run, "FAILED")
        client.delete_run(run)
        raise
    for old in earlier:
        client.delete_run(old.info.run_id)
        _remove_local(old.info.artifact_uri)
    return run


def _remove_local(artifact_uri: str | None) -> None:
    """A replaced run's artifacts, where they are a local folder (a server's are its to collect)."""
    if artifact_uri and artifact_uri.startswith("file://"):
        shutil.rmtree(urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path), ignore_errors=True)


def why(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"
