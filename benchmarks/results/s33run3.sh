#!/usr/bin/env bash
# (as run from .autotune/; its helpers rehash.py and hybrid.py are committed as s33_rehash_cache.py and s33_hybrid_cache.py)
# session 33 run 3 (H200), tree aec7b90: which of run 2's fresh tile picks cost the 1B int4 + head step its time
# (515 µs busy, against 456-458 with session 32 run 5's picks on this tree in run 1): the step profiled with run 2's
# tuning, with session 32 run 5's (all keys), and with run 2's but one projection's keys from session 32 run 5
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
B=benchmarks/results/autotune_fresh_s32run5_h200_2026-11-28.json
for g in all qkv o gateup down head; do python3 .autotune/hybrid.py .autotune/s33_fresh.json $B /tmp/h_$g.json $g; done
cp .autotune/s33_fresh.json /tmp/h_none.json
for g in none all gateup head o down qkv none all; do
  L=$OUT/profile_decode_1b_int4_hybrid_${g}_s33run3.log; t0=$SECONDS
  [ -e $L ] && L=$OUT/profile_decode_1b_int4_hybrid_${g}_again_s33run3.log
  cp /tmp/h_$g.json /tmp/at_run.json
  ACCEL_AUTOTUNE_CACHE=/tmp/at_run.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$g TRITON_CACHE_DIR=/tmp/tri \
    timeout 70 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 8 > $L 2>&1
  echo "$g rc=$? in $((SECONDS - t0)) s"; grep -E "timeline:" $L | head -1 | cut -c1-60
done
cd $OUT && tar -czf s33run3_out.tgz --remove-files ./*.log && ls -la
true
