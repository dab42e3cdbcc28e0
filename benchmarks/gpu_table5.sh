#!/usr/bin/env bash
# The GPU checks of this project, as one short script (≤ 9 minutes on one H100/H200):
#   1. Table 5 at the paper profile on the GPU, trials 11-20 (an independent replicate of
#      the CPU run's trials 1-10) and trials 1-10 (the CPU run's own trials), concurrently;
#   2. benchmarks/bench_projection.py on the GPU (ColorResNet-18 rows included).
# Usage: OUT=/some/folder bash benchmarks/gpu_table5.sh   (OUT receives the reports)
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/mnog-out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/gpu.txt"

table5() {  # $1 = first seed
  local start=$SECONDS results=/tmp/mnog-seed$1
  MNOG_RESULTS=$results timeout 420 python3 -m artifact.table5_data_poisoning --profile paper --device cuda \
      --first-seed "$1" --no-enforce 2>&1 | tr '\r' '\n' | grep -v "trial-epochs\|epoch/s" > "$OUT/table5_seed$1.txt"
  echo "table5 seeds $1..$(($1 + 9)) on cuda: $((SECONDS - start)) s" >> "$OUT/gpu.txt"
  gzip -c "$results/table5/records.jsonl" > "$OUT/records_seed$1.jsonl.gz"
}
table5 11 & table5 1 & wait

timeout 150 python3 -m benchmarks.bench_projection 2>&1 | grep -v Warning > "$OUT/bench_projection_gpu.txt"
cat "$OUT/gpu.txt" "$OUT/bench_projection_gpu.txt"
