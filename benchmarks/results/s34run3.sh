#!/usr/bin/env bash
# (as run from .autotune/; the tests' summary was cut by their 80 s limit and the decode by the call's 600 s limit (Inductor
#  only); the tests were run again on the warm machine: tests_cuda_s34run3b_h200_2026-11-28.log)
# session 34 run 3 (H200), tree bb675cb: one-split decode attention with the append in its launch (relaxed tickets on
# the int64 cache counter, the append's loads issued beside that atomic; the rotary / cache kernel's launch goes)
# against 160c765 (old, --accel-from
# .autotune/base34 = git archive 160c765 accel), on run 1's tuning (chain 3) at decode.py's cache length (104: one
# split of 128 keys), then the 1B int4 + head decode tuned from an empty cache with this tree
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_s34run3.log; t0=$SECONDS
timeout 80 python3 -m pytest tests/runtime/test_rope_attention.py tests/lowering/test_fuse_kv_update.py \
  tests/runtime/test_attention_kernel.py tests/runtime/test_autotune_cache.py tests/compiler/test_backend.py \
  -q -n 16 -p no:cacheprovider \
  --timeout 70 > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L
for r in old1 new2 old3 new4; do
  t=${r%?}; [ -e /tmp/at_$t.json ] || cp benchmarks/results/autotune_chain_s34run1_h200_2026-11-28.json /tmp/at_$t.json
  a=""; [ $t = old ] && a="--accel-from .autotune/base34"
  L=$OUT/profile_decode_1b_int4_len104_${r}_s34run3.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_$t.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$t TRITON_CACHE_DIR=/tmp/tri_p \
    timeout 70 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 16 --context 40 --cache-len 104 $a > $L 2>&1
  echo "$r rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|wall time" $L | head -3 | cut -c1-100
done
export ACCEL_AUTOTUNE_CACHE=/tmp/at_fresh.json
L=$OUT/decode_1b_int4_fresh_s34run3.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 330 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_fresh_s34run3 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -4 | cut -c1-200
cp /tmp/at_fresh.json $OUT/autotune_fresh_s34run3.json
cd $OUT && tar -czf s34run3_out.tgz --remove-files ./*.log ./*.json && ls -la
true
