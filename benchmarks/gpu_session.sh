#!/usr/bin/env bash
# One call on the lent GPU machine: run the named stages in order, each under its own time limit, logs and JSON
# under $OUT (copied into benchmarks/results/ afterwards), the autotune cache carried in and out.
#
#   bash benchmarks/gpu_session.sh tests qkernels decode1b-quant ...
#
# Stages: tests (kernel tests on CUDA: bf16 and fp8 included), kernels (bf16 linear / ffn / attention), qkernels
# (qlinear vs cuBLAS and torchao), fp8acc (fp8 accumulation: promotion interval vs speed and error), sweep (GEMV
# meta-parameter grid), gpucheck, decode1b, decode1b-quant (REPEAT=n: n processes), decode1b-ab (decode with $BASE_TREE's accel, then this
# tree's), decode8b, profile1b, compileprof (where compile time goes), compilethreads (a first compile with a fresh
# tuning, ACCEL_COMPILE_THREADS=1 against $COMPILE_THREADS), graphdump (decode steps' CUDA graphs as DOT), hostprof
# (the host's time per decode step, under cProfile).
# torchao comes from wheels carried in .whl (see ../shared/anchors/README.md).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
mkdir -p .autotune && export ACCEL_AUTOTUNE_CACHE=$PWD/.autotune/h200.json; MAIN_CACHE=$ACCEL_AUTOTUNE_CACHE
stage() {  # stage NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%T), limit ${limit}s)"
  local t0=$SECONDS
  # each stage compiles cold (its own Inductor and Triton caches), so that compile times compare across stages
  export TORCHINDUCTOR_CACHE_DIR=/tmp/cache_$name/inductor TRITON_CACHE_DIR=/tmp/cache_$name/triton
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "=== $name rc=$? in $((SECONDS - t0)) s"
  tail -n "${TAIL:-25}" "$OUT/$name.log"
  cp -f "$MAIN_CACHE" "$OUT/autotune_h200.json" 2>/dev/null  # the carried cache, not a stage's own
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, triton, transformers; print(torch.__version__, triton.__version__, transformers.__version__)"
for s in "$@"; do
  case $s in
    tests) stage tests ${T_TESTS:-240} python3 -m pytest tests/runtime -q --maxfail=30 -n 16 -p no:cacheprovider --timeout 200 \
             --deselect tests/runtime/test_sm90_compile.py ${TEST_ARGS:-} ;;
    kernels) stage kernels ${T_KERNELS:-300} python3 benchmarks/kernels.py --ops linear,attention ;;
    qkernels) stage qkernels ${T_QKERNELS:-300} python3 benchmarks/kernels.py --ops qlinear --m "${QM:-1,16,128,2048}" ;;
    fp8acc) stage fp8acc ${T_FP8ACC:-200} python3 benchmarks/fp8_accumulation.py --m "${FP8_M:-2048,128}" --quantize-sweep ;;
    gpucheck) stage gpucheck 200 python3 benchmarks/gpu_check.py ;;
    decode1b) stage decode1b ${T_DECODE:-560} python3 benchmarks/decode.py --config 1b --pos both \
                --variants "${VARIANTS:-eager,inductor,accel}" --runs "${RUNS:-3}" --checks "${CHECKS:-all}" \
                --generate "${GENERATE:-0}" ;;
    decode1b-quant) for r in $(seq "${REPEAT:-1}"); do  # REPEAT > 1: the same decode again in a new process each
                  # time (the host's pace a step has moved 0.34-1.15 ms between processes and variants; session 16)
                  sfx=; [ "${REPEAT:-1}" -gt 1 ] && sfx=_r$r
                  stage decode1b-quant$sfx ${T_DECODE:-560} python3 benchmarks/decode.py --config 1b \
                    --prefill "${PREFILL:-2048}" \
                    --variants "${VARIANTS:-eager,inductor,accel-int8,accel-int4,torchao-int8wo,torchao-int4wo}" \
                    --runs "${RUNS:-3}" --pos "${POS:-host}" --checks "${CHECKS:-all}" --name decode_1b_quant$sfx \
                    ${DECODE_ARGS:-}
                done ;;
    decode1b-ab) for side in base this; do  # the same decode with another tree's accel, then this one's: an A/B of
                  # two trees in one call (BASE_TREE holds an accel package: git archive <commit> accel | tar -x -C
                  # .base, carried; each side compiles cold, its JSON records the accel path and source hash)
                  from=(); [ "$side" = base ] && from=(--accel-from "${BASE_TREE:-.base}")
                  stage decode1b-ab-$side ${T_DECODE:-280} python3 benchmarks/decode.py --config 1b \
                    --prefill "${PREFILL:-2048}" --variants "${VARIANTS:-inductor,accel-int8-head,accel-int4-head}" \
                    --runs "${RUNS:-3}" --pos "${POS:-device}" --checks "${CHECKS:-speed}" --name decode_1b_ab_$side \
                    ${from[@]+"${from[@]}"}
                done ;;
    decode8b) stage decode8b ${T_DECODE:-560} python3 benchmarks/decode.py --config 8b --pos both \
                --variants "${VARIANTS:-eager,inductor,accel}" --runs "${RUNS:-2}" --checks "${CHECKS:-all}" ;;
    sweep) stage sweep ${T_SWEEP:-400} python3 benchmarks/gemv_sweep.py --shapes "${SWEEP_SHAPES:-1b,8b}" \
             --kinds "${SWEEP_KINDS:-bf16}" --budget-s "${SWEEP_BUDGET:-240}" ;;
    profile1b) stage profile1b ${T_PROFILE:-200} python3 benchmarks/profile_decode.py --config 1b --variants "${PROFILE_VARIANTS:-inductor,accel}" ${PROFILE_ARGS:-} ;;
    compileprof) stage compileprof ${T_COMPILEPROF:-300} python3 benchmarks/profile_compile.py --config "${COMPILE_CONFIG:-1b}" \
                   --variants "${COMPILE_VARIANTS:-inductor,accel}" ;;
    compilethreads) for n in 1 ${COMPILE_THREADS:-8}; do  # each tunes into its own fresh cache, kept in $OUT
                      rm -f "$OUT/autotune_threads$n.json"
                      ACCEL_AUTOTUNE_CACHE=$OUT/autotune_threads$n.json ACCEL_COMPILE_THREADS=$n \
                        stage compilethreads$n ${T_COMPILEPROF:-300} \
                        python3 benchmarks/profile_compile.py --config 1b --variants "${COMPILE_VARIANTS:-accel-int8-head}"
                    done ;;
    graphdump) stage graphdump ${T_GRAPHDUMP:-300} python3 benchmarks/graph_dump.py \
                 --variants "${GRAPH_VARIANTS:-accel-int8-head,accel-int4-head}" ;;
    hostprof) stage hostprof ${T_HOSTPROF:-200} python3 benchmarks/host_profile.py --config 1b \
                --variants "${HOST_VARIANTS:-inductor,accel-int8-head}" --steps "${HOST_STEPS:-200}" ;;
    *) echo "unknown stage $s" ;;
  esac
done
find "$OUT" -name '*.json' -newer "$0" -maxdepth 1 | head -50
