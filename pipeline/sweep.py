"""`drmfm sweep`: a spec → Optuna search space → Ray Tune → MLflow and Parquet tables.

The driver, top to bottom:
1. checks that the home (or --storage) takes writes, and takes the sweep's lease (one driver per
   sweep; a second exits 2 naming the holder);
2. refuses a name that exists (unless --resume, which refuses a changed spec), a request this
   machine cannot meet, a step that cannot fit in memory;
3. on --resume, checks every committed table file, quarantines what is not valid and removes
   what an interrupted write left (`pipeline.reconcile`);
4. creates the MLflow store and experiment, and ends runs left RUNNING by dead processes;
5. starts a local Ray on loopback (or joins --address), and runs the search, then the repair of
   whatever configuration still has no rows (`pipeline.tuning`);
6. checks the tables again, ends every run of the sweep that is still RUNNING, and counts the
   rows against configurations × seeds: exit 0 when all landed, 1 when anything failed, diverged
   or is missing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

import pyarrow as pa

from drm.autotune import TUNING_FILE
from drm.classical.judge import cache_folder
from drm.storage import Storage, first_line
from pipeline.lease import Lease
from pipeline.reconcile import Inventory, group_by_config, inspect, ledger, repair, search_trials
from pipeline.run_names import Layout
from pipeline.spec import SpecError, SweepSpec

SPEC_FILE = "drmfm-spec.json"
RESULTS_SPEC = "spec.json"  # beside the tables (results/<sweep>/spec.json)


class SweepRefused(SpecError):
    """The sweep cannot start as asked (exists, changed, missing): exit 2."""


def storage_root(home: Path, storage: str | None) -> Storage:
    """Where a sweep keeps `ray/<name>` and `results/<name>`: the home, or --storage (a shared
    folder or an object store)."""
    try:
        return Storage(home if storage is None else storage)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise SpecError("storage", f"{storage!r} cannot be opened ({e}); "
                                   "allowed: a folder, or a URI pyarrow opens (s3://bucket/prefix, gs://…)") from None


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
        try:
            before = json.loads(state.read_bytes(SPEC_FILE))
        except ValueError:
            raise SweepRefused("--resume", f"{state.show(SPEC_FILE)} is not readable; allowed: a new name") from None
        if before.get("spec_hash") != spec.spec_hash():
            changed = sorted(k for k, v in spec.hashed().items() if before.get("spec", {}).get(k) != v)
            what = ", ".join(changed) or "content"
            raise SweepRefused("--resume", f"the spec changed since the sweep started ({what}); allowed: the same spec, or a new name")


def check_capacity(spec: SweepSpec, local: bool) -> None:
    """This machine's CPUs and GPUs against a trial's request (local Ray), and a step's memory against this
    machine's (every point of the space; a cluster's nodes are not known here)."""
    from drm.config import ConfigError
    from pipeline.resources import check_local_request, check_step_memory
    from pipeline.tune_trial import pack_groups

    if not local:
        return
    check_local_request(spec.resources.cpu, spec.resources.gpu)
    for point in spec.grid_points(list(spec.searched)) if spec.is_grid else spec.corners():
        configs = spec.trial_configs({k: point[k] for k in spec.searched})
        for group in pack_groups(configs):
            largest = max((configs[j] for j in group), key=lambda c: c.needs_u2)  # u_2 is one more stream
            try:
                check_step_memory(largest, spec.seeds * len(group), "cpu", "width/seeds")
            except ConfigError as e:
                raise SpecError(e.field, f"{e.message} (at {', '.join(f'{k}={v}' for k, v in point.items())})") from None


def expected(spec: SweepSpec, results: Storage, landed: dict[str, object] | None = None) -> dict[str, dict | None]:
    """config_hash -> searched point of every configuration the sweep must land: the whole grid, or the
    configurations its sampled trials reported (the ledger) and any that have rows (point None)."""
    if spec.search.sampler == "grid":
        return {c.config_hash(): p for p in spec.grid_points(list(spec.searched)) for c in spec.trial_configs(p)}
    return {**dict.fromkeys(landed or {}), **group_by_config(ledger(results))}


def missing_points(spec: SweepSpec, results: Storage, landed: dict[str, bool], failed_now: set[str]) -> list[dict]:
    """The searched points with a configuration that has no rows, or only the failed rows of an
    earlier run (not those of trials that failed in this one: their retries are spent). Each point once.
    `landed`: config_hash -> whether its rows stand (the recorder's index)."""
    out: dict[str, dict] = {}
    for config_hash, point in expected(spec, results, landed).items():
        if point is not None and (config_hash not in landed or (not landed[config_hash] and config_hash not in failed_now)):
            out.setdefault(json.dumps(point, sort_keys=True, default=str), point)
    return list(out.values())


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
    """Run (or resume) a sweep; 0 all landed, 1 some trials or seeds failed, diverged or are missing."""
    from pipeline.ray_session import check_address
    from pipeline.sweep_report import Outcome, report_repairs, summary

    check_capacity(spec, local=address is None)
    if address is not None:
        check_address(address)
    root = storage_root(home, storage)
    state, results = root.sub("ray", spec.name), root.sub("results", spec.name)
    lease = Lease(root, spec.name)
    with _reaching(root):  # the first touches of the storage: failing here is the user's input (exit 2)
        root.require_writable("storage" if storage else "home")
        if storage is not None:  # the home still keeps the MLflow store
            _check_home(home)
        lease.acquire()
    uri, outcome = None, Outcome()
    try:
        with _reaching(root):
            check_start(spec, state, results, resume)
        if lease.took_over is not None:
            print(f"drmfm: took over the lease of {lease.took_over.describe()}: it is gone", file=sys.stderr)
        lease.keep_renewed()
        by = f"{lease.token[:8]} ({os.getpid()})"
        try:
            found = repair(results, spec.seeds, by) if resume else Inventory()
            report_repairs(found)
            home.mkdir(parents=True, exist_ok=True)
            uri = _tracking(spec, home, tracking_uri) if mlflow else None
            outcome = _run(spec, root, state, results, uri, resume, address, lease, found, home)
        except OSError as e:  # the storage failed mid-run: what committed stays, --resume finishes
            outcome.stopped = outcome.stopped or f"the storage failed ({first_line(e)})"
        lease.on_lost = None
        outcome.stopped = outcome.stopped or lease.lost
        try:
            # Checked again now that nothing writes; a driver that lost its lease only reads (another holds the sweep).
            final = inspect(results, spec.seeds) if lease.lost else _final_check(results, spec.seeds, by, outcome)
            if uri is not None and not lease.lost:
                _settle_runs(spec, uri, results, final)
            return summary(spec, final, expected(spec, results, final.by_config()), outcome, state, results, uri, home)
        except OSError as e:
            print(f"drmfm: the storage failed ({first_line(e)}): {results.show()} cannot be counted now; "
                  "what committed is kept, --resume finishes the rest", file=sys.stderr)
            return 1
    finally:
        lease.release()


def _check_home(home: Path) -> None:
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SpecError("home", f"{home} cannot be made ({first_line(e)}); allowed: a writable folder") from None
    Storage(home).require_writable("home")


@contextlib.contextmanager
def _reaching(root: Storage):
    """OSError on the first touches of --storage (unreachable, unwritable) as one line, exit 2."""
    try:
        yield
    except OSError as e:
        raise SpecError("storage", f"{root.show()} cannot be reached ({first_line(e)}); allowed: a folder, or a reachable bucket") from None


def _final_check(results: Storage, seeds: int, by: str, outcome) -> Inventory:
    """The tables checked once more at the end (nothing writes now); a storage that refuses the
    repair still gets checked, read-only."""
    from pipeline.sweep_report import report_repairs

    if not results.exists():
        return Inventory()
    try:
        final = repair(results, seeds, by)
    except OSError as e:
        outcome.stopped = outcome.stopped or f"the storage failed ({first_line(e)})"
        return inspect(results, seeds)
    report_repairs(final)
    return final


def _tracking(spec: SweepSpec, home: Path, tracking_uri: str | None) -> str | None:
    """The MLflow store and the sweep's experiment, or None (said once) when it cannot be used."""
    from pipeline.tracking import default_tracking_uri, prepare

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(home)
    why = prepare(uri, spec.name, home / "mlartifacts" if uri.startswith("sqlite") else None, Layout.of(spec).view())
    if why is not None:
        print(f"drmfm: warning: MLflow at {uri} cannot be reached ({why}); the sweep goes on, the tables are complete", file=sys.stderr)
        return None
    return uri


def _settle_runs(spec: SweepSpec, uri: str, results: Storage, final: Inventory) -> None:
    from pipeline.tracking import Tracker

    try:
        Tracker(uri, spec.name, spec.name, layout=Layout.of(spec)).settle(results, final)
    except Exception as e:  # noqa: BLE001 - tracking never costs the sweep its exit code
        print(f"drmfm: warning: MLflow at {uri}: runs not settled ({type(e).__name__})", file=sys.stderr)


def _run(spec: SweepSpec, root: Storage, state: Storage, results: Storage, uri: str | None, resume: bool, address: str | None, lease,
         found: Inventory, home: Path):
    """Ray up, the search and the repair, Ray down: what happened (pipeline.sweep_report.Outcome)."""
    from pipeline.ray_session import ask, join, prepare_local, quiet_tune, start_local

    local = address is None
    if local:
        prepare_local()  # before ray is first imported: every server it starts binds 127.0.0.1
    quiet_tune()
    import optuna
    import ray

    from pipeline.sweep_report import Outcome
    from pipeline.tuning import close_session, open_session

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Tune logs each trial's error, and a failed save of its own state, with their tracebacks, and
    # warns of trials without its result files (a killed one): the sweep says each failure in one
    # line (the traceback stays in the trial's error.txt), and the tables are the record.
    for name in ("ray.tune.execution.tune_controller", "ray.tune.execution.experiment_state", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    ray_start = time.perf_counter()
    guard = start_local() if local else join(address)
    outcome = Outcome(ray_seconds=time.perf_counter() - ray_start)
    recorder = None
    try:
        from pipeline.recorder import control, recorder_actor

        recorder = recorder_actor(results, uri, spec.name, spec.name, found.by_config(), str(cache_folder(home)), Layout.of(spec))
        open_session(spec.name, recorder)
        lease.on_lost = lambda why: control(recorder.abort).remote(why)
        if lease.lost:  # lost before the recorder could hear of it
            control(recorder.abort).remote(lease.lost)
        _search_and_repair(spec, root, state, results, uri, resume, recorder, outcome, local, lease, home / TUNING_FILE)
        outcome.tally = ask(control(recorder.tally).remote(), default=None)
        ended = "the sweep's recorder ended early; trials that did not land are missing"
        outcome.tracking = ask(control(recorder.tracking_failure).remote(), default=ended)
    finally:
        close_session(spec.name)
        if local:
            ray.shutdown()
            guard.close()
        elif recorder is not None:  # on a cluster it would outlive this function: nothing may land during the final check
            ray.kill(recorder, no_restart=True)
    if outcome.tracking:
        print(f"drmfm: warning: {outcome.tracking}", file=sys.stderr)
    return outcome


def _search_and_repair(spec: SweepSpec, root: Storage, state: Storage, results: Storage, uri: str | None, resume: bool, recorder,
                       outcome, local: bool, lease, tuning: Path) -> None:
    """The search (restored, new or rebuilt), the samples it still lacks, then the repair of what has no rows."""
    import ray
    from ray import tune

    from pipeline.progress import SweepProgress
    from pipeline.ray_session import ask
    from pipeline.recorder import control
    from pipeline.sweep_report import record_failures
    from pipeline.tune_trial import TrialContext, run_tune_trial
    from pipeline.tuning import cluster_slots, pending_trials, plan_search, run_config, stop_reason, trial_slots

    resources = {"cpu": spec.resources.cpu}
    if spec.resources.gpu > 0 and (ray.cluster_resources().get("GPU", 0) > 0 or not local):  # only the embedded local Ray drops the GPU ask
        resources["gpu"] = spec.resources.gpu
    trainable = tune.with_resources(tune.with_parameters(run_tune_trial, ctx=TrialContext(spec, recorder, uri is not None, str(tuning))), resources)
    slots = cluster_slots(resources)  # what the pending trials are sized to: an autoscaler's maximum included
    outcome.slots = min(spec.num_trials, trial_slots(resources, ray.cluster_resources()))  # the slots there are now
    start = time.perf_counter()
    print(describe(spec), file=sys.stderr)
    plan = plan_search(spec, trainable, state, results, resume, run_config(spec, root, [SweepProgress(spec)]))
    if plan.note:
        print(f"drmfm: {plan.note}", file=sys.stderr)
    saved = json.dumps({"spec_hash": spec.spec_hash(), "spec": spec.as_dict()}, indent=1)
    if not resume:
        state.write_text(saved, SPEC_FILE)
    results.write_text(saved, RESULTS_SPEC)  # the tables describe themselves: `analyze` reads the space and objective
    failed_now: set[str] = set()

    def fit(tuner, searched: bool = False) -> None:
        """One Tuner's fit; a search's (OptunaSearch) with its pending trials sized to the slots. Then
        the analysis's index of the rows is brought up to date (the fit's new files read once, here)."""
        with pending_trials(spec, slots) if searched else contextlib.nullcontext():
            outcome.errors += record_failures(spec, _fit(tuner, outcome), results, recorder, failed_now)
        _keep_index(results)

    def going() -> bool:
        return outcome.stopped is None and lease.lost is None and stop_reason(spec.name) is None

    if plan.search is not None:
        fit(plan.search, searched=True)
    _fits(spec, root, results, trainable, fit, going, lambda: ask(control(recorder.index).remote(), None), failed_now)
    outcome.wall = time.perf_counter() - start
    outcome.stopped = outcome.stopped or stop_reason(spec.name)


def _fits(spec: SweepSpec, root: Storage, results: Storage, trainable, fit, going, index, failed_now: set[str]) -> None:
    """After the first fit: the next fits' samples until all are drawn (pipeline.tuning.TRIALS_PER_FIT
    trials a fit), then what has no rows (a large grid's points, fit by fit; trials that did not land)
    for as long as each fit lands some of it."""
    from pipeline.progress import SweepProgress
    from pipeline.tuning import chunked_grid, more_samples, repair_tuner, run_config, trials_per_fit

    per_fit = trials_per_fit()
    drawn = None
    while spec.search.sampler != "grid" and going():
        before, drawn = drawn, search_trials(ledger(results))
        if drawn == before:  # a fit none of whose trials started (the recorder gone, say): not drawn again without end
            print("drmfm: a fit started no trial; the samples it lacks are left to --resume", file=sys.stderr)
            break
        more = more_samples(spec, trainable, results, run_config(spec, root, [SweepProgress(spec, before=drawn)]))
        if more is None:
            break
        print(f"drmfm: the next {more[1]} of the {spec.num_trials} samples are drawn (at most {per_fit} trials a fit)", file=sys.stderr)
        fit(more[0], searched=True)
    what = "grid point(s) without rows run" if chunked_grid(spec) else "trial(s) whose rows are missing are trained again"
    before = None
    while going():
        landed = index()
        points = missing_points(spec, results, landed, failed_now) if landed is not None else []
        if not points or (before is not None and len(points) >= before):
            break  # what still lacks rows after a fit that landed none of it is reported, not retried without end
        before = len(points)
        print(f"drmfm: {len(points)} {what}" + (f", {per_fit} in this fit" if len(points) > per_fit else ""), file=sys.stderr)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        config = run_config(spec, root, [SweepProgress(spec, total=min(len(points), per_fit))], spec.name, "repairs", stamp)
        fit(repair_tuner(spec, trainable, points[:per_fit], config))


def _keep_index(results: Storage) -> None:
    """The analysis's snapshot of the rows, up to date (analysis.data.keep_index): derived from the
    tables and checked against each file when read, so a failure costs `drmfm analyze` time, not rows."""
    from analysis.data import keep_index

    try:
        keep_index(results)
    except Exception as e:  # noqa: BLE001 - an unreadable trial file is the repair's (--resume) to quarantine
        print(f"drmfm: warning: the analysis's index of the rows was not brought up to date ({first_line(e)})", file=sys.stderr)


def _fit(tuner, outcome) -> list:
    """One Tuner's fit; a Tune failure (its own state unwritable, …) stops the sweep with one line."""
    try:
        return list(tuner.fit())
    except Exception as e:  # noqa: BLE001 - the tables hold what landed; --resume finishes the rest
        outcome.stopped = f"Ray Tune stopped ({type(e).__name__}: {str(e).strip().splitlines()[-1][:200] if str(e).strip() else ''})"
        return []
