#!/usr/bin/env bash
# The GPU evidence, in one command, on a machine with a CUDA GPU and lqq's
# dependencies already installed (run from the repo root):
#   tests (GPU and CPU), compute-sanitizer memcheck + racecheck on small GEMMs,
#   and the benchmark. Logs go under $OUT (default /tmp/lqq-gpu-check); the
#   summary table is printed last.
#   BENCH_M=1,16,64 BENCH_LAYERS="8B" benchmarks/gpu_check.sh   # a shorter benchmark
#   BENCH=0 benchmarks/gpu_check.sh                              # no benchmark
#   TUNE_M=1,16 benchmarks/gpu_check.sh                          # a shorter autotune
#   TUNE_MODELS="Llama-3-8B Llama-3-70B" TUNE_M=1,4,16,32,64,128,256,512,1024,2048,4096 \
#     STEPS=autotune benchmarks/gpu_check.sh     # a full run; $OUT/autotune-cache.json holds it
#                                                (moved out of the cache: `bench` measures the heuristic)
#   STEPS="bench" benchmarks/gpu_check.sh                          # some steps only (default:
#                                           tests sanitizer examples autotune bench; also
#                                           `host`: eager per-call cost and quantize vs GEMM;
#                                           `probe`: benchmarks/probe_stages.py on PROBE_SHAPES;
#                                           `fused`: the fused decode path's tests, racecheck and
#                                           quant_ab with LQQ_FUSED_QUANT=0/1 on FUSED_SHAPES;
#                                           `decode`: benchmarks/decode_ab.sh; `ab`: benchmarks/ab_run.sh;
#                                           `ncu`: Nsight Compute's throughput and stall sections on
#                                           NCU_SHAPES, M,N,K[:config] each, and with NCU_SOURCE=1
#                                           stall samples per SASS instruction (CSV), NCU_METRICS
#                                           extra metrics (comma-separated); `fixed`: benchmarks/fixed_cost.py
#                                           (an empty launch, the shortest K, the full GEMM) on
#                                           FIXED_SHAPES; `ks`: split-K in clusters
#                                           (its tests, sanitizer cases, quick_time against the
#                                           heuristic on KS_SHAPES, two rounds))
set -uo pipefail
OUT=${OUT:-/tmp/lqq-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# compiled kernels outside $OUT, which should hold only the logs worth bringing back
export LQQ_CACHE_DIR=${LQQ_CACHE_DIR:-/tmp/lqq-gpu-check-cache}
PY=${PYTHON:-python3}
STEPS=" ${STEPS:-tests sanitizer examples autotune bench} "
[ "${BENCH:-1}" = 0 ] && STEPS=${STEPS/ bench / }
step() { [[ "$STEPS" == *" $1 "* ]]; }
status=()

$PY -m lqq info | tee "$OUT/info.txt"

if step tests; then
$PY -m pytest -q -p no:cacheprovider -m "not slow" tests 2>&1 | tee "$OUT/tests.txt"
status+=("tests: exit ${PIPESTATUS[0]} ($(tail -n 1 "$OUT/tests.txt"))")
fi

if ! step sanitizer; then
  :
elif command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    compute-sanitizer --tool $tool --error-exitcode 9 $PY benchmarks/sanitize_case.py \
      > "$OUT/sanitizer-$tool.txt" 2>&1
    status+=("compute-sanitizer $tool: exit $? ($(grep -c '^ok' "$OUT/sanitizer-$tool.txt") cases ok; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.txt" | tail -n 1))")
  done
else
  status+=("compute-sanitizer: not found")
fi

if step examples; then
for ex in numpy_interop torch_interop; do
  (cd examples && $PY $ex.py) > "$OUT/example-$ex.txt" 2>&1
  status+=("example $ex: exit $?")
done
(cd examples && $PY llama_block.py) > "$OUT/llama_block.md" 2>&1
status+=("example llama_block: exit $?")
fi

if step autotune; then
: > "$OUT/autotune.txt"
for model in ${TUNE_MODELS:-Llama-3-8B}; do
  $PY -m lqq autotune --model "$model" --m "${TUNE_M:-1,16,64,256}" --json > "$OUT/autotune-$model.json" \
    2>> "$OUT/autotune.err"
  status+=("autotune $model: exit $?")
  $PY -c "import json; [print(r['N'], r['K'], 'M', r['m_bucket'], r['winner'], 'x%.2f vs heuristic' % r['speedup_vs_heuristic']) for r in json.load(open('$OUT/autotune-$model.json'))]" \
    >> "$OUT/autotune.txt" 2>> "$OUT/autotune.err"
