#!/usr/bin/env bash
# SM clock, memory clock and power while one plan runs back to back, per
# variant tree of .ab/ (benchmarks/ab_prepare.sh): does a variant run at a
# different clock? nvidia-smi samples every 50 ms while a CUDA graph of 200
# calls of one shape replays CW_GROUPS times (250: about 3 s at 60 us a
# call); the table gives each tree's medians and its ms per call.
#   CW_SHAPE=1,57344,8192 CW_TREES="main ring" benchmarks/clock_watch.sh
set -uo pipefail
OUT=${OUT:-/tmp/lqq-clock}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LQQ_CACHE_DIR=${LQQ_CACHE_DIR:-/tmp/lqq-ab-cache}
PY=${PYTHON:-python3}
shape=${CW_SHAPE:?set CW_SHAPE, e.g. 1,57344,8192}
trees=${CW_TREES:?set CW_TREES, e.g. "main ring"}
loader='
import sys
import numpy as np
from lqq import bench
M, N, K = map(int, sys.argv[1].split(","))
calls, _ = bench._lqq_calls(N, K, M, np.random.default_rng(0), with_quant=False)
bench.time_calls(calls, 20, 3)                       # compile, pack, warm up
print("ready", flush=True)
print(f"{bench.time_calls(calls, 200, int(sys.argv[2])):.4f} ms a call", flush=True)
'
for v in $trees; do
  # sampling starts at "ready", so it covers only the replays
  PYTHONPATH=".ab/$v" $PY -c "$loader" "$shape" "${CW_GROUPS:-250}" > "$OUT/load-$v.txt" 2>&1 &
  load=$!
  until grep -q ready "$OUT/load-$v.txt" 2>/dev/null || ! kill -0 "$load" 2>/dev/null; do sleep 0.2; done
  grep -q ready "$OUT/load-$v.txt" || { wait "$load"; continue; }     # it failed: the table says how
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,power.draw --format=csv,noheader,nounits \
    -lms 50 > "$OUT/clock-$v.csv" 2>&1 &
  smi=$!
  wait "$load"; kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
done
$PY - "$OUT" $trees <<'EOF'
import os, statistics, sys
out, trees = sys.argv[1], sys.argv[2:]
print("| tree | samples | SM MHz | memory MHz | power W | ms a call |")
print("|---|---|---|---|---|---|")
for v in trees:
    rows = []
    for line in open(f"{out}/clock-{v}.csv") if os.path.exists(f"{out}/clock-{v}.csv") else []:
        try:
            rows.append([float(x) for x in line.split(",")])
        except ValueError:
            continue                     # an error line
    last = open(f"{out}/load-{v}.txt").read().strip().splitlines()[-1:] or ["(no output)"]
    ms = last[0].split()[0] if last[0].endswith("ms a call") else "failed: " + last[0][:60]
    if rows:
        sm, mem, watts = (statistics.median(c) for c in zip(*rows))
        print(f"| {v} | {len(rows)} | {sm:.0f} | {mem:.0f} | {watts:.0f} | {ms} |")
    else:
        print(f"| {v} | 0 | - | - | - | {ms} |")
EOF
