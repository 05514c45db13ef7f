"""An N-trial sweep of tiny trials against a local `mlflow server` on loopback, and what it cost
(issue 16; `benchmarks/scale.sh N`, BENCHMARKS.md "Ten thousand trials"):

- the wall time per trial over the first and the last tenth of the trials to land;
- the driver's peak resident memory (VmHWM of the `drmfm sweep` process; Ray's own processes apart);
- Tune's experiment state, and the bytes per seed of the tables, the MLflow store and its artifacts;
- the recorder's lag: how long after a trial's rows were made its parent run ended, first and last tenth;
- every trial × seed once in the tables and in MLflow;
- the time of `drmfm analyze` over the result (the first, which writes its snapshot of the rows, and a second).

Prints a table and writes the figures as JSON (--json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]


def spec(n: int, seeds: int) -> dict:
    """Tiny 1D trials (20 steps of a width-16 network): the sweep's own costs, not training, dominate."""
    return {"name": "scale", "problem": "double_well", "seeds": seeds,
            "fixed": {"width": 16, "activation": "relu", "batch": 64, "penalty": 500, "fourier_map": "sincos", "epochs": 20},
            "space": {"fourier": [1, 2, 3, 4], "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "depth": [2, 3]},
            "search": {"sampler": "random", "num_samples": n, "seed": 0},
            "objective": {"metric": "energy", "mode": "min", "agg": "median"}, "resources": {"cpu": 1}}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_server(store: Path) -> tuple[subprocess.Popen, str]:
    port = _port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}", "--artifacts-destination", (store / "artifacts").as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return server, uri
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("mlflow server did not answer in 120 s")


def peak_rss(pid: int) -> int:
    """VmHWM of `pid` in bytes (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_sweep(spec_file: Path, home: Path, uri: str) -> dict:
    started = time.perf_counter()
    driver = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sweep", str(spec_file), "--home", str(home), "--tracking-uri", uri],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, samples = [0], []

    def watch() -> None:
        while driver.poll() is None:
            rss = peak_rss(driver.pid)
            peak[0] = max(peak[0], rss)
            samples.append((time.perf_counter() - started, rss))
            time.sleep(1.0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = driver.communicate()
    watcher.join()
    return {"returncode": driver.returncode, "seconds": time.perf_counter() - started, "driver_peak_bytes": peak[0],
            "stderr_tail": err[-2000:], "rss_samples": samples[:: max(1, len(samples) // 50)]}


def tenths(times: np.ndarray) -> tuple[float, float]:
    """Seconds per trial over the first and the last tenth of the landing times (sorted)."""
    t = np.sort(times)
    k = max(2, len(t) // 10)
    return (t[k - 1] - t[0]) / (k - 1), (t[-1] - t[-k]) / (k - 1)


def figures(home: Path, store: Path, n: int, seeds: int) -> dict:
    results = home / "results" / "scale"
    rows = pq.read_table(results / "replicates").to_pandas()
    finished = rows.groupby("trial_id")["finished_at"].max()
    first, last = tenths(finished.astype("int64").to_numpy() / 1e6)
    db = sqlite3.connect(store / "mlflow.db")
    runs = db.execute("select r.run_uuid, r.end_time, t.value from runs r join tags t on t.run_uuid = r.run_uuid "
                      "where t.key = 'role' and r.lifecycle_stage = 'active'").fetchall()
    children = {r[0] for r in runs if r[2] == "child"}
    parents = {r[0]: r[1] for r in runs if r[2] == "parent"}
    lag = (rows.groupby("mlflow_parent_run_id")["finished_at"].max().astype("int64") / 1e3)  # ms
    lag = np.array([parents[p] - t for p, t in lag.items() if p in parents and parents[p]]) / 1e3
    k = max(1, len(lag) // 10)
    order = np.argsort(finished.reindex(rows.groupby("mlflow_parent_run_id")["trial_id"].first()).to_numpy())
    lag_sorted = lag[order[: len(lag)]] if len(lag) == len(order) else np.sort(lag)
    tables = {t: sum(f.stat().st_size for f in (results / t).glob("*")) for t in ("replicates", "curves", "profiles", "weights")}
    artifacts = sum(f.stat().st_size for f in (store / "artifacts").rglob("*") if f.is_file())
    tune_state = sorted((home / "ray" / "scale").glob("experiment_state-*.json"))
    total_seeds = len(rows)
    return {
        "trials_landed": int(rows["trial_id"].nunique()), "seed_rows": total_seeds,
        "each_trial_seed_once_in_tables": bool(len(rows) == n * seeds and not rows.duplicated(["config_hash", "seed"]).any()),
        "each_seed_once_in_mlflow": bool(len(children) == n * seeds and set(rows["mlflow_run_id"]) == children and len(parents) == n),
        "seconds_per_trial_first_tenth": first, "seconds_per_trial_last_tenth": last,
        "recorder_lag_s_first_tenth": float(np.median(lag_sorted[:k])), "recorder_lag_s_last_tenth": float(np.median(lag_sorted[-k:])),
        "recorder_lag_s_max": float(lag.max()) if len(lag) else None,
        "tune_state_bytes": tune_state[-1].stat().st_size if tune_state else None,
        "bytes_per_seed": {**{t: b / total_seeds for t, b in tables.items()},
                           "mlflow_db": (store / "mlflow.db").stat().st_size / total_seeds, "mlflow_artifacts": artifacts / total_seeds},
    }


def analyze(home: Path, out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(home / "results" / "scale"), "--out", str(out), "--no-mlflow"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"drmfm analyze failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trials", type=int)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary folder")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="drmfm-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "scale.yaml").write_text(yaml.safe_dump(spec(args.trials, args.seeds), sort_keys=False))
    store = work / "server"
    store.mkdir(exist_ok=True)
    server, uri = mlflow_server(store)
    try:
        sweep = run_sweep(work / "scale.yaml", work / "home", uri)
    finally:
        server.terminate()
        server.wait(60)
    if sweep["returncode"] != 0:
        sys.exit(f"the sweep failed ({sweep['returncode']}):\n{sweep['stderr_tail']}")
    found = {"trials": args.trials, "seeds": args.seeds, "sweep_seconds": sweep["seconds"], "driver_peak_bytes": sweep["driver_peak_bytes"],
             **figures(work / "home", store, args.trials, args.seeds), "rss_samples": sweep["rss_samples"]}
    say(found, args.json)  # the sweep's figures, before the analysis (which may fail on its own)
    found["analyze_seconds"] = analyze(work / "home", work / "analysis")
    found["analyze_again_seconds"] = analyze(work / "home", work / "analysis-again")  # its snapshot of the rows read back
    say({k: found[k] for k in ("analyze_seconds", "analyze_again_seconds")}, None)
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))


def say(found: dict, json_file: Path | None) -> None:
    for key, value in found.items():
        if key != "rss_samples":
            print(f"{key:34} {json.dumps(value) if isinstance(value, dict) else value}", flush=True)
    if json_file:
        json_file.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
