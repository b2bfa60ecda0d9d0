#!/usr/bin/env bash
# session 32 run 3 (H200): int4 weight-only on the 8B MLP shapes at M = 1 (and 16), HEAD 5ab3421 (BF16X2 twins in
# mode 2; carried in .autotune/base) against this tree (twins in mode 3), alternating processes, each tuning into
# its own fresh cache
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for r in 1 2; do
  for side in base this; do
    from=(); [ $side = base ] && from=(--accel-from .autotune/base)
    L=$OUT/qlinear_int4_${side}_r${r}_s32run3.log
    t0=$SECONDS
    ACCEL_AUTOTUNE_CACHE=/tmp/at_${side}_$r.json timeout 120 python3 benchmarks/kernels.py --ops qlinear --shapes 8b \
      --m 1,16 --schemes int4_weight_only ${from[@]+"${from[@]}"} > $L 2>&1
    echo "$side r$r rc=$? in $((SECONDS - t0)) s"; grep -E "^8b" $L | cut -c1-120
    for f in $OUT/qlinear_kernels_*.json; do [ -e "$f" ] && mv "$f" $OUT/qlinear_int4_${side}_r${r}_s32run3.json; done
    cp /tmp/at_${side}_$r.json $OUT/autotune_int4_${side}_r${r}_s32run3.json 2>/dev/null
  done
done
true
