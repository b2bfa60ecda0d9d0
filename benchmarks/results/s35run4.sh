#!/usr/bin/env bash
# session 35 run 4 (H200): run 3's tree (+ the fixed CUDA test): the 1B int4 + head decode tuned from an empty cache
# against Inductor, then the CUDA test that failed in run 3 on its own check (a kernel's name in another's comment)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
export ACCEL_AUTOTUNE_CACHE=/tmp/at_fresh.json
L=$OUT/decode_1b_int4_fresh_s35run4.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 340 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_fresh_s35run4 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -4 | cut -c1-200
cp /tmp/at_fresh.json $OUT/autotune_fresh_s35run4.json 2>/dev/null
unset ACCEL_AUTOTUNE_CACHE
L=$OUT/tests_cuda_s35run4.log; t0=$SECONDS
timeout 70 python3 -m pytest tests/lowering/test_fuse_kv_update.py -q -n 8 -p no:cacheprovider --timeout 60 -rf > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L; grep -E "^FAILED|^ERROR" $L | head -5 | cut -c1-200
true
