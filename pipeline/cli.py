"""The `drmfm` command line.

Every command checks its input before any heavy import (torch among them), and bad input exits 2
with one line naming the field and what is allowed.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from drm.config import ConfigError, TrainConfig
from drm.problems import PROBLEMS
from pipeline._cli_input import BadInput, check_device, check_folder, check_ntk_memory, check_train_memory, home_dir, parse_fourier, parse_seeds
from pipeline.spec import SpecError

app = typer.Typer(
    name="drmfm",
    help="Deep Ritz studies of microstructure: Fourier-feature networks trained as packed multi-seed models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# Typer raises its own click's errors (vendored in recent typer, the click package in older ones).
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@app.command()
def problems() -> None:
    """List the problems with their equation and the paper's defaults."""
    for p in PROBLEMS.values():
        print(f"{p.name}  ({p.label})")
        print(f"    {p.equation}")
        print(
            f"    {p.dim}D; defaults: activation {p.default_activation}, map {p.default_fourier_map}, "
            f"{p.default_batch} interior + {p.default_boundary_batch} boundary points per step, "
            f"{p.default_epochs:,} epochs"
        )


@app.command()
def train(
    problem: Annotated[str, typer.Option(help=f"One of: {', '.join(PROBLEMS)}.")] = "double_well",
    depth: Annotated[int, typer.Option(help="Hidden layers (the paper's '3 × 128' is depth 3).")] = 3,
    width: Annotated[int, typer.Option(help="Neurons per hidden layer.")] = 128,
    activation: Annotated[
        str | None, typer.Option(help="relu | smooth_abs | smooth_relu | tanh [default: relu in 1D, smooth_abs in 2D]")
    ] = None,
    rho: Annotated[float, typer.Option(help="ρ of the smooth activations sqrt(z²+ρ²).")] = 0.1,
    fourier: Annotated[str, typer.Option(help="'none' (plain DRM) or I: frequency 2^I·π.")] = "none",
    fourier_map: Annotated[
        str | None, typer.Option(help="sincos | x_sincos [default: sincos in 1D, x_sincos in 2D]")
    ] = None,
    epsilon: Annotated[float, typer.Option(help="ε of the regularisation ε²·u_xx² (1D) or ε²·u_yy² (2D).")] = 0.0,
    epochs: Annotated[int | None, typer.Option(help="Optimiser steps [default: the paper's for the problem].")] = None,
    lr: Annotated[float, typer.Option(help="Initial Adam learning rate (cosine annealing to 0).")] = 1e-4,
    penalty: Annotated[float, typer.Option(help="Boundary penalty λ.")] = 500.0,
    batch: Annotated[int | None, typer.Option(help="Interior points per step [default: 128 in 1D, 600 in 2D].")] = None,
    boundary_batch: Annotated[int | None, typer.Option(help="Boundary points per step, 2D [default: 400].")] = None,
    seeds: Annotated[int | None, typer.Option(help="Train seeds 0..S-1 together as one packed model [default: 1].")] = None,
    seed_list: Annotated[str | None, typer.Option(help="Explicit seeds, e.g. 0,3,7.")] = None,
    fixed_points: Annotated[bool, typer.Option("--fixed-points", help="Sample the points once and keep them.")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32 | float64.")] = "float32",
    home: Annotated[Path | None, typer.Option(help="Home folder [default: $DRMFM_HOME or ./drmfm-home].")] = None,
    no_mlflow: Annotated[
        bool, typer.Option("--no-mlflow", help="Do not record to MLflow (experiment 'train'); the tables are written.")
    ] = False,
) -> None:
    """Train the seeds of one configuration together; print one line per seed and write its tables."""
    config = TrainConfig(
        problem=problem,
        depth=depth,
        width=width,
        activation=activation,
        rho=rho,
        fourier=parse_fourier(fourier),
        fourier_map=fourier_map,
        epsilon=epsilon,
        epochs=epochs,
        lr=lr,
        penalty=penalty,
        batch=batch,
        boundary_batch=boundary_batch,
        resample=not fixed_points,
        dtype=dtype,
    ).resolve()
    seed_values = parse_seeds(seeds, seed_list)
    check_device(device)
    check_train_memory(config, len(seed_values), device)
    from pipeline.train_command import run_train

    code = run_train(config, seed_values, device=device, home=home_dir(home), mlflow=not no_mlflow)
    raise typer.Exit(code)


@app.command()
def bench(
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    dtype: Annotated[str, typer.Option(help="float32 | float64.")] = "float32",
    seconds: Annotated[float, typer.Option(help="Minimum timed seconds per measurement.")] = 2.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (INTERFACE.md).")] = False,
    fuse: Annotated[bool, typer.Option("--fuse/--no-fuse", help="Fuse the packed step's elementwise passes (torch.compile).")] = True,
    tune: Annotated[bool, typer.Option("--tune/--no-tune", help="Time the CPU's member chunks (else the fixed 12 MiB rule).")] = True,
) -> None:
    """Training throughput: reference vs packed trainer (K = 1, 8, 64; 256 on a GPU), vs the matmul peak; --no-fuse, --no-tune."""
    from pipeline._cli_input import check_bench
    from pipeline.bench import run_bench
    from pipeline.trial import resolve_device

    check_bench(device, dtype, seconds)
    result = run_bench(
        resolve_device(device), dtype=dtype, min_seconds=seconds, fuse=fuse, tune=tune, progress=lambda m: print(f"bench: {m}", file=sys.stderr)
    )
    if as_json:
        print(json.dumps(result))
        return
    from pipeline.train_command import print_bench

    print_bench(result)


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML); see sweeps/.")],
    quick: Annotated[bool, typer.Option("--quick", help="Run the spec's quick: overrides as <name>-quick.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the sweep of this name (same spec).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate; print trials, seeds and trial-steps.")] = False,
    address: Annotated[str | None, typer.Option(help="Ray cluster to join: auto or HOST:PORT [default: a local Ray].")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder [default: $DRMFM_HOME or ./drmfm-home].")] = None,
    storage: Annotated[
        str | None,
        typer.Option(help="Where every node keeps ray/ and results/: a shared (NFS) folder or s3://bucket/prefix [default: the home]."),
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI [default: $MLFLOW_TRACKING_URI or HOME/mlflow.db].")] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not record to MLflow (the tables are written).")] = False,
) -> None:
    """Run a sweep: trials spread by Ray Tune, searched by Optuna, recorded in MLflow and Parquet."""
    from pipeline.spec import load_spec
    from pipeline.sweep import describe

    parsed = load_spec(spec)
    if quick:
        if parsed.quick is None:
            raise BadInput("quick: the spec has no quick: section; allowed: add one, or run without --quick")
        parsed = parsed.with_quick()
    if dry_run:
        print(describe(parsed))
        return
    from pipeline.sweep import run_sweep

    code = run_sweep(
        parsed, home=home_dir(home), resume=resume, address=address, storage=storage, tracking_uri=tracking_uri, mlflow=not no_mlflow
    )
    raise typer.Exit(code)


