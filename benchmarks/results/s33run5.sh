#!/usr/bin/env bash
# (as run from .autotune/; its helper setcfg.py is committed as s33_set_config.py)
# session 33 run 5 (H200), tree efb45a0: the step on run 2's tuning with its gate/up + norm pick (BLOCK_N 2, TILES 4,
# mode 3; 520 µs busy in run 3) changed to BLOCK_N 2 TILES 2 and to BLOCK_N 4 TILES 4 (session 32's pick, BLOCK_N 4
# TILES 2, gave 460): does the tile count (the share of weights loaded before the PDL wait) or the rows a tile decide?
# First, run 2's tuning as it is without the early trigger (accel-int4-head-late): does the next GEMV's early launch?
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD ACCEL_COMPILE_THREADS=16
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 .autotune/setcfg.py .autotune/s33_fresh.json /tmp/g_n2t2.json x8192x2048x '{"BLOCK_N": 2, "TILES": 2}'
python3 .autotune/setcfg.py .autotune/s33_fresh.json /tmp/g_n4t4.json x8192x2048x '{"BLOCK_N": 4, "TILES": 4}'
cp .autotune/s33_fresh.json /tmp/g_late.json
for g in late n2t2 n4t4; do
  v=accel-int4-head; [ $g = late ] && v=accel-int4-head-late
  L=$OUT/profile_decode_1b_int4_gateup_${g}_s33run5.log
  ACCEL_AUTOTUNE_CACHE=/tmp/g_$g.json TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$g TRITON_CACHE_DIR=/tmp/tri \
    timeout 60 python3 benchmarks/profile_decode.py --config 1b --variants $v --cudagraphs --timeline \
    --sequence 24 > $L 2>&1
  echo "$g rc=$?"; grep -E "timeline:" $L | cut -c1-60; grep -E "^ +1[6-8] " $L
done
true
