#!/usr/bin/env bash
# The GPU table of issue 16, in one command on a machine with one GPU (about 10 minutes
# on an H100/H200): every step at the full CIFAR-100/20 shapes (ResNet-18 width 64, two
# blocks per stage, 11 tasks x 32 images, dev 100), float32 and bfloat16, each way of
# taking per-task gradients timed, then the same structure at the CPU table's shapes.
#
#   bash benchmarks/gpu_table.sh [OUTDIR=benchmarks/results]
#
# Writes steps_<device>_<dtype>.json (the device name, spaces as '_') and prints the
# Markdown tables. Pick `AUTO_PER_TASK_GRADS["gpu"]` (aux_jax/methods/base.py) from the
# per_task_grads_{vmap,map,vjp} rows (rolled loops: --unroll=false times what training
# runs; the unrolled run gives the FLOPs).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
PY=${PYTHON:-python}
DEV=$($PY -c "import jax; print(jax.devices()[0].device_kind.replace(' ', '_'))")
FULL="--batch=32 --dev_batch=100 --width=64 --stage_sizes=2,2,2,2 --tasks=11 --repeats=20"
for DT in float32 bfloat16; do
  $PY -m benchmarks.steps $FULL --dtype=$DT --unroll=false \
      --out="$OUT/steps_${DEV}_${DT}.json"
done
$PY -m benchmarks.steps $FULL --dtype=float32 --unroll=true --iteration=false \
    --out="$OUT/steps_${DEV}_float32_unrolled.json"
