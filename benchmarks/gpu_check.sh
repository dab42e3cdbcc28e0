#!/usr/bin/env bash
# The standing GPU check of mnog: one script to run as it is on a machine with a GPU, ≤ 9 minutes on
# one H100/H200, each part under its own timeout, in order of value:
#
#   (a) 290 s  the paper-scale slice: Table 17's row p_retain 1 %, T = 10, one trial, real CIFAR-10
#              (all 50,000 training images), ColorResNet-18 of width 64, batch 256, the methods of
#              the paper's row (Retrain, MinNorm-OG, NGP, SCRUB, GD) over a grid of 2 values per
#              axis (40 jobs), printed beside the paper's row (one trial: no standard error).
#              What is reduced, so that it fits: θ* is the paper's recipe (20 gray warm-up epochs,
#              then 50 on D_r ∪ D_f, lr × 0.1 every 20, batch 256) but trains in bf16 autocast, not
#              float32 (H200, README "Speed": 30,085 training images/s in bf16, so θ*'s 3.5 million
#              images take about 2 minutes; the paper's θ* + GT, 6 million images, about 3.5, and
#              float32 is slower still); the GT model trains 5 epochs, not 50 (it enters only the
#              field's metrics, not Table 17's color accuracy); one trial, not five; 2 values per
#              grid axis, not 3-4. The sweep (40 jobs, each 20 unlearning steps and 112,500 scored
#              images) is estimated at 1.5-2.5 minutes; the records it stores before a timeout are
#              still compared.
#   (b) 120 s  `make calibrate` at the paper profile, then `make plan` from it: hours per target
#              and for `make all` on this GPU (the calibration file is kept: commit it as
#              benchmarks/calibration/<device>.json).
#   (c)  40 s  MinNorm-OG's unlearning epoch against GD's, ColorResNet-18 of width 64, a non-empty
#              subsample (n_pert 50: 5 images per class), BatchNorm in train and in eval mode;
#              goal ≤ 5× GD in eval mode.
#   (d)  85 s  jobs/s of Table 2's sweep (8 jobs on the slice's models) with --workers-per-gpu 1,
#              2, 4 and 8.
#
# Usage (from the repository root, or anywhere):
#   GPU_CHECK_CIFAR10=data/cifar10-jpeg.tar.gz OUT=/some/folder bash benchmarks/gpu_check.sh
# GPU_CHECK_CIFAR10 names the CIFAR-10 copy: an ImageFolder (train/<class>/*.jpg, test/<class>/*.jpg)
# or an archive of one, e.g. the 19 MB JPEG archive carried into the checkout's git-ignored data/.
# OUT receives at most 8 files: summary.txt (device, each part's seconds and exit status),
# a_slice.txt, b_calibration.txt, c_minnorm.txt, d_workers.txt (each part's output), the
# calibration JSON and kept.tar.gz (the slice's records and config, every part's JSON).
# GPU_CHECK_SCALE=smoke shrinks every part to smoke scale (seconds on a CPU; tests/test_gpu_check.py
# runs it end to end); PYTHON names the interpreter (default python3).
#
# Last run: not yet run on a GPU (the timeouts above are estimates from the H200 measurements in
# docs/benchmarks.md). Smoke scale, 2-core AMD EPYC, no GPU: see docs/gpu.md.
set -u
cd "$(dirname "$0")/.."
SCALE=${GPU_CHECK_SCALE:-full}
CIFAR10=${GPU_CHECK_CIFAR10:-data/cifar10-jpeg.tar.gz}
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/mnog-gpu-check}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/mnog-gpu-check.XXXXXX")   # models, records and data caches of this run
mkdir -p "$OUT" "$RUN/keep"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_DISABLE=1
export MNOG_RESULTS=$RUN/results MNOG_DATA=${MNOG_DATA:-$RUN/data}