@app.command()
def status(
    name: Annotated[str | None, typer.Argument(help="One sweep [default: all in the home].")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder [default: $DRMFM_HOME or ./drmfm-home].")] = None,
    storage: Annotated[str | None, typer.Option(help="The --storage the sweeps ran with (folder or s3://…).")] = None,
) -> None:
    """The sweeps in the home: trials done / failed / started, of the total."""
    from drm.storage import first_line
    from pipeline.status import sweep_status
    from pipeline.sweep import storage_root

    root = storage_root(home_dir(home), storage)
    try:
        rows = sweep_status(root, name)
    except OSError as e:
        raise BadInput(f"storage: {root.show()} cannot be read ({first_line(e)})") from None
    if not rows:
        field = "storage" if storage else "home"
        raise BadInput(f"name: no sweep {name!r} in {root.show()}" if name else f"{field}: no sweeps in {root.show()}")
    for r in rows:
        if "unreadable" in r:
            print(f"{r['name']}: cannot be counted: {r['unreadable']}")
            continue
        invalid = f", {r['invalid']} unreadable (quarantined by the next --resume)" if r["invalid"] else ""
        running = f"; running: {r['running']}" if r["running"] else ""
        print(
            f"{r['name']}: {r['done']}/{r['total']} trials done, {r['failed']} failed{invalid}, {r['started']} started "
            f"({r['problem']}, {r['seeds']} seeds each){running}"
        )


def _need_analysis_extra() -> None:
    from importlib.util import find_spec

    missing = [m for m in ("pandas", "scipy", "statsmodels", "seaborn") if find_spec(m) is None]
    if missing:
        raise BadInput(f"install: the analysis needs {', '.join(missing)}; allowed: pip install 'drmfm[analysis]'")


@app.command()
def analyze(
    results: Annotated[list[str], typer.Argument(help="One or more results folders (HOME/results/<sweep>, or s3://…).")],
    out: Annotated[str | None, typer.Option(help="Where the report goes [default: <first>/analysis].")] = None,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow store to log the analysis to [default: the first of HOME/mlflow.db (the home of the results) "
             "and $MLFLOW_TRACKING_URI that holds the sweep's experiment].")] = None,
    no_mlflow: Annotated[bool, typer.Option("--no-mlflow", help="Do not log the analysis to MLflow.")] = False,
) -> None:
    """Statistics of band counts: summary.csv, effects.csv, reproduction.csv, figures/ and report.md,
    logged to a run named "analysis" in the sweep's MLflow experiment (one sweep's results)."""
    _need_analysis_extra()
    if out is not None and "://" not in out:
        check_folder("out", Path(out))
    from analysis.analyze import analyze as run_analysis

    def say(line: str) -> None:
        print(f"analyze: {line}", file=sys.stderr, flush=True)

    done = run_analysis(results, out, progress=say)
    print(f"report:  {done.out}/report.md")
    print(f"tables:  {done.out}/summary.csv, effects.csv, reproduction.csv")
    print(f"figures: {done.out}/figures/ ({len(done.figures)})")
    if no_mlflow:
        say("--no-mlflow: the analysis is not logged to MLflow")
    else:
        from pipeline.analysis_run import record

        record(results, done, tracking_uri, say)


