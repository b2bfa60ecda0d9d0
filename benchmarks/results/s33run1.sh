#!/usr/bin/env bash
# (as run from .autotune/; its helpers rehash.py and hybrid.py are committed as s33_rehash_cache.py and s33_hybrid_cache.py)
# session 33 run 1 (H200): int4 word GEMVs with each step's group parameters loaded with its words (before the PDL
# wait, at the top of the loop, with the next tile's words) against 2028f48 (carried in .autotune/base), same
# tunings (session 32 run 5's 1B cache, run 3's 8B cache; keys rehashed to each tree): CUDA tests, bf16x2_modes.py
# per tree (kernels), then the 1B int4 + head step, alternating processes
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
R=benchmarks/results
for t in old new; do
  tree=.; [ $t = old ] && tree=.autotune/base
  python3 .autotune/rehash.py $R/autotune_fresh_s32run5_h200_2026-11-28.json /tmp/at1b_$t.json $tree
  python3 .autotune/rehash.py $R/autotune_int4_this_r1_s32run3_h200_2026-11-28.json /tmp/at8b_$t.json $tree
done
L=$OUT/tests_cuda_qlinear_s33run1.log; t0=$SECONDS
timeout 170 python3 -m pytest tests/runtime/test_qlinear_kernel.py -q -n 16 -p no:cacheprovider --timeout 160 \
  -k "words or int4 or bf16x2 or norm or tiles or prefetch" > $L 2>&1; echo "tests rc=$? in $((SECONDS - t0)) s"; tail -2 $L
for s in 8b 1b; do
  for t in old new; do
    from=(); [ $t = old ] && from=(--accel-from .autotune/base)
    L=$OUT/bf16x2_modes_${s}_${t}_s33run1.log; t0=$SECONDS
    timeout 100 python3 benchmarks/bf16x2_modes.py --cache /tmp/at${s}_$t.json --modes 0,3 --top 3 --rounds 5 \
      --name bf16x2_modes_${s}_${t}_s33run1 ${from[@]+"${from[@]}"} > $L 2>&1
    echo "modes $s $t rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | tail -9 | cut -c1-110
  done
done
i=0
for t in old new old new; do
  i=$((i + 1)); cp /tmp/at1b_$t.json /tmp/at_$i.json
  from=(); [ $t = old ] && from=(--accel-from .autotune/base)
  L=$OUT/profile_decode_1b_int4_${t}${i}_s33run1.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_$i.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$t TRITON_CACHE_DIR=/tmp/tri_$t \
    timeout 90 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    ${from[@]+"${from[@]}"} > $L 2>&1
  echo "$t$i rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|tuning" $L | head -4
done
cd $OUT && tar -czf s33run1_out.tgz --remove-files ./*.log ./*.json && ls -la
true
