#!/usr/bin/env bash
# session 35 run 3 (H200): tree 8022695 + (uncommitted) PRE (the one-block rope_attention_append's ticket and cached
# rows before its PDL wait), cos / sin / mask realized once, layer 0's append in its attention, the append's tuning
# among the decode configs that take it. CUDA tests (run 2's were cut by their time limit with one failure); the
# 1B int4 + head step at decode.py's cache length (104): 8022695 (--accel-from .autotune/base35) against this tree on
# the same picks (run 1's fresh tuning; its attention entry copied to this tree's append key), alternating
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_s35run3.log; t0=$SECONDS
timeout 170 python3 -m pytest tests/runtime/test_rope_attention.py tests/lowering/test_fuse_kv_update.py \
  tests/runtime/test_attention_kernel.py tests/runtime/test_rope_kernel.py tests/lowering/test_pdl.py \
  tests/lowering/test_fuse_attention.py -q -n 16 -p no:cacheprovider --timeout 150 -rf > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L; grep -E "^FAILED|^ERROR|Error:|assert " $L | head -12 | cut -c1-250
for r in old1 new2 old3 new4; do
  t=${r%?}; a=""; [ $t = old ] && a="--accel-from .autotune/base35"
  [ -e /tmp/at_$t.json ] || cp .autotune/s35_${t}_picks.json /tmp/at_$t.json
  L=$OUT/profile_decode_1b_int4_len104_${r}_s35run3.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_$t.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$t TRITON_CACHE_DIR=/tmp/tri_p \
    timeout 80 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 16 --context 40 --cache-len 104 $a > $L 2>&1
  echo "$r rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|wall time" $L | head -3 | cut -c1-110
done
cp /tmp/at_new.json $OUT/autotune_new_s35run3.json; cp /tmp/at_old.json $OUT/autotune_old_s35run3.json
true
