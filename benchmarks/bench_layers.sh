#!/usr/bin/env bash
# `lqq bench` one layer at a time, appending JSON lines to $OUT/bench.jsonl, so
# a run cut short by a time limit keeps the layers it finished; prints the
# table of everything at the end.  BENCH_M (default 1,16,64,256,1024,4096).
OUT=${OUT:-/tmp/lqq-bench}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}
for layer in "8B o" "8B qkv" "8B gate_up" "8B down" "70B o" "70B gate_up" "70B down"; do
  $PY -m lqq bench --layers "$layer" --m "${BENCH_M:-1,16,64,256,1024,4096}" --groups "${BENCH_GROUPS:-7}" \
    --json 2>> "$OUT/bench.err" | $PY -c "import json,sys; [print(json.dumps(r)) for r in json.load(sys.stdin)]" \
    >> "$OUT/bench.jsonl"
done
$PY -c "import json; from lqq import bench; print(bench.table([json.loads(l) for l in open('$OUT/bench.jsonl')]))"
