#!/usr/bin/env bash
# GPU checks of the colored-image pieces (≤ 3 minutes on one H100/H200): ColorResNet
# training throughput (bf16, channels-last, GPU-resident data), seconds per unlearning epoch
# of every method at width 64, then ResNet-18 throughput under torch.compile.
# Usage: OUT=/some/folder bash benchmarks/gpu_session_images.sh
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MNOG_RESULTS=/tmp/mnog-results
OUT=${OUT:-/tmp/mnog-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$OUT/images_gpu.txt"
timeout 110 python3 -m benchmarks.bench_images --width 64 2>&1 | tr '\r' '\n' \
    | grep -v "epoch/s\|s/epoch\|it/s\|Warning\|^$" | tee -a "$OUT/images_gpu.txt"
timeout 70 python3 -m benchmarks.bench_images --compile 2>&1 | tr '\r' '\n' \
    | grep "torch.compile" | tee -a "$OUT/images_gpu.txt"
