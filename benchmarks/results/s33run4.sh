#!/usr/bin/env bash
# (as run from .autotune/; its helpers rehash.py and hybrid.py are committed as s33_rehash_cache.py and s33_hybrid_cache.py)
# session 33 run 4 (H200), tree aec7b90: the 1B int4 + head decode rate on session 32 run 5's tile picks (keys
# rehashed; run 3 profiled them at 457-458 µs busy on this tree, run 2's fresh picks at 515-520), against Inductor in
# the same process; the 8B int4 MLP shapes at M = 1 tuned fresh twice more (kernels.py)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
for r in 1 2; do
  L=$OUT/qlinear_int4_8b_r${r}_s33run4.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_8b_$r.json timeout 60 python3 benchmarks/kernels.py --ops qlinear --shapes 8b --m 1 \
    --schemes int4_weight_only > $L 2>&1
  echo "kernels r$r rc=$? in $((SECONDS - t0)) s"; grep -E "^8b" $L | cut -c1-110
  for f in $OUT/qlinear_kernels_*.json; do [ -e "$f" ] && mv "$f" $OUT/qlinear_int4_8b_r${r}_s33run4.json; done
done
python3 .autotune/hybrid.py .autotune/s33_fresh.json benchmarks/results/autotune_fresh_s32run5_h200_2026-11-28.json \
  /tmp/at_dec.json all
L=$OUT/decode_1b_int4_s32picks_s33run4.log; t0=$SECONDS
ACCEL_AUTOTUNE_CACHE=/tmp/at_dec.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 200 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_s32picks_s33run4 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -4 | cut -c1-200
cp /tmp/at_dec.json $OUT/autotune_s32picks_s33run4.json
(cd $OUT && tar -czf s33run4_out.tgz --remove-files ./*.log ./*.json)
# the first 40 kernels of a step (layer 0 and 1) in order, run 2's fresh picks (none) and session 32 run 5's (all)
cp .autotune/s33_fresh.json /tmp/h_none.json
for g in none all; do
  [ $g = all ] && cp /tmp/at_dec.json /tmp/h_all.json
  ACCEL_AUTOTUNE_CACHE=/tmp/h_$g.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$g TRITON_CACHE_DIR=/tmp/tri_dec \
    timeout 60 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 40 > $OUT/profile_decode_1b_int4_seq_${g}_s33run4.log 2>&1
  echo "seq $g rc=$?"; grep -E "timeline:" $OUT/profile_decode_1b_int4_seq_${g}_s33run4.log | cut -c1-60
done
ls -la $OUT
true