done
# this GPU's tuning file (every candidate's time, for benchmarks/results and
# heuristic_vs_tuned.py) moves out of the cache, so the later steps measure
# the heuristic, what a user gets without `lqq autotune`
cache=$($PY -c "from lqq import tune_cache as t; print(t.path_for(t.device_fingerprint()))" 2>> "$OUT/autotune.err")
if [ -n "$cache" ] && [ -f "$cache" ]; then
  mv "$cache" "$OUT/autotune-cache.json"
  $PY benchmarks/heuristic_vs_tuned.py "$OUT/autotune-cache.json" 2>> "$OUT/autotune.err" | tail -n 1 >> "$OUT/autotune.txt"
  status+=("autotune file: \$OUT/autotune-cache.json (out of the cache: later steps run the heuristic)")
else
  status+=("autotune file: none at '${cache}' (see autotune.err): exit 1")
fi
$PY benchmarks/first_call.py > "$OUT/first_call.txt" 2>&1
status+=("first call: $(tr '\n' ';' < "$OUT/first_call.txt")")
fi

if step host; then
$PY benchmarks/eager_time.py 1,4096,4096 16,28672,4096 > "$OUT/host.txt" 2>&1
for pdl in 0 1; do
  LQQ_PDL=$pdl $PY benchmarks/quant_ab.py 1,8192,28672 64,8192,28672 256,8192,28672 \
    >> "$OUT/host.txt" 2>&1
done
status+=("host: exit $?")
fi

if step fused; then          # not in the default steps: the fused decode path, exact and timed
$PY -m pytest -q -p no:cacheprovider tests/test_gpu.py -k fused_decode > "$OUT/fused.txt" 2>&1
status+=("fused tests: $(tail -n 1 "$OUT/fused.txt")")
if command -v compute-sanitizer >/dev/null; then
  LQQ_SANITIZE_ONLY=fx16 compute-sanitizer --tool racecheck --error-exitcode 9 $PY benchmarks/sanitize_case.py \
    >> "$OUT/fused.txt" 2>&1
  status+=("fused racecheck: exit $?")
fi
for r in 1 2; do for f in 0 1; do
  LQQ_FUSED_QUANT=$f $PY benchmarks/quant_ab.py ${FUSED_SHAPES:-1,4096,4096 1,6144,4096 1,28672,4096 1,4096,14336 4,8192,8192 1,57344,8192 1,8192,28672 8,28672,4096} \
    >> "$OUT/fused.txt" 2>&1
  status+=("fused quant_ab round $r LQQ_FUSED_QUANT=$f: exit $?")
done; done
fi

if step probe; then          # not in the default steps: where the Hopper kernel waits
$PY benchmarks/probe_stages.py ${PROBE_SHAPES:-64,8192,8192 1,8192,8192 1,57344,8192 4096,4096,14336} \
  > "$OUT/probe.txt" 2>&1
status+=("probe: exit $?")
fi

