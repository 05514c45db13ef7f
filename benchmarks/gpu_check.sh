#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (DEVELOPERS.md): install without
# dependencies (the machine has torch, numpy, pyarrow, typer, rich, pytest; no network), the CUDA
# tests, the throughput benchmark, the robustness specs' mixed packs, a short 2D training, the TF32 study (and, with RUN_SUITE=1,
# the whole suite).
# Everything it prints is also written under $OUT (default ./gpu-out) for BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
step() { echo; echo "=== $* ==="; }

step install
$PY -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$OUT/device.txt"

step "pytest -m gpu"
$PY -m pytest -q -p no:cacheprovider -p no:benchmark -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/pytest-gpu.txt"

step "drmfm bench --device cuda --json"
$PY -m pipeline.cli bench --device cuda --json --seconds "${BENCH_SECONDS:-1}" 2>"$OUT/bench-cuda.log" | tee "$OUT/bench-cuda.json"

step "the robustness specs' mixed packs, graphed and eager (benchmarks/mixed_packs.py)"
$PY benchmarks/mixed_packs.py --device cuda --seconds "${BENCH_SECONDS:-1}" 2>"$OUT/mixed-packs.log" | tee "$OUT/mixed-packs.json"

step "drmfm train (2D, P4, i = 3, 64 seeds packed)"
$PY -m pipeline.cli train --device cuda --problem twin_branching --fourier 3 --epsilon 0.00625 \
    --epochs "${TRAIN_EPOCHS:-3000}" --seeds 64 --no-mlflow --home "$OUT/home" 2>&1 | tee "$OUT/train.txt"

step "TF32 off and on: energies, transition counts, u_yy (benchmarks/precision.py)"
$PY benchmarks/precision.py --device cuda --epochs "${PRECISION_EPOCHS:-3000}" --seeds 8 2>"$OUT/precision.log" | tee "$OUT/precision.json"

if [[ -n ${RUN_SUITE:-} ]]; then  # optional: the CPU suite under this machine's Python and torch
    step "pytest (whole suite)"
    timeout "${SUITE_TIMEOUT:-240}" $PY -m pytest -q -p no:cacheprovider -p no:benchmark -n 8 2>&1 | tail -15 | tee "$OUT/pytest-all.txt"
fi
