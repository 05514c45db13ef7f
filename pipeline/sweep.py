"""`drmfm sweep`: a spec → Optuna search space → Ray Tune → MLflow and Parquet tables.

The driver validates everything first. It refuses a name that exists (unless --resume, which
refuses a changed spec). It creates the MLflow store and experiment, then runs the Tuner with
the packed trial of `pipeline.tune_trial`. Ray is local by default (a bounded object store), or
the cluster at --address.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

import pyarrow as pa

from pipeline.spec import SpecError, SweepSpec
from pipeline.storage import Storage
from pipeline.tables import read_replicates

SPEC_FILE = "drmfm-spec.json"


class SweepRefused(SpecError):
    """The sweep cannot start as asked (exists, changed, missing): exit 2."""


def storage_root(home: Path, storage: str | None) -> Storage:
    """Where a sweep keeps `ray/<name>` and `results/<name>`: the home, or --storage (a shared
    folder or an object store)."""
    try:
        return Storage(home if storage is None else storage)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise SpecError("storage", f"{storage!r} cannot be opened ({e}); allowed: a folder, or a URI pyarrow opens (s3://bucket/prefix, gs://…)") from None


def describe(spec: SweepSpec) -> str:
    steps, exact = spec.trial_steps()
    packed = ""
    if spec.pack:
        per_trial = len(spec.grid_points(list(spec.pack)))
        packed = f" × {per_trial} packed configurations ({', '.join(spec.pack)})"
    return (
        f"sweep {spec.name}: {spec.num_trials} trials{packed} × {spec.seeds} seeds, "
        f"{'' if exact else '≈ '}{steps:,} trial-steps ({spec.search.sampler})"
    )


def check_start(spec: SweepSpec, state: Storage, results: Storage, resume: bool) -> None:
    """Refuse (exit 2) a name that exists without --resume, a --resume of nothing, or a changed spec."""
    where = state.show().rsplit("/", 1)[0]
    if not resume and state.exists():
        raise SweepRefused("name", f"sweep {spec.name!r} exists in {where}; allowed: --resume, or a new name")
    if not resume and results.exists():
        raise SweepRefused("name", f"results of a sweep {spec.name!r} exist in {results.show().rsplit('/', 1)[0]}; allowed: --resume, or a new name")
    if resume:
        if not state.is_file(SPEC_FILE):
            raise SweepRefused("--resume", f"no sweep {spec.name!r} in {where} to resume")
        before = json.loads(state.read_bytes(SPEC_FILE))
        if before.get("spec_hash") != spec.spec_hash():
            changed = sorted(k for k in spec.as_dict() if before.get("spec", {}).get(k) != spec.as_dict()[k])
            raise SweepRefused("--resume", f"the spec changed since the sweep started ({', '.join(changed) or 'content'}); allowed: the same spec, or a new name")


def start_ray(address: str | None, cpus: int | None = None) -> bool:
    """Join the cluster at `address`, or start a local Ray for this command. True if local."""
    import ray

    if address:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as e:  # noqa: BLE001 - any failure to join is the user's address
            raise SweepRefused("address", f"cannot join a Ray cluster at {address!r} ({type(e).__name__}); allowed: auto, or a running cluster's HOST:PORT") from None
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local Ray on loopback for this command only
    # Checkpoints are small and frequent by design; Tune's advice about it is noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines, not Tune's tables
    ray.init(
        num_cpus=cpus or os.cpu_count(),
        object_store_memory=256 * 1024**2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    return True


def run_sweep(
    spec: SweepSpec,
    *,
    home: Path,
    resume: bool,
    address: str | None,
    storage: str | None,
    tracking_uri: str | None,
    mlflow: bool,
) -> int:
    """Run (or resume) a sweep; 0 all done, 1 some trials or seeds failed."""
    from pipeline.progress import SweepProgress
    from pipeline.tracking import default_tracking_uri, ensure_experiment, probe

    root = storage_root(home, storage)
    state, results = root.sub("ray", spec.name), root.sub("results", spec.name)
    try:
        check_start(spec, state, results, resume)
    except OSError as e:  # the first touch of --storage: an unreachable store is the user's input
        raise SpecError("storage", f"{root.show()} cannot be reached ({str(e).splitlines()[0][:200]}); allowed: a folder, or a reachable bucket") from None
    home.mkdir(parents=True, exist_ok=True)
    uri = None
    if mlflow:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)
        why = probe(uri)
        if why is None:
            try:
                ensure_experiment(uri, spec.name, home / "mlartifacts" if uri.startswith("sqlite") else None)
            except Exception as e:  # noqa: BLE001 - the tables are the record; MLflow is a view of them
                why = f"{type(e).__name__}: {e}"
        if why is not None:
            print(f"drmfm: warning: MLflow at {uri} cannot be reached ({why}); the sweep goes on, the tables are complete", file=sys.stderr)
            uri = None
    import optuna
    import ray
    from ray import tune
    from ray.tune.search.optuna import OptunaSearch

    # The grid sampler says when the grid is exhausted: with num_samples = grid size, that is the plan.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", message="`Study.stop` is supposed to be invoked")

    from pipeline.recorder import recorder_actor
    from pipeline.samplers import sampler, search_space
    from pipeline.tune_trial import TrialContext, run_tune_trial

    print(describe(spec), file=sys.stderr)
    ray_start = time.perf_counter()
    local = start_ray(address)
    ray_seconds = time.perf_counter() - ray_start
    try:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        resources = {"cpu": spec.resources.cpu}
        if spec.resources.gpu > 0 and (has_gpu or not local):  # only the embedded local Ray drops the GPU ask
            resources["gpu"] = spec.resources.gpu
        # Every row and run is written by one recorder on this node: where this command points.
        recorder = recorder_actor(results, uri, spec.name, spec.name)
        ctx = TrialContext(spec=spec, recorder=recorder, tracking=uri is not None)
        trainable = tune.with_resources(tune.with_parameters(run_tune_trial, ctx=ctx), resources)
        progress = SweepProgress(spec, results, uri)
        run_config = tune.RunConfig(
            name=spec.name,
            **root.tune_location("ray"),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
            callbacks=[progress],
        )
        located = state.tune_location()
        if resume and tune.Tuner.can_restore(located["storage_path"], storage_filesystem=located.get("storage_filesystem")):
            tuner = tune.Tuner.restore(located["storage_path"], trainable, resume_errored=True, storage_filesystem=located.get("storage_filesystem"))
        else:  # a new sweep, or one killed before Tune first saved its state: start it (again)
            metric = list(spec.objective.metric)
            mode = list(spec.objective.mode)
            single = len(metric) == 1
            searcher = OptunaSearch(
                space=search_space(spec),
                metric=metric[0] if single else metric,
                mode=mode[0] if single else mode,
                sampler=sampler(spec),
                seed=None,
            )
            scheduler = None
            if spec.scheduler is not None:
                from ray.tune.schedulers import ASHAScheduler

                scheduler = ASHAScheduler(
                    metric=metric[0], mode=mode[0], time_attr="step", max_t=spec.trial_config(spec._corners()[0]).epochs,
                    grace_period=spec.scheduler.grace_period, reduction_factor=spec.scheduler.reduction_factor,
                )
            tuner = tune.Tuner(
                trainable,
                # reuse_actors: a trial process serves trial after trial (torch imported once).
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=spec.num_trials, reuse_actors=True),
                run_config=run_config,
            )
            state.write_text(json.dumps({"spec_hash": spec.spec_hash(), "spec": spec.as_dict()}, indent=1), SPEC_FILE)
        slots = max(1, min(spec.num_trials, int(ray.cluster_resources().get("CPU", 1) // spec.resources.cpu)))
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
        try:  # a tracking store lost mid-sweep, said once
            failure = ray.get(recorder.tracking_failure.remote(), timeout=30)
        except Exception as e:  # noqa: BLE001 - the recorder died: the tables hold what landed
            failure = f"the sweep's recorder ended early ({type(e).__name__}); trials that did not land are recorded failed"
        if failure is not None:
            print(f"drmfm: warning: {failure}", file=sys.stderr)
    finally:
        if local:
            ray.shutdown()
    _overhead(grid, wall, ray_seconds, slots)
    _record_failures(spec, grid, results, uri)
    return _summary(spec, grid, results, state, wall, uri, home)


def _record_failures(spec: SweepSpec, grid, results: Storage, uri: str | None) -> None:
    """A trial whose retries are spent gets rows too (its configuration, status `failed`, its
    error), and its MLflow runs end FAILED (a killed trial could not end them itself)."""
    from pipeline.recorder import Recorder
    from pipeline.tables import committed
    from pipeline.trial import failed_rows
    from pipeline.tune_trial import trial_labels

    done = committed(results)
    recorder = Recorder(results, uri, spec.name, spec.name)
    for result in grid:
        if result.error is None:
            continue
        folder = result.path.rstrip("/").rsplit("/", 1)[-1]
        match = re.match(r"run_tune_trial_([0-9a-f]+)_", folder)
        configs = spec.trial_configs({k: result.config[k] for k in spec.searched})
        error = (str(result.error).strip().splitlines() or ["unknown error"])[-1][:500]
        for trial_id, config in zip(trial_labels(spec, match.group(1) if match else folder, len(configs)), configs):
            if trial_id not in done:
                recorder.record_failed(trial_id, failed_rows(config, list(range(spec.seeds)), sweep=spec.name, trial_id=trial_id, error=error))


def _overhead(grid, wall: float, ray_seconds: float, slots: int) -> None:
    """Where the wall time went: Ray's start, each trial's time outside training, the trials' share."""
    finished = [r.metrics for r in grid if r.metrics and "trained_seconds" in r.metrics]
    if not finished or wall <= 0:
        return
    trained = sum(m["trained_seconds"] for m in finished)
    outside = sum(m.get("time_total_s", 0.0) - m["trained_seconds"] for m in finished) / len(finished)
    print(
        f"overhead: Ray up in {ray_seconds:.1f} s; per trial {outside:.1f} s outside training (start, measure, tables, MLflow); "
        f"training filled {trained / (wall * slots):.0%} of {slots} slot(s) × {wall:.0f} s",
        file=sys.stderr,
    )


