"""The analysis inside its sweep's experiment: `drmfm analyze` logs report.md, the CSVs and the
figures to one run named "analysis" (tag role=analysis), replacing the one an earlier analysis
logged. Only analyze makes this run; a sweep's bookkeeping never touches it (it has no `sweep` tag).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

from drm.storage import Storage, first_line
from pipeline.host import Process

ANALYSIS = {"role": "analysis"}


def candidates(folders: list[str], tracking_uri: str | None) -> list[tuple[str, str]]:
    """The stores an analysis of `folders` may belong in, with where each was found: `--tracking-uri`
    alone when given; else the store of the home that holds the results (HOME/results/<sweep> ->
    HOME/mlflow.db), then $MLFLOW_TRACKING_URI (where a sweep run with it recorded)."""
    if tracking_uri:
        return [(tracking_uri, "--tracking-uri")]
    found = []
    for home in sorted({Path(f).resolve().parent.parent for f in folders if "://" not in f}):
        if (home / "mlflow.db").is_file():
            found.append((f"sqlite:///{home / 'mlflow.db'}", f"the home {home}"))
    if os.environ.get("MLFLOW_TRACKING_URI"):
        found.append((os.environ["MLFLOW_TRACKING_URI"], "$MLFLOW_TRACKING_URI"))
    return found


def _experiment(uri: str, name: str):
    """The active experiment `name` in the store at `uri`, or None."""
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import _quiet

    _quiet()
    found = MlflowClient(uri).get_experiment_by_name(name)
    return found if found is not None and found.lifecycle_stage == "active" else None


def record(results: list[str], done, tracking_uri: str | None, say) -> None:
    """`drmfm analyze`'s analysis (`done`, analysis.analyze.Analysis) as the run "analysis" of its
    sweep's experiment, in the first store that holds it, or one line (`say`) saying why not."""
    sweeps = done.sweeps
    if len(sweeps) != 1:
        say(f"MLflow: the results hold {len(sweeps)} sweeps ({', '.join(sweeps)}); an analysis is logged for one sweep's results only")
        return
    stores = candidates(results, tracking_uri)
    if not stores:
        say("MLflow: no store beside the results (HOME/mlflow.db), no --tracking-uri and no $MLFLOW_TRACKING_URI: the analysis is not logged")
        return
    try:
        holding = [(uri, where) for uri, where in stores if _experiment(uri, sweeps[0]) is not None]
    except ImportError:
        say("MLflow: not installed here (pip install 'drmfm[sweep]'): the analysis is not logged")
        return
    except Exception as e:  # noqa: BLE001 - the report is written; MLflow is a view of it
        say(f"MLflow: the analysis is not logged ({why(e)})")
        return
    if not holding:
        looked = ", ".join(f"{uri} ({where})" for uri, where in stores)
        say(f"MLflow: no active experiment {sweeps[0]!r} in {looked} (a sweep's experiment is its name; `drmfm train` records to "
            "'train'): the analysis is not logged")
        return
    uri, where = holding[0]
    try:
        run, warning = log_analysis(uri, sweeps[0], done.out, done.files, {"configurations": len(done.summary), "runs_ok": done.runs_ok})
    except Exception as e:  # noqa: BLE001 - the report is written; MLflow is a view of it
        say(f"MLflow at {uri}: the analysis is not logged ({why(e)})")
        return
    print(f"mlflow:  run 'analysis' ({run}) in experiment {sweeps[0]!r} at {uri} (found from {where})")
    if warning:
        say(f"MLflow at {uri}: warning: {warning}")


def log_analysis(uri: str, experiment: str, out: str, files: list[str], metrics: dict[str, float]) -> tuple[str, str | None]:
    """Log `files` (paths under the analysis folder `out`) to a new "analysis" run of `experiment`,
    then delete the analysis runs it replaces; (the new run's id, what could not be cleaned up).
    A failure to log leaves the earlier run as it was (the new one is deleted)."""
    from mlflow.entities import Metric, ViewType
    from mlflow.tracking import MlflowClient

    from pipeline.tracking import _owner_tags, _quiet

    _quiet()
    client = MlflowClient(uri)
    found = _experiment(uri, experiment)
    if found is None:
        raise LookupError(f"no active experiment {experiment!r}")
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
        now = int(time.time() * 1000)
        client.log_batch(run, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        client.set_terminated(run, "FINISHED")
    except BaseException:
        client.set_terminated(run, "FAILED")
        client.delete_run(run)
        raise
    try:
        for old in earlier:
            client.delete_run(old.info.run_id)
            _remove_local(old.info.artifact_uri, old.info.run_id)
    except Exception as e:  # noqa: BLE001 - the new run stands; the old one is said, not hidden
        return run, f"the analysis it replaces was not deleted ({why(e)})"
    return run, None


def _remove_local(artifact_uri: str | None, run_id: str) -> None:
    """A replaced run's artifacts, where they are a local folder (a server's are its to collect),
    with the run's own folder (<location>/<run_id>/artifacts) that held them."""
    if artifact_uri and artifact_uri.startswith("file://"):
        folder = Path(urllib.parse.unquote(urllib.parse.urlparse(artifact_uri).path))
        mine = folder.name == "artifacts" and folder.parent.name == run_id
        shutil.rmtree(folder.parent if mine else folder, ignore_errors=True)


def why(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"
