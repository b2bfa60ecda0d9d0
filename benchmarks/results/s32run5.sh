#!/usr/bin/env bash
# session 32 run 5 (H200): what a user's compile gets with this tree: the 1B int4 + head decode tuned from an empty
# cache (BF16X2 twins in mode 3), against Inductor; then the step's profile on that tuning
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
export ACCEL_AUTOTUNE_CACHE=/tmp/at_fresh.json
L=$OUT/decode_1b_int4_fresh_s32run5.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 330 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_fresh_s32run5 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -5 | cut -c1-200
L=$OUT/profile_decode_1b_int4_fresh_s32run5.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_p TRITON_CACHE_DIR=/tmp/tri_p timeout 100 python3 benchmarks/profile_decode.py \
  --config 1b --variants accel-int4-head --cudagraphs --timeline > $L 2>&1
echo "profile rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:" $L | head -3
cp /tmp/at_fresh.json $OUT/autotune_fresh_s32run5.json
cd $OUT && tar -czf s32run5_out.tgz --remove-files ./*.log ./*.json && ls -la
true
