#!/usr/bin/env bash
# gpu_check.sh RESULTS_DIR: everything worth running on a GPU machine, in under 8 minutes.
#
#   1. the whole test suite on the GPU backend, every kernel variant compared with NumPy on the
#      GPU (the emulator's own cases are left to CI, which runs them on every push),
#   2. benchmarks/bench_kernels.py: TFLOP/s of each variant of the convolution kernels (simple,
#      tiled, tf32) on every paper-preset layer, against cuDNN when PyTorch is there,
#   3. benchmarks/bench_train.py --device gpu: the training step and inference of both presets
#      with the float32 tiled kernels, then the paper preset again with the TF32 ones.
#
# Each step has its own time limit and a failing step does not stop the next; all output goes
# to the terminal and to RESULTS_DIR/*.log. The exit status is the number of failed steps.
# Installs nothing: it expects numpy, cupy, pytest (and optionally torch) to be there.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 RESULTS_DIR" >&2
    exit 2
fi
results=$1
mkdir -p "$results"
cd "$(dirname "$0")/.."  # the repository root, so that tests/ and minimenet/ are found

failures=0

# step NAME SECONDS COMMAND...: run COMMAND under `timeout`, tee its output into NAME.log.
step() {
    local name=$1 seconds=$2
    shift 2
    echo "=== $name (limit ${seconds}s): $*" | tee "$results/$name.log"
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$results/$name.log"
    local status=${PIPESTATUS[0]}
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "=== $name: TIMED OUT after ${seconds}s" | tee -a "$results/$name.log"
    fi
    echo "=== $name: exit status $status" | tee -a "$results/$name.log"
    [ "$status" -eq 0 ] || failures=$((failures + 1))
}

{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    python3 -c 'import cupy; print("cupy", cupy.__version__)' 2>&1
} | tee "$results/environment.log"

# The limits add up to 7 min 50 s; each step usually needs far less.
step tests 200 env MINIMENET_DEVICE=gpu python3 -m pytest -q --maxfail=30 -m "not emulator" tests
step bench_kernels 150 python3 benchmarks/bench_kernels.py "$results" --require-gpu
step bench_train 75 python3 benchmarks/bench_train.py --device gpu --conv-kernels tiled --out "$results/train_tiled"
step bench_train_tf32 45 python3 benchmarks/bench_train.py --device gpu --conv-kernels tf32 --presets paper --no-check --out "$results/train_tf32"

echo "=== gpu_check: $failures failed step(s); logs in $results" | tee -a "$results/summary.log"
exit "$failures"
