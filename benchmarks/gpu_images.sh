#!/usr/bin/env bash
# GPU checks of the colored-image pieces (≤ 7 minutes on one H100/H200): ColorResNet
# training throughput (bf16, channels-last, GPU-resident data), seconds per unlearning epoch
# of every method at width 64, ResNet-18 throughput under torch.compile, then the calibration
# of `make plan` at the paper profile (every recipe of every target, measured in full) and the
# paper profile's plan from it.
# Usage: OUT=/some/folder bash benchmarks/gpu_images.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MNOG_RESULTS=/tmp/mnog-results
OUT=${OUT:-/tmp/mnog-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/images_gpu.txt"
timeout 110 python3 -m benchmarks.bench_images --width 64 2>&1 | tr '\r' '\n' \
    | grep -v "epoch/s\|s/epoch\|it/s\|Warning\|^$" | tee -a "$OUT/images_gpu.txt"
timeout 70 python3 -m benchmarks.bench_images --compile 2>&1 | tr '\r' '\n' \
    | grep "torch.compile" | tee -a "$OUT/images_gpu.txt"
# make calibrate at the paper profile: results/calibration-<device>.json (copied to $OUT, to
# commit as benchmarks/calibration/<device>.json), then make plan from it.
timeout 200 python3 -m mnog.plan --calibrate --profile paper 2>&1 | tr '\r' '\n' | grep -v "^$" \
    | tee "$OUT/calibration_gpu.txt"
cp "$MNOG_RESULTS"/calibration-*.json "$OUT/" 2>/dev/null
timeout 60 python3 -m mnog.plan --profile paper --no-measure 2>&1 | tee "$OUT/plan_paper_gpu.txt"
