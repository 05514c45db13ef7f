#!/usr/bin/env bash
# The CPU checks of the packed step, as one script for a machine whose CPU BENCHMARKS.md has not
# measured yet (an Intel Xeon, say): three runs of the bench, the robustness specs' mixed packs,
# where a K = 64 step goes in 1D and 2D, and what tuning costs, one after another (nothing else
# should run meanwhile: 2 cores are noisy enough). About 15 minutes on 2 cores.
#
#     bash benchmarks/cpu_check.sh            # then read $OUT/<cpu>-<date>-summary.txt
#
# Everything it prints is written under $OUT (default ./cpu-out), the JSON named for the CPU and the
# date, ready to move to benchmarks/results/ and cite in BENCHMARKS.md. Every step runs on $THREADS
# threads (default 2, what a trial of the bench's figures had).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/cpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-.venv/bin/python}
THREADS=${THREADS:-2}
export OMP_NUM_THREADS=$THREADS
TAG="cpu-$($PY -c 'from drm.autotune import cpu_name; import re; print(re.sub(r"[^a-z0-9]+", "-", cpu_name().lower()).strip("-"))')-$(date -u +%F)"
step() { echo; echo "=== $* ==="; }

step "machine ($TAG)"
{ git rev-parse HEAD; lscpu | grep -E "Model name|^CPU\(s\)|L2|L3"; echo "flags: $(grep -owE 'avx2|avx512f|avx512_bf16|amx_tile|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  $PY -c "import torch; print('torch', torch.__version__)"; } | tee "$OUT/$TAG-machine.txt"

for run in 1 2 3; do
    step "drmfm bench --device cpu --json --seconds 1 (run $run of 3)"
    $PY -m pipeline.cli bench --device cpu --json --seconds 1 2>"$OUT/$TAG-bench-$run.log" >"$OUT/bench-$TAG-$run.json"
    $PY benchmarks/summary.py "$OUT/bench-$TAG-$run.json"
done 2>&1 | tee "$OUT/$TAG-summary.txt"

step "the robustness specs' mixed packs (benchmarks/mixed_packs.py)"
$PY benchmarks/mixed_packs.py --seconds 2 2>"$OUT/$TAG-mixed-packs.log" >"$OUT/mixed-packs-$TAG.json"
$PY benchmarks/summary.py "$OUT/mixed-packs-$TAG.json" | tee -a "$OUT/$TAG-summary.txt"

for case in 1d 2d; do
    step "where a $case K = 64 step goes (benchmarks/step_profile.py)"
    $PY benchmarks/step_profile.py --case "$case" --K 64 --threads "$THREADS" 2>&1 | tee "$OUT/$TAG-step-profile-$case.txt"
done

step "what tuning costs (benchmarks/tuning_cost.py)"
$PY benchmarks/tuning_cost.py --threads "$THREADS" 2>&1 | tee "$OUT/$TAG-tuning-cost.txt"
