#!/usr/bin/env bash
# A/B of git refs on the GPU machine, step 2 (there): time every variant of
# .ab/ (benchmarks/ab_prepare.sh) with quick_time.py on the same shapes, rounds
# interleaved (order reversed every other round), each variant imported from
# its own tree. Optional per-variant GPU tests. Table last; logs under $OUT.
#   AB_SHAPES="64,8192,8192 4096,4096,14336:wgmma_bn256_st5" AB_ROUNDS=2 \
#   AB_TESTS="-k wgmma" benchmarks/ab_run.sh
#   AB_TREES="main ring" AB_SHAPES=... benchmarks/ab_run.sh    # some of .ab/'s trees
set -uo pipefail
OUT=${OUT:-/tmp/lqq-ab}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 LQQ_CACHE_DIR=${LQQ_CACHE_DIR:-/tmp/lqq-ab-cache}
PY=${PYTHON:-python3}
# in the order ab_prepare.sh was given; AB_TREES="main rows" times a subset
names=$(echo ${AB_TREES:-$(cut -d: -f1 .ab/REFS)} | tr ' ' '\n')   # one a line (tac reverses)
cat .ab/REFS
for r in $(seq 1 "${AB_ROUNDS:-2}"); do
  order=$names; (( r % 2 == 0 )) && order=$(echo "$names" | tac)
  for v in $order; do
    PYTHONPATH=".ab/$v" $PY ".ab/$v/benchmarks/quick_time.py" ${AB_SHAPES:?set AB_SHAPES} 2>&1 \
      | sed "s/^/$v /" >> "$OUT/ab.txt"
  done
done
if [ -n "${AB_TESTS:-}" ]; then
  for v in $names; do          # from inside the tree: python -m puts it first on sys.path
    (cd ".ab/$v" && $PY -m pytest -q -p no:cacheprovider ${AB_TESTS} tests/test_gpu.py 2>&1) \
      | tail -n 1 | sed "s/^/$v tests: /" | tee -a "$OUT/tests.txt"
  done
fi
$PY benchmarks/ab_table.py "$OUT/ab.txt" | tee "$OUT/ab.md"
