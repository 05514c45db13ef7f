#!/usr/bin/env bash
# The GPU checks, as one script for a lent CUDA machine (the developers' guide): install without
# dependencies (the machine has torch, numpy, pyarrow, typer, rich, pytest; no network), then the
# issue's figures first, then the checks: the throughput benchmark (2D K = 256 against the FP32
# peak), the robustness specs' mixed packs graphed and eager, the CUDA tests, a short 2D training,
# the TF32 study.
#
# A lease gives 15 minutes of device time and one command at most 10, so the script ends inside
# one call: each step has a time limit (seconds, overridable: LIMIT_BENCH=… and so on), and all of
# them together a deadline (DEADLINE, default 520 s: a step gets what is left, a step with nothing
# left is skipped). Run it with timeout_s ≥ 560. A step that hangs costs only its own figures. The
# exit status is 1 if any step failed, and the log's last line names them. RUN_SUITE=1 adds the
# whole suite, which does not fit beside the rest: give it a call of its own (with DEADLINE=560).
#
# Under $OUT (default ./gpu-out), four files, since a lease brings back at most eight: gpu-check.log
# (everything printed, each step's time, the bench's and the mixed packs' figures summarised) and
# the JSON of the bench, the mixed packs and the TF32 study, for BENCHMARKS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
DEADLINE=${DEADLINE:-520}
mkdir -p "$OUT"
exec 3>&1 4>&2
exec > >(tee "$OUT/gpu-check.log") 2>&1
tee_pid=$!
# On exit, let tee write the log's last lines before the lease collects $OUT (bash does not wait for it).
trap 'exec 1>&3 2>&4; for _ in {1..100}; do kill -0 "$tee_pid" 2>/dev/null || break; sleep 0.1; done' EXIT
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
failed=()
step() { echo; echo "=== $* (at $SECONDS s) ==="; }

# limited NAME LIMIT COMMAND...: COMMAND within min(LIMIT, what the deadline leaves); a failure is noted
# under NAME (so never in a pipeline, whose subshell would forget it).
limited() {
    local name=$1 limit=$2 left=$((DEADLINE - SECONDS))
    shift 2
    ((limit > left)) && limit=$left
    if ((limit <= 0)); then
        echo "(skipped: the deadline of $DEADLINE s has passed)" >&2
        failed+=("$name (skipped)")
        return 1
    fi
    local start=$SECONDS rc
    timeout --kill-after=5 "$limit" "$@"
    rc=$?
    if ((rc != 0)); then
        if ((SECONDS - start >= limit)); then
            echo "(stopped at its limit of $limit s)" >&2
        fi
        failed+=("$name (exit $rc)")
    fi
    return $rc
}

step install
limited install 60 $PY -m pip install -q --no-deps --no-build-isolation --disable-pip-version-check -e .
limited device 30 $PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv

step "drmfm bench --device cuda --json"
limited bench "${LIMIT_BENCH:-150}" $PY -m pipeline.cli bench --device cuda --json --seconds "${BENCH_SECONDS:-1}" >"$OUT/bench-cuda.json"
$PY benchmarks/summary.py "$OUT/bench-cuda.json"

step "the robustness specs' mixed packs, graphed and eager (benchmarks/mixed_packs.py)"
limited "mixed packs" "${LIMIT_MIXED:-100}" $PY benchmarks/mixed_packs.py --device cuda --seconds "${BENCH_SECONDS:-1}" >"$OUT/mixed-packs.json"
$PY benchmarks/summary.py "$OUT/mixed-packs.json"

step "pytest -m gpu"
limited "pytest -m gpu" "${LIMIT_PYTEST:-90}" $PY -m pytest -q -p no:cacheprovider -p no:benchmark -m gpu tests/test_gpu.py

step "drmfm train (2D, P4, i = 3, 64 seeds packed)"
limited train "${LIMIT_TRAIN:-100}" $PY -m pipeline.cli train --device cuda --problem twin_branching --fourier 3 --epsilon 0.00625 \
    --epochs "${TRAIN_EPOCHS:-3000}" --seeds 64 --no-mlflow --home "${TMPDIR:-/tmp}/drmfm-gpu-check-home"

step "TF32 off and on: energies, transition counts, u_yy (benchmarks/precision.py)"
limited precision "${LIMIT_PRECISION:-70}" $PY benchmarks/precision.py --device cuda --epochs "${PRECISION_EPOCHS:-3000}" --seeds 8 >"$OUT/precision.json"
cat "$OUT/precision.json"

if [[ -n ${RUN_SUITE:-} ]]; then  # optional: the CPU suite under this machine's Python and torch
    step "pytest (whole suite)"
    limited suite "${SUITE_TIMEOUT:-540}" $PY -m pytest -q -p no:cacheprovider -p no:benchmark -n 8
fi
step "done"
if ((${#failed[@]})); then
    printf -v joined '%s, ' "${failed[@]}"
    echo "failed: ${joined%, }"
    exit 1
fi
