#!/usr/bin/env bash
# (as run from .autotune/; .autotune/s34_s32picks.json was made by its rehash.py, committed as s33_rehash_cache.py:
#  python .autotune/rehash.py autotune_fresh_s32run5_h200_2026-11-28.json .autotune/s34_s32picks.json .)
# session 34 run 1 (H200), tree with the tuner's PDL chain (ACCEL_TUNE_CHAIN=3: each decode GEMV candidate timed as 3
# launches on 3 copies of the weights, launched with PDL): CUDA tests; the 1B int4 + head decode tuned from an empty
# cache against Inductor; the step's profile on that tuning; the same profile on session 32 run 5's picks (the 457 µs
# step of session 33, keys rehashed to this tree, ACCEL_TUNE_CHAIN=1 so that its keys are found)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_s34run1.log; t0=$SECONDS
timeout 70 python3 -m pytest tests/runtime/test_qlinear_kernel.py tests/runtime/test_autotune_cache.py -q -n 16 \
  -p no:cacheprovider --timeout 60 -k "pdl or chain or launch or compile_only" > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L
export ACCEL_AUTOTUNE_CACHE=/tmp/at_chain.json
L=$OUT/decode_1b_int4_chain_s34run1.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 330 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_chain_s34run1 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -5 | cut -c1-200
cp /tmp/at_chain.json $OUT/autotune_chain_s34run1.json
for c in chain s32picks; do
  f=/tmp/at_chain.json; n=3; [ $c = s32picks ] && f=.autotune/s34_s32picks.json && n=1
  L=$OUT/profile_decode_1b_int4_${c}_s34run1.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=$f ACCEL_TUNE_CHAIN=$n TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$c TRITON_CACHE_DIR=/tmp/tri_p \
    timeout 75 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 24 > $L 2>&1
  echo "$c rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:" $L | head -3 | cut -c1-100
done
cd $OUT && tar -czf s34run1_out.tgz --remove-files ./*.log ./*.json && ls -la
true
