#!/usr/bin/env bash
# session 35 run 5 (H200): run 3's tree; the 1B int4 + head decode against Inductor on run 4's tuning of this tree
# (run 4 tuned from an empty cache, then its timed runs were host-bound and cut by the call's limit)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
cp .autotune/s35_run4_tuning.json /tmp/at.json
L=$OUT/decode_1b_int4_s35run5.log; t0=$SECONDS
ACCEL_AUTOTUNE_CACHE=/tmp/at.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 185 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_s35run5 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -5 | cut -c1-200
true
