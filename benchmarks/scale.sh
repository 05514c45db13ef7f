#!/usr/bin/env bash
# benchmarks/scale.sh N [--seeds K] [--json FILE] [--keep DIR]: an N-trial sweep of tiny trials
# against a local mlflow server on loopback, and what it cost per trial, per seed and at the driver
# (benchmarks/scale.py says which figures). BENCHMARKS.md records N = 10,000; CI runs N = 200.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec "$PY" benchmarks/scale.py "$@"
