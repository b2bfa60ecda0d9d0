#!/usr/bin/env bash
# session 35 run 2 (H200): tree 8022695 + (uncommitted) the one-block rope_attention_append's ticket and cached rows
# before its PDL wait (PRE), cos / sin / mask handed to the ops without their per-layer views (realized once), layer
# 0's append in its attention too. CUDA tests; the 1B int4 + head step at decode.py's cache length (104), old
# (8022695 via --accel-from .autotune/base35) against new, alternating, on session 34 run 1's tuning
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_s35run2.log; t0=$SECONDS
timeout 110 python3 -m pytest tests/runtime/test_rope_attention.py tests/lowering/test_fuse_kv_update.py \
  tests/runtime/test_attention_kernel.py tests/runtime/test_rope_kernel.py tests/lowering/test_pdl.py \
  tests/lowering/test_fuse_attention.py -q -n 16 -p no:cacheprovider --timeout 100 > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L; grep -E "^FAILED|^ERROR" $L | head -8 | cut -c1-200
for r in old1 new2 old3 new4; do
  t=${r%?}; [ -e /tmp/at_$t.json ] || cp benchmarks/results/autotune_chain_s34run1_h200_2026-11-28.json /tmp/at_$t.json
  a=""; [ $t = old ] && a="--accel-from .autotune/base35"
  L=$OUT/profile_decode_1b_int4_len104_${r}_s35run2.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_$t.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$t TRITON_CACHE_DIR=/tmp/tri_p \
    timeout 80 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 16 --context 40 --cache-len 104 $a > $L 2>&1
  echo "$r rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|wall time" $L | head -3 | cut -c1-110
done
cp /tmp/at_new.json $OUT/autotune_new_s35run2.json
true
