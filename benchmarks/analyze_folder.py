"""How long `drmfm analyze` takes over an existing results folder, without and with its snapshot.

    python benchmarks/analyze_folder.py RESULTS [--runs 2]

Each run: the folder's snapshot of its rows (`.analysis/replicates.parquet`) deleted, then
`drmfm analyze` timed twice as a user runs it: "first" reads every trial file, "again" the
snapshot the first wrote. The snapshot is restored as analyze leaves it. Run from a checkout to time
its code (BENCHMARKS.md, "N = 10,000 with the recorder's index", compares three commits this way). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def analyze(folder: Path, out: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "analyze", str(folder), "--out", str(out), "--no-mlflow"],
                          cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"drmfm analyze failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    found = {"first_seconds": [], "again_seconds": []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.runs):
            (args.results / ".analysis" / "replicates.parquet").unlink(missing_ok=True)
            found["first_seconds"].append(analyze(args.results, Path(out) / "a"))
            found["again_seconds"].append(analyze(args.results, Path(out) / "b"))
    print(json.dumps(found))


if __name__ == "__main__":
    main()