if step ncu; then            # not in the default steps: Nsight Compute on one launch per shape
: > "$OUT/ncu.txt"
# NCU_METRICS=a,b,...: extra metrics for the same run, those this ncu knows
# (an unknown name would stop the whole profile)
# (names with a ':', such as regex: or breakdown:, pass unchecked)
extra=
if [ -n "${NCU_METRICS:-}" ]; then
  known=${TMPDIR:-/tmp}/lqq-ncu-known.txt
  ncu --query-metrics > "$known" 2>&1 \
    || echo "NCU_METRICS: ncu --query-metrics failed (exit $?): unchecked names are left out" >> "$OUT/ncu.txt"
  for m in ${NCU_METRICS//,/ }; do
    if [[ "$m" == *:* ]] || grep -q "^${m%%.*} " "$known"; then extra+=${extra:+,}$m
    else echo "NCU_METRICS: $m unknown to this ncu, left out" >> "$OUT/ncu.txt"; fi
  done
fi
for shape in ${NCU_SHAPES:-128,4096,4096 128,57344,8192}; do
  echo "== ncu $shape" >> "$OUT/ncu.txt"
  mnk=${shape%%:*}; cfg=; [[ "$shape" == *:* ]] && cfg=${shape#*:}
  tag=${shape//[,:]/x}; rep=/tmp/lqq-ncu-$tag
  rm -f "$rep.ncu-rep"                   # a failed run must not print an old report
  # one profiled launch; with NCU_SOURCE=1 it also samples stalls per SASS instruction
  ncu --clock-control none -k regex:wgmma --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    --section WarpStateStats --section SchedulerStats --section LaunchStats --section Occupancy \
    $([ "${NCU_SOURCE:-0}" = 1 ] && echo --section SourceCounters) ${extra:+--metrics $extra} -f -o "$rep" \
    $PY benchmarks/ncu_case.py ${mnk//,/ } $cfg >> "$OUT/ncu.txt" 2>&1
  r1=$?
  ncu -i "$rep.ncu-rep" >> "$OUT/ncu.txt" 2>&1
  status+=("ncu $shape: exit $r1 (profile), exit $? (details)")
  if [ "${NCU_SOURCE:-0}" = 1 ]; then   # the stall samples and raw metrics, as CSV
    ncu -i "$rep.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu-sass-$tag.csv" 2>> "$OUT/ncu.txt"
    r2=$?
    ncu -i "$rep.ncu-rep" --page raw --csv > "$OUT/ncu-raw-$tag.csv" 2>> "$OUT/ncu.txt"
    status+=("ncu source $shape: exit $r2 (source page), exit $? (raw page)")
  fi
done
fi

if step ks; then             # not in the default steps: split-K inside clusters (WgmmaConfig.KS)
$PY -m pytest -q -p no:cacheprovider tests/test_gpu.py -k "cluster_split or (epilogue_paths and ks)" \
  > "$OUT/ks.txt" 2>&1
status+=("ks tests: $(tail -n 1 "$OUT/ks.txt")")
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    LQQ_SANITIZE_ONLY=_ks compute-sanitizer --tool $tool --error-exitcode 9 $PY benchmarks/sanitize_case.py \
      >> "$OUT/ks.txt" 2>&1
    status+=("ks $tool: exit $?")
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
    64,8192,8192 64,8192,8192:wgmma_bn64_st4_ks2} >> "$OUT/ks.txt" 2>&1
  status+=("ks quick_time round $r: exit $?")
done
fi

if step fixed; then           # not in the default steps: a launch's fixed cost against its stream
$PY benchmarks/fixed_cost.py ${FIXED_SHAPES:-64,8192,8192 64,4096,14336 64,4096,4096 \
  128,28672,4096 128,4096,4096 128,8192,8192 256,57344,8192} > "$OUT/fixed.md" 2>&1
status+=("fixed cost: exit $?")
fi

if step decode; then          # not in the default steps: benchmarks/decode_ab.sh (B8, B16, S8, S16)
OUT="$OUT/decode" bash benchmarks/decode_ab.sh > "$OUT/decode.txt" 2>&1
status+=("decode A/B: exit $?")
fi

if step ab; then              # not in the default steps: the trees of benchmarks/ab_prepare.sh
OUT="$OUT/ab" bash benchmarks/ab_run.sh > "$OUT/ab.txt" 2>&1
status+=("ab: exit $?")
fi

if step bench; then
$PY -m lqq bench --m "${BENCH_M:-1,16,64,256,1024,4096}" ${BENCH_LAYERS:+--layers $BENCH_LAYERS} \
  --groups "${BENCH_GROUPS:-7}" --json > "$OUT/bench.json" 2> "$OUT/bench.err"
status+=("bench: exit $?")
$PY -c "import json,sys; from lqq import bench; print(bench.table(json.load(open('$OUT/bench.json'))))" \
  > "$OUT/bench.md" 2>> "$OUT/bench.err"
fi

echo
# a copied tree may carry a stale .git: say so when the files differ from HEAD
commit=${LQQ_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
[ -z "${LQQ_COMMIT:-}" ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] \
  && commit="$commit+modified (set LQQ_COMMIT)"
echo "== summary ($(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1), commit $commit)"
printf '%s\n' "${status[@]}"
[ -f "$OUT/autotune.txt" ] && { echo; echo "autotune (tuned vs heuristic):"; cat "$OUT/autotune.txt"; }
[ -f "$OUT/llama_block.md" ] && { echo; echo "llama_block (one Llama-3-8B layer's linears):"; cat "$OUT/llama_block.md"; }
[ -f "$OUT/host.txt" ] && { echo; echo "host path (eager us/call; quantize vs GEMM, PDL off then on):"; cat "$OUT/host.txt"; }
[ -f "$OUT/ks.txt" ] && { echo; echo "split-K in clusters (tests, sanitizer, quick_time):"
  grep -E "passed|failed|SUMMARY|^ok|^M=" "$OUT/ks.txt"; }
[ -f "$OUT/probe.txt" ] && { echo; echo "probe (benchmarks/probe_stages.py):"; cat "$OUT/probe.txt"; }
[ -f "$OUT/fixed.md" ] && { echo; echo "fixed cost (benchmarks/fixed_cost.py):"; cat "$OUT/fixed.md"; }
[ -f "$OUT/fused.txt" ] && { echo; echo "fused decode path (tests, racecheck, quant_ab off/on):"
  grep -E "passed|failed|rror|^ok|SUMMARY|LQQ_PDL|^M=" "$OUT/fused.txt"; }
[ -f "$OUT/decode.txt" ] && { echo; sed -n '/== decode A\/B/,$p' "$OUT/decode.txt"; }
[ -f "$OUT/ab.txt" ] && { echo; echo "A/B of .ab trees:"; tail -n 40 "$OUT/ab.txt"; }
[ -f "$OUT/bench.md" ] && { echo; cat "$OUT/bench.md"; }
# the script's status: 1 where a step failed (a non-zero exit or failed
# tests in its summary line), else 0 (not the status of the last test above;
# grep reads all its input, so printf never dies of SIGPIPE under pipefail)
printf '%s\n' "${status[@]}" | grep -E 'exit [1-9]|(^|[^0-9.])[1-9][0-9]* (failed|errors?)' > /dev/null && exit 1
exit 0