case $SCALE in
  full)
    SLICE=(--profile paper --dataset "folder:$CIFAR10" --rows 0.01:10 --trials 1 --grid-values 2
           --methods Retrain MinNorm-OG NGP SCRUB GD --precision bfloat16 --gt-epochs 5 --no-enforce)
    WORKERS=(--profile paper --dataset "folder:$CIFAR10" --rows 0.01:10 --trials 1 --grid-values 2
             --methods GD GA NGD --precision bfloat16 --gt-epochs 5)
    PER_GPU=(1 2 4 8); PLAN=(--profile paper); MINNORM=(--width 64)
    LIMITS=(290 120 40 85) ;;
  smoke)   # (bf16 convolutions crawl on a CPU: float32 here; the sweep in this process)
    SLICE=(--profile smoke --dataset "folder:$CIFAR10" --test-per-class 5 --rows 0.01:10 --trials 1
           --grid-values 1 --methods Retrain MinNorm-OG NGP SCRUB GD --gt-epochs 1 --no-enforce --executor serial)
    WORKERS=(--profile smoke --dataset "folder:$CIFAR10" --test-per-class 5 --rows 0.01:10 --trials 1
             --grid-values 1 --methods GD GA --gt-epochs 1)
    PER_GPU=(1 2); PLAN=(--profile smoke table2); MINNORM=(--width 8 --samples 32 --batch 16 --n-pert 10)
    LIMITS=(1800 1800 1800 1800) ;;   # only against a hang: a loaded CPU may be slow
  *) echo "GPU_CHECK_SCALE must be full or smoke, not $SCALE" >&2; exit 2 ;;
esac
[ -e "$CIFAR10" ] || { echo "GPU_CHECK_CIFAR10=$CIFAR10: no such CIFAR-10 folder or archive" >&2; exit 2; }

summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
part() {  # part NAME LIMIT COMMAND...: the command under its own timeout, its output in $OUT/NAME.txt
  local name=$1 limit=$2 start=$SECONDS status; shift 2
  echo "== $name ($limit s at most)"
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  status=$?
  summary "$name: $((SECONDS - start)) s, exit status $status$([ $status = 124 ] && echo " (timed out at $limit s)")"
}

: > "$OUT/summary.txt"
summary "mnog GPU check, scale $SCALE, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
summary "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'no GPU (nvidia-smi)')"
summary "$("$PY" -c 'import torch; from mnog.results import device_name; print("torch", torch.__version__, "on", device_name())')"

# (a) the slice, then ours beside the paper's row (from the records: whatever finished).
part a_slice "${LIMITS[0]}" "$PY" -m artifact.table2_representation_collapse "${SLICE[@]}"
OUT=$RUN/keep "$PY" -m benchmarks.gpu_check slice >> "$OUT/a_slice.txt" 2>&1
tail -n 12 "$OUT/a_slice.txt"

# (b) the calibration of `make plan` at the paper profile, and the plan it gives.
part b_calibration "${LIMITS[1]}" "$PY" -m mnog.plan --calibrate "${PLAN[@]}"
"$PY" -m mnog.plan --no-measure "${PLAN[@]}" >> "$OUT/b_calibration.txt" 2>&1
cp "$MNOG_RESULTS"/calibration-*.json "$OUT/" 2>/dev/null
grep -A 30 "^plan at" "$OUT/b_calibration.txt" | head -n 30

# (c) MinNorm-OG's epoch against GD's, both BatchNorm modes.
part c_minnorm "${LIMITS[2]}" "$PY" -m benchmarks.bench_images --minnorm "${MINNORM[@]}"
tail -n 7 "$OUT/c_minnorm.txt"

# (d) jobs/s per --workers-per-gpu, on the slice's models.
part d_workers "${LIMITS[3]}" env OUT="$RUN/keep" "$PY" -m benchmarks.gpu_check workers "${PER_GPU[@]}" -- \
    "${WORKERS[@]}"
tail -n 8 "$OUT/d_workers.txt"

cp -r "$MNOG_RESULTS"/bench "$RUN/keep/" 2>/dev/null
cp "$MNOG_RESULTS"/table2/records.jsonl "$RUN/keep/slice_records.jsonl" 2>/dev/null
find "$MNOG_RESULTS/table2" -name config.json -exec cp {} "$RUN/keep/slice_config.json" \; 2>/dev/null
tar czf "$OUT/kept.tar.gz" -C "$RUN" keep
summary "total: $SECONDS s; everything under $OUT"
rm -rf "$RUN"
