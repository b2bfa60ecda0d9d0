#!/usr/bin/env bash
# session 32 run 2 (H200): the 1B int4 + head step with session 31 run 1's tunings (cache keys rehashed to this tree),
# its BF16X2 picks in mode 2 (a) or mode 3 (b), alternating processes; then the decode rate with (b)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
i=0
for side in a b a b; do
  i=$((i + 1)); cp .autotune/s32_step_$side.json /tmp/at_${side}_$i.json
  L=$OUT/profile_decode_1b_int4_mode_${side}${i}_s32run2.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_${side}_$i.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$i TRITON_CACHE_DIR=/tmp/tri_$i \
    timeout 95 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    > $L 2>&1
  echo "$side$i rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|tuning" $L | head -4
done
L=$OUT/decode_1b_int4_s32run2.log; t0=$SECONDS
cp .autotune/s32_step_b.json /tmp/at_dec.json
ACCEL_AUTOTUNE_CACHE=/tmp/at_dec.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 170 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_s32run2 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -6
cp /tmp/at_dec.json $OUT/autotune_after_decode_s32run2.json
ls benchmarks/results/decode_1b_int4_s32run2* 2>/dev/null && cp benchmarks/results/decode_1b_int4_s32run2* $OUT/
true
