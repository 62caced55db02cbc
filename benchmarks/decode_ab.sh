#!/usr/bin/env bash
# Decode variants on one tree, rounds interleaved: the heuristic against
# forced configs (B8 for M = 1 shapes S8, B16 for M = 16 shapes S16), with the
# copy ceiling first and optional GPU tests (TESTS, a pytest -k expression).
# Table last; logs under $OUT.
#   B8="wgmma_bn8_st8_wg4_c132" S16= TESTS="wg4" benchmarks/decode_ab.sh
set -uo pipefail
OUT=${OUT:-/tmp/lqq-decode-ab}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 LQQ_CACHE_DIR=${LQQ_CACHE_DIR:-/tmp/lqq-decode-cache}
PY=${PYTHON:-python3}
$PY - <<'PYEOF' 2>&1 | tee "$OUT/copy.txt"
from lqq import bench
import torch
print("copy (cudaMemcpyAsync): %.2f TB/s" % bench.copy_bandwidth())
a = torch.empty(1 << 28, device="cuda"); b = torch.empty_like(a)
print("copy (torch copy_): %.2f TB/s" % (2 * a.numel() * 4 / bench.time_torch_calls([lambda: b.copy_(a)], 10, 9) * 1e-9))
PYEOF
B8=${B8:-"wgmma_bn8_st8_c264 wgmma_bn8_st7_wg3_mb2_c264"}
B16=${B16:-"wgmma_bn16_st8_c264 wgmma_bn16_st6_wg3_mb2_c264"}
args=()
for s in ${S8-1,57344,8192 1,8192,28672 1,28672,4096 1,8192,8192}; do
  args+=("$s"); for c in $B8; do args+=("$s:$c"); done; done
for s in ${S16-16,28672,4096 16,57344,8192}; do
  args+=("$s"); for c in $B16; do args+=("$s:$c"); done; done
for r in $(seq 1 "${ROUNDS:-2}"); do
  $PY benchmarks/quick_time.py "${args[@]}" 2>&1 | sed "s/^/r$r /" | tee -a "$OUT/ab.txt"
done
if [ -n "${TESTS:-}" ]; then
  $PY -m pytest -q -p no:cacheprovider -k "$TESTS" tests/test_gpu.py 2>&1 | tail -n 3 | tee "$OUT/tests.txt"
fi
echo; echo "== decode A/B (median of rounds)"
$PY - "$OUT/ab.txt" <<'PYEOF'
import re, sys, statistics, collections
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"r\d+ M=(\d+) N=(\d+) K=(\d+) (\S+): ([\d.]+) ms, \d+ TOP/s, ([\d.]+) TB/s", line)
    if m:
        d[(m[1], m[2], m[3], m[4])].append((float(m[5]), float(m[6])))
for (M, N, K, plan), v in d.items():
    print(f"{M:>3} {N:>6} {K:>6} {plan:34} {statistics.median(x[0] for x in v):.4f} ms "
          f"{statistics.median(x[1] for x in v):.2f} TB/s")
PYEOF