def _summary(spec: SweepSpec, grid, results: Storage, state: Storage, wall: float, uri: str | None, home: Path) -> int:
    errors = [r for r in grid if r.error is not None]
    rows = read_replicates(results) if results.exists() else None
    statuses = rows.column("status").to_pylist() if rows is not None else []
    stopped = {t for t, st in zip(rows.column("trial_id").to_pylist(), statuses) if st == "stopped"} if rows is not None else set()
    trained = sum(r.metrics.get("trained_seconds", 0.0) for r in grid if r.metrics)
    diverged = statuses.count("diverged")
    early = f", {len(stopped)} stopped early by the scheduler" if stopped else ""
    print(
        f"{spec.name}: {len(grid) - len(errors) - len(stopped)} of {len(grid)} trials finished{early} in {wall:.0f} s "
        f"({trained:.0f} s of training); {len(statuses)} seed rows, {diverged} diverged",
        file=sys.stderr,
    )
    print(f"tables:  {results.show()}")
    print(f"ray:     {state.show()}")
    if uri is not None:
        print(f"mlflow:  {uri}  (open the UI: drmfm ui --home {home})")
    problems = []
    if errors:
        problems.append(f"{len(errors)} trial(s) failed: {'; '.join(str(r.error).splitlines()[0][:120] for r in errors[:3])}")
    if diverged:
        problems.append(f"{diverged} seed(s) diverged (status 'diverged' in the tables)")
    if problems:
        print("drmfm: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0
