#!/usr/bin/env bash
# session 32 run 4 (H200): the 1B int4 + head step with session 31 run 1's tunings (cache keys rehashed to this tree),
# its BF16X2 picks in mode 2 (a) or mode 3 (b; now with the norm's x·g on packed bf16 too), alternating processes;
# before them the CUDA tests and every mode on those picks (bf16x2_modes.py); then the decode rate with (b)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_bf16x2_norm_s32run4.log
timeout 150 python3 -m pytest tests/runtime/test_qlinear_kernel.py -q -n 16 -p no:cacheprovider --timeout 140 \
  -k "bf16x2 or norm" > $L 2>&1; echo "tests rc=$?"; tail -2 $L
L=$OUT/bf16x2_modes_1b_s32run4.log; t0=$SECONDS
timeout 120 python3 benchmarks/bf16x2_modes.py --cache benchmarks/results/autotune_on_after_decode_s31run1_h200_2026-11-28.json \
  --modes 0,2,3 --top 3 --rounds 5 --name bf16x2_modes_1b_s32run4 > $L 2>&1
echo "modes rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | tail -8
i=0
for side in a b a b; do
  i=$((i + 1)); cp .autotune/s32_step4_$side.json /tmp/at_${side}_$i.json
  L=$OUT/profile_decode_1b_int4_mode_${side}${i}_s32run4.log; t0=$SECONDS
  ACCEL_AUTOTUNE_CACHE=/tmp/at_${side}_$i.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$i TRITON_CACHE_DIR=/tmp/tri_$i \
    timeout 95 python3 benchmarks/profile_decode.py --config 1b --variants accel-int4-head --cudagraphs --timeline \
    > $L 2>&1
  echo "$side$i rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:|tuning" $L | head -4
done
L=$OUT/decode_1b_int4_s32run4.log; t0=$SECONDS
cp .autotune/s32_step4_b.json /tmp/at_dec.json
ACCEL_AUTOTUNE_CACHE=/tmp/at_dec.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 170 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_s32run4 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -6
cp /tmp/at_dec.json $OUT/autotune_after_decode_s32run4.json
ls benchmarks/results/decode_1b_int4_s32run4* 2>/dev/null && cp benchmarks/results/decode_1b_int4_s32run4* $OUT/

cd $OUT && tar -czf s32run4_out.tgz --remove-files ./*.log ./*.json && ls -la
true
