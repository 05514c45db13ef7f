#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (DEVELOPERS.md): install without
# dependencies (the machine has torch, numpy, pyarrow, typer, rich, pytest; no network), then the
# issue's figures first, then the checks: the throughput benchmark (2D K = 256 against the FP32
# peak), the robustness specs' mixed packs graphed and eager, the CUDA tests, a short 2D training,
# the TF32 study (and, with RUN_SUITE=1, the whole suite).
#
# A lease gives 15 minutes of device time and one command at most 10: each step has a time limit
# (seconds, overridable: LIMIT_BENCH=… and so on), about 8.5 minutes in all, so that the script ends
# inside one call and a step that hangs costs only its own figures. Run it with timeout_s ≥ 540.
# Under $OUT (default ./gpu-out), four files, since a lease brings back at most eight: gpu-check.log
# (everything printed, each step's time, the bench's and the mixed packs' figures summarised) and
# the JSON of the bench, the mixed packs and the TF32 study, for BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu-check.log") 2>&1
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
began=$SECONDS
step() { echo; echo "=== $* (at $((SECONDS - began)) s) ==="; }
limited() { local limit=$1; shift; timeout --kill-after=10 "$limit" "$@"; local rc=$?; ((rc == 124 || rc == 137)) && echo "(stopped at its limit of $limit s)" >&2; return $rc; }

step install
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv

step "drmfm bench --device cuda --json"
limited "${LIMIT_BENCH:-150}" $PY -m pipeline.cli bench --device cuda --json --seconds "${BENCH_SECONDS:-1}" >"$OUT/bench-cuda.json"
$PY benchmarks/summary.py "$OUT/bench-cuda.json"

step "the robustness specs' mixed packs, graphed and eager (benchmarks/mixed_packs.py)"
limited "${LIMIT_MIXED:-100}" $PY benchmarks/mixed_packs.py --device cuda --seconds "${BENCH_SECONDS:-1}" >"$OUT/mixed-packs.json"
$PY benchmarks/summary.py "$OUT/mixed-packs.json"

step "pytest -m gpu"
limited "${LIMIT_PYTEST:-120}" $PY -m pytest -q -p no:cacheprovider -p no:benchmark -m gpu tests/test_gpu.py

step "drmfm train (2D, P4, i = 3, 64 seeds packed)"
limited "${LIMIT_TRAIN:-50}" $PY -m pipeline.cli train --device cuda --problem twin_branching --fourier 3 --epsilon 0.00625 \
    --epochs "${TRAIN_EPOCHS:-3000}" --seeds 64 --no-mlflow --home "${TMPDIR:-/tmp}/drmfm-gpu-check-home"

step "TF32 off and on: energies, transition counts, u_yy (benchmarks/precision.py)"
limited "${LIMIT_PRECISION:-70}" $PY benchmarks/precision.py --device cuda --epochs "${PRECISION_EPOCHS:-3000}" --seeds 8 >"$OUT/precision.json"
cat "$OUT/precision.json"

if [[ -n ${RUN_SUITE:-} ]]; then  # optional: the CPU suite under this machine's Python and torch
    step "pytest (whole suite)"
    limited "${SUITE_TIMEOUT:-240}" $PY -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 2>&1 | tail -15
fi
step "done"
