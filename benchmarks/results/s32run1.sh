#!/usr/bin/env bash
# session 32 run 1 (H200): BF16X2 mode 3 (x's pairs by byte permutes of its own words, Σx on bf16 pairs): the CUDA
# tests of the packed bf16 sums, then every BF16X2 mode on the configs session 31's tunings chose (8B M = 1, 1B step)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, triton, transformers; print(torch.__version__, triton.__version__, transformers.__version__)"
python3 -m pip install -q --no-index --no-deps .autotune/wheels/*.whl 2>&1 | tail -1
L=$OUT/tests_cuda_bf16x2_s32run1.log
timeout 170 python3 -m pytest tests/runtime/test_qlinear_kernel.py -q -n 16 -p no:cacheprovider --timeout 160 \
  -k "bf16x2 or words or int4" > $L 2>&1; echo "tests rc=$?"; tail -3 $L
for which in 8b:autotune_qkernels_s31run6 1b:autotune_on_after_decode_s31run1; do
  L=$OUT/bf16x2_modes_${which%%:*}_s32run1.log; t0=$SECONDS
  timeout 190 python3 benchmarks/bf16x2_modes.py --cache benchmarks/results/${which#*:}_h200_2026-11-28.json \
    --modes 0,2,3 --top 3 --rounds 5 --name bf16x2_modes_${which%%:*}_s32run1 > $L 2>&1
  echo "${which%%:*} rc=$? in $((SECONDS - t0)) s"; grep -v "^{" $L | tail -12
done
true
