#!/usr/bin/env bash
# Split-K inside clusters (configs.WgmmaConfig.KS) against the heuristic's
# plan: its GPU tests, racecheck on its cases, then quick_time, two rounds.
#   OUT=... benchmarks/ks_ab.sh
set -uo pipefail
OUT=${OUT:-/tmp/lqq-ks-ab}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export LQQ_CACHE_DIR=${LQQ_CACHE_DIR:-/tmp/lqq-gpu-check-cache}
PY=${PYTHON:-python3}
$PY -m pytest -q -p no:cacheprovider tests/test_gpu.py -k "cluster_split or (epilogue_paths and ks)" \
  > "$OUT/ks-tests.txt" 2>&1
echo "tests: $(tail -n 1 "$OUT/ks-tests.txt")"
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    LQQ_SANITIZE_ONLY=_ks compute-sanitizer --tool $tool --error-exitcode 9 $PY benchmarks/sanitize_case.py \
      > "$OUT/ks-$tool.txt" 2>&1
    echo "$tool: exit $? ($(grep -c '^ok' "$OUT/ks-$tool.txt") ok; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/ks-$tool.txt" | tail -n 1))"
  done
fi
for r in 1 2; do
  $PY benchmarks/quick_time.py ${KS_SHAPES:-\
    64,4096,4096 64,4096,4096:wgmma_bn64_st4_ks2 64,4096,4096:wgmma_bn64_st4_ks4 \
    128,4096,4096 128,4096,4096:wgmma_bn128_st4_ks4 128,4096,4096:wgmma_bn128_st4_ks2 \
    128,4096,4096:wgmma_bn64_st8_wg4_ks2 \
    256,4096,4096 256,4096,4096:wgmma_bn256_st4_ks2 256,4096,4096:wgmma_bn128_st4_ks2 \
    64,6144,4096 64,6144,4096:wgmma_bn64_st4_ks2 \
    128,6144,4096 128,6144,4096:wgmma_bn128_st4_ks2 128,6144,4096:wgmma_bn64_st8_wg4_ks2 \
    128,8192,8192 128,8192,8192:wgmma_bn128_st4_ks2 \
    128,4096,14336 128,4096,14336:wgmma_bn128_st4_ks4 \
    64,8192,8192 64,8192,8192:wgmma_bn64_st4_ks2} 2>&1 | tee "$OUT/ks-time-$r.txt"
done
