#!/usr/bin/env bash
# (as run from .autotune/; its helpers rehash.py and hybrid.py are committed as s33_rehash_cache.py and s33_hybrid_cache.py)
# session 33 run 2 (H200), tree aec7b90 (group parameters loaded with the words): CUDA tests; what a user's tuning
# gets: the 8B int4 MLP shapes at M = 1 (kernels.py, fresh cache) and the 1B int4 + head decode tuned from an empty
# cache against Inductor, then the step's profile on that tuning
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_qlinear_s33run2.log; t0=$SECONDS
timeout 90 python3 -m pytest tests/runtime/test_qlinear_kernel.py -q -n 16 -p no:cacheprovider --timeout 80 \
  -k "words or int4 or bf16x2 or norm or tiles or prefetch or switches" > $L 2>&1
echo "tests rc=$? in $((SECONDS - t0)) s"; tail -1 $L
L=$OUT/qlinear_int4_8b_s33run2.log; t0=$SECONDS
ACCEL_AUTOTUNE_CACHE=/tmp/at_8b.json timeout 110 python3 benchmarks/kernels.py --ops qlinear --shapes 8b --m 1 \
  --schemes int4_weight_only > $L 2>&1
echo "kernels rc=$? in $((SECONDS - t0)) s"; grep -E "^8b" $L | cut -c1-150
for f in $OUT/qlinear_kernels_*.json; do [ -e "$f" ] && mv "$f" $OUT/qlinear_int4_8b_s33run2.json; done
cp /tmp/at_8b.json $OUT/autotune_int4_8b_s33run2.json
export ACCEL_AUTOTUNE_CACHE=/tmp/at_fresh.json
L=$OUT/decode_1b_int4_fresh_s33run2.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_dec TRITON_CACHE_DIR=/tmp/tri_dec \
  timeout 300 python3 benchmarks/decode.py --config 1b --pos device --checks speed --new 64 --prompt 32 --runs 3 \
  --pin 3 --variants inductor,accel-int4-head --name decode_1b_int4_fresh_s33run2 > $L 2>&1
echo "decode rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | grep -v Warn | tail -5 | cut -c1-200
L=$OUT/profile_decode_1b_int4_fresh_s33run2.log; t0=$SECONDS
TORCHINDUCTOR_CACHE_DIR=/tmp/ind_p TRITON_CACHE_DIR=/tmp/tri_p timeout 75 python3 benchmarks/profile_decode.py \
  --config 1b --variants accel-int4-head --cudagraphs --timeline > $L 2>&1
echo "profile rc=$? in $((SECONDS - t0)) s"; grep -E "GPU time per step|timeline:" $L | head -3
cp /tmp/at_fresh.json $OUT/autotune_fresh_s33run2.json
cd $OUT && tar -czf s33run2_out.tgz --remove-files ./*.log ./*.json && ls -la
true
