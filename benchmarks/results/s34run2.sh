#!/usr/bin/env bash
# (tree: bb675cb's one-split append before its reordering: the ticket an acq_rel atomic_add issued before the
#  append's cos / sin / q / k / v loads; uncommitted when run. As run from .autotune/)
# session 34 run 2 (H200): one-split decode attention with the append in its launch (the programs' tickets advance
# the int64 cache counter; the rotary / cache kernel's launch goes) against 160c765 (old, --accel-from
# .autotune/base34 = git archive 160c765 accel), on run 1's tuning (chain 3) at decode.py's cache length (104: one
# split of 128 keys), then the 1B int4 + head decode tuned from an empty cache with this tree
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_s34run2.log; t0=$SECONDS
timeout 80 python3 -m pytest tests/runtime/test_rope_attention.py tests/lowering/test_fuse_kv_update.py \
  tests/runtime/test_attention_kernel.py tests/runtime/test_autotune_cache.py -q -n 16 -p no:cacheprovider \
  --timeout 70 > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L
for t in old new; do
  cp benchmarks/results/autotune_chain_s34run1_h200_2026-11-28.json /tmp/at_$t.json
  a=""; [ $t = old ] && a="--accel-from .autotune/base34"
  L=$OUT/profile_decode_1b_int4_len104_${t}_s34run2.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_$t.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$t TRITON_CACHE_DIR=/tmp/tri_p \
    timeout 70 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    --sequence 16 --context 40 --cache-len 104 $a > $L 2>&1
  echo "$t rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|wall time" $L | head -3 | cut -c1-100
done
export ACCEL_AUTOTUNE_CACHE=/tmp/at_fresh.json
L=$OUT/decode_1b_int4_fresh_s34run2.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 330 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_fresh_s34run2 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -4 | cut -c1-200
cp /tmp/at_fresh.json $OUT/autotune_fresh_s34run2.json
cd $OUT && tar -czf s34run2_out.tgz --remove-files ./*.log ./*.json && ls -la
true
