#!/usr/bin/env bash
# session 35 run 1 (H200), tree 8022695 + benchmarks/boundary_probe.py: what a kernel boundary costs in a chain of
# dependent GEMVs (plain / PDL / flag wait / no wait); the 1B int4 + head step at decode.py's cache length with
# accel's dump (Inductor's generated code: which kernels the step's prologue and epilogue are), on session 34 run 1's
# tuning; the 1B int4 + head decode tuned from an empty cache (HEAD's rate: session 34 run 3 was cut)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/boundary_probe_s35run1.log; t0=$SECONDS
timeout 90 python3 benchmarks/boundary_probe.py --n 1024 2048 4096 --out $OUT/boundary_probe_s35run1.json > $L 2>&1
echo "probe rc=$? in $((SECONDS - t0)) s"; cat $L | tail -14
cp benchmarks/results/autotune_chain_s34run1_h200_2026-11-28.json /tmp/at_p.json
L=$OUT/profile_decode_1b_int4_len104_s35run1.log; t0=$SECONDS
ACCEL_DUMP_DIR=/tmp/dump ACCEL_AUTOTUNE_CACHE=/tmp/at_p.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_p TRITON_CACHE_DIR=/tmp/tri_p \
  timeout 90 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
  --sequence 16 --context 40 --cache-len 104 > $L 2>&1
echo "profile rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|wall time" $L | head -3 | cut -c1-100
(cd /tmp && tar -czf $OUT/dump_1b_int4_len104_s35run1.tgz dump)
export ACCEL_AUTOTUNE_CACHE=/tmp/at_fresh.json
L=$OUT/decode_1b_int4_fresh_s35run1.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 330 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_fresh_s35run1 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -4 | cut -c1-200
cp /tmp/at_fresh.json $OUT/autotune_fresh_s35run1.json 2>/dev/null
true