@app.command()
def recount(
    results: Annotated[list[str], typer.Argument(help="One or more results folders (HOME/results/<sweep>, or s3://…).")],
    threshold: Annotated[list[float] | None, typer.Option(
        "--threshold", help="Hysteresis half-width τ to count at; repeat for several [default: each row's own, 0.1].")] = None,
    grid: Annotated[int | None, typer.Option(
        help="Nodes of the counting grid (1D) or of each counting line (2D; bands stay on the 257² grid) [default: each row's own].")] = None,
    out: Annotated[str | None, typer.Option(help="Where <sweep>.parquet goes [default: <RESULTS>/recount].")] = None,
) -> None:
    """Transitions, transitions per period, walls and bands again, from the stored weights, at other τ and grids."""
    from pipeline.recount import RecountError
    from pipeline.recount import recount as run_recount

    if out is not None and "://" not in out:
        check_folder("out", Path(out))
    try:
        written = run_recount(results, threshold, grid, out, progress=lambda line: print(f"recount: {line}", file=sys.stderr, flush=True))
    except RecountError as e:
        raise BadInput(str(e)) from None
    for where, rows in written:
        print(f"recount: {rows} rows -> {where}")


@app.command()
def reference(
    problem: Annotated[str, typer.Option(help="Problem (see drmfm problems).")],
    epsilon: Annotated[float, typer.Option(help="ε of the regularisation (0: P1, P2, P3; > 0 with twin_branching: P4).")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the table as one JSON object.")] = False,
    home: Annotated[Path | None, typer.Option(help="Home folder; references/ caches the tables [default: $DRMFM_HOME or ./drmfm-home].")] = None,
) -> None:
    """The classical minimiser's energy per count of transitions (finite differences, Newton), and the best."""
    if problem not in PROBLEMS:
        raise BadInput(f"problem: unknown {problem!r}; allowed: {', '.join(PROBLEMS)}")
    if not (epsilon >= 0 and epsilon < float("inf")):
        raise BadInput(f"epsilon: {epsilon} is not allowed; allowed: a finite number >= 0")
    if not PROBLEMS[problem].mirror_symmetric:
        raise BadInput(f"problem: {problem} declares no mirror-symmetric density, so it has no classical reference")
    from drm.classical.judge import cache_folder

    cache = cache_folder(home_dir(home))
    check_folder("home", cache)
    try:
        import scipy  # noqa: F401
    except ImportError:
        raise BadInput("reference: needs scipy (pip install 'drmfm[analysis]')") from None
    from drm.classical import reference as solve_reference

    print(f"reference: solving {problem} at ε = {epsilon:g} (cached in {cache})", file=sys.stderr, flush=True)
    def solved(row: dict) -> None:
        print(f"reference: {row['transitions']} transitions: energy {row['energy']:.6g} ({row['grid'] or 'u ≡ 0'})", file=sys.stderr, flush=True)

    found = solve_reference(PROBLEMS[problem], epsilon, cache, progress=solved)
    if as_json:
        print(json.dumps(found.as_json()))
        return
    label = "bands along y at x = 0.5, less one" if PROBLEMS[problem].dim == 2 else "kinks"
    print(f"{problem} at ε = {epsilon:g}: transitions ({label}), energy, its change at the last refinement, grid")
    for r in found.rows:
        flags = ("" if r["held"] else "  (did not hold its transitions)") + ("  (capped)" if r["capped"] else "") + (
            "" if r["converged"] else "  (Newton did not converge: an upper bound)")
        error = "" if r["error"] != r["error"] else f"{r['error']:.1e}"
        print(f"{r['transitions']:>5}  {r['energy']:.6g}  {error:>8}  {r['grid']}{flags}")
    best = found.best
    print("best: none (no minimiser at ε = 0: finer profiles lower the energy)" if best is None
          else f"best: {best['transitions']} transitions, energy {best['energy']:.6g}")


@app.command()
def ntk(
    problem: Annotated[str, typer.Option(help="Problem (see drmfm problems).")] = "double_well",
    depth: Annotated[int, typer.Option(help="Hidden layers.")] = 3,
    width: Annotated[int, typer.Option(help="Neurons per hidden layer.")] = 128,
    fourier: Annotated[str, typer.Option(help="The map to compare with plain DRM: I (frequency 2^I·π).")] = "2",
    points: Annotated[int, typer.Option(help="Grid points N (the Gram matrices are N×N and 2N×2N).")] = 256,
    seed: Annotated[int, typer.Option(help="First seed of the initial weights.")] = 0,
    seeds: Annotated[int, typer.Option(help="Seeds to average over (seed, seed+1, …): α is reported with their spread.")] = 3,
    fit_from: Annotated[int, typer.Option(help="First k of the decay fit.")] = 2,
    fit_to: Annotated[int | None, typer.Option(help="Last k of the decay fit [default: N/8].")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder [default: $DRMFM_HOME or ./drmfm-home].")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder [default: HOME/ntk/<problem>-d<depth>-i<I>].")] = None,
) -> None:
    """Empirical NTK spectra at initialisation, with the map and without: eigenvalues, decay exponents, a log-log figure."""
    if problem not in PROBLEMS:
        raise BadInput(f"problem: unknown {problem!r}; allowed: {', '.join(PROBLEMS)}")
    i = parse_fourier(fourier)
    for name, value, low in (("depth", depth, 1), ("width", width, 1), ("points", points, 8), ("fit-from", fit_from, 1), ("seeds", seeds, 1)):
        if value < low:
            raise BadInput(f"{name}: {value} is not allowed; allowed: an integer >= {low}")
    if points > NTK_MAX_POINTS:
        raise BadInput(f"points: {points} is not allowed; allowed: 8..{NTK_MAX_POINTS} (the block kernel is 2N × 2N, eigendecomposed in float64)")
    last = fit_to if fit_to is not None else max(fit_from + 1, points // 8)
    if not fit_from < last <= points:
        raise BadInput(f"fit-to: {last} is not allowed; allowed: fit-from < fit-to <= points ({points})")
    target_dir = out or home_dir(home) / "ntk" / f"{problem}-d{depth}-i{'none' if i is None else i}"
    check_folder("out", target_dir)
    check_ntk_memory(problem, depth, width, i, points)
    _need_analysis_extra()
    from analysis.ntk import decay_table, describe, k2_claim, seed_table, slopes_table, spectra, spectrum_png, spectrum_table
    from drm.storage import Storage

    target = Storage(target_dir)
    found = spectra(problem, depth, width, i, points, tuple(range(seed, seed + seeds)), fit=(fit_from, last))
    decay = decay_table(found)
    target.write_text(spectrum_table(found).to_csv(index=False), "eigenvalues.csv")
    target.write_text(decay.to_csv(index=False), "decay.csv")
    target.write_text(seed_table(found).to_csv(index=False), "seeds.csv")
    target.write_text(slopes_table(found).to_csv(index=False), "local_slopes.csv")
    title = f"{problem}, depth {depth} × {width}, N = {points}, seeds {seed}..{seed + seeds - 1}: NTK at initialisation"
    target.write_bytes(spectrum_png(found, title), "spectrum.png")
    for row in decay.itertuples():
        print(describe(row))
    claim = k2_claim(decay)
    if claim:
        print(claim)
    print(f"written: {target.show()}/eigenvalues.csv, decay.csv, seeds.csv, local_slopes.csv, spectrum.png")


NTK_MAX_POINTS = 4096  # 8192² Gram: 0.5 GiB, and an eigendecomposition of minutes on 2 cores


@app.command()
def ui(
    name: Annotated[str | None, typer.Argument(help="A sweep to open on its runs [default: the list of sweeps].")] = None,
    home: Annotated[Path | None, typer.Option(help="Home folder [default: $DRMFM_HOME or ./drmfm-home].")] = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 5000,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the runs view in the default browser once it answers.")] = False,
) -> None:
    """The MLflow UI on 127.0.0.1 over the home's store, opened on a sweep's runs (Ctrl-C stops it)."""
    where = home_dir(home)
    store = where / "mlflow.db"
    if not store.is_file():
        raise BadInput(f"home: no MLflow store at {store}; run a sweep first")
    if not 0 < port < 65536:
        raise BadInput(f"port: {port} is not allowed; allowed: 1..65535")
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise BadInput(f"port: {port} on 127.0.0.1 is taken ({e.strerror}); allowed: a free port (--port)") from None
    from pipeline.ui import UiFailed, serve, sweep_url

    url = sweep_url(store, name, f"http://127.0.0.1:{port}")
    print(f"MLflow UI: starting on 127.0.0.1:{port} (store {store}, one worker)", flush=True)

    def ready(line: str) -> None:
        print(line, flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    try:
        code = serve(store, where / "mlartifacts", port, url, ready)
    except UiFailed as e:
        print(f"drmfm: error: {e}", file=sys.stderr)
        code = 1
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: exit 0 done, 1 some seeds failed, 2 bad input (one line, no traceback)."""
    from pipeline.tracking import quiet_mlflow

    quiet_mlflow()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="drmfm", standalone_mode=False)
    except _UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `drmfm`: the help, not an error
            print(e.ctx.get_help() if e.ctx else e.format_message())
            code = 0
        else:
            print(f"drmfm: error: {e.format_message()}", file=sys.stderr)
            code = 2
    except (BadInput, ConfigError, SpecError) as e:
        print(f"drmfm: error: {e}", file=sys.stderr)
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        print("drmfm: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
