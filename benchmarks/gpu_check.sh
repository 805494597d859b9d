#!/usr/bin/env bash
# gpu_check.sh RESULTS_DIR: everything worth running on a GPU machine, in under 8 minutes.
#
#   1. the whole test suite on the GPU backend, every kernel variant compared with NumPy on the
#      GPU (the emulator's own cases and the wheel build are left to CI, which runs them on every
#      push),
#   2. benchmarks/bench_kernels.py: TFLOP/s of each variant of the convolution kernels (simple,
#      tiled, tf32) on the 37 distinct layers of the authors' paper preset (185 M parameters,
#      45 GFLOP per image), against cuDNN when PyTorch is there,
#   3. benchmarks/bench_train.py --device gpu: the training step (batch 5) and inference (batches
#      1 and 16) of both presets with the float32 tiled kernels, checking first, with torch, that
#      minimenet and benchmarks/torch_menet.py give the same loss from the same weights, then the
#      paper preset again with the TF32 ones; PyTorch with cuDNN's defaults timed beside each,
#   4. examples/train_msra10k.py --preset paper for 200 iterations on the built-in synthetic set,
#      then a check that its loss fell.
#
# Each step has its own time limit and a failing step does not stop the next. RESULTS_DIR gets
# eight files: summary.log (the machine, then each step's exit status), one NAME.log per step
# with all its output, and raw.tar.gz with the benchmarks' JSON and CSV files and the training
# run's log and pictures (not its checkpoint). Few files on purpose: a lent GPU machine hands
# back at most 8. The exit status is the number of failed steps.
# Installs nothing: it expects numpy, pillow, cupy, pytest (and optionally torch) to be there.
set -u

if [ $# -ne 1 ]; then
    echo "usage: $0 RESULTS_DIR" >&2
    exit 2
fi
results=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/.."  # the repository root, so that tests/ and minimenet/ are found
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # minimenet uninstalled
raw=$(mktemp -d)

failures=0

# step NAME SECONDS COMMAND...: run COMMAND under `timeout`, tee its output into NAME.log.
step() {
    local name=$1 seconds=$2
    shift 2
    echo "=== $name (limit ${seconds}s): $*" | tee "$results/$name.log"
    local started=$SECONDS
    timeout --kill-after=10 "$seconds" "$@" 2>&1 | tee -a "$results/$name.log"
    local status=${PIPESTATUS[0]}
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "=== $name: TIMED OUT after ${seconds}s" | tee -a "$results/$name.log"
    fi
    echo "=== $name: exit status $status after $((SECONDS - started))s" | tee -a "$results/$name.log" "$results/summary.log"
    [ "$status" -eq 0 ] || failures=$((failures + 1))
}

{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    python3 -c 'import sys, numpy, cupy; print("python", sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)' 2>&1
} | tee "$results/summary.log"

# The limits add up to 7 min 50 s. On an H100 (2026-11-28) the steps took 160 s (cut off at 96 %),
# 25, 29, 24, 74 and 0 s.
step tests 220 env MINIMENET_DEVICE=gpu python3 -m pytest -q -p no:cacheprovider --maxfail=100 --tb=short \
    --durations=10 -m "not emulator" --ignore=tests/test_cuda_wheel.py tests
step bench_kernels 60 python3 benchmarks/bench_kernels.py "$raw/kernels" --require-gpu
step bench_train 50 python3 benchmarks/bench_train.py --device gpu --conv-kernels tiled --infer-batches 1,16 \
    --out "$raw/train_tiled"
step bench_train_tf32 40 python3 benchmarks/bench_train.py --device gpu --conv-kernels tf32 --presets paper \
    --infer-batches 1,16 --no-check --out "$raw/train_tf32"
# The trainer itself, the paper preset on the built-in synthetic set; then the loss must have
# fallen (the mean of the last three logged losses below that of the first three).
step train_paper 90 env MINIMENET_DEVICE=gpu python3 examples/train_msra10k.py --preset paper --iterations 200 \
    --val-every 100 --checkpoint-every 100 --out "$raw/train_paper"
step loss_fell 10 python3 -c '
import json, statistics, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
if len(losses) < 6:
    sys.exit(f"only {len(losses)} logged losses: the run stopped early")
first, last = statistics.mean(losses[:3]), statistics.mean(losses[-3:])
print(f"{len(losses)} logged losses: mean of the first three {first:.4f}, of the last three {last:.4f}")
sys.exit(0 if last < first else 1)' "$raw/train_paper/log.jsonl"

tar -czf "$results/raw.tar.gz" --exclude=checkpoint.npz -C "$raw" . && rm -rf "$raw"
for table in train_tiled train_tf32; do
    tar -xzOf "$results/raw.tar.gz" "./$table/results.txt" 2>/dev/null
done
cat "$results/summary.log"
echo "=== gpu_check: $failures failed step(s); logs and raw.tar.gz in $results" | tee -a "$results/summary.log"
exit "$failures"
