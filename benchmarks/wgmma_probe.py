"""The Hopper kernel's configs side by side on the Llama-3 layers (CUDA-graph
timing, rotated weights): the heuristic's plan, every wgmma tile near M on one
wave, two waves and one CTA per tile, and the mma.sync path. Prints a table
(best variant per shape) and writes every timing to $OUT/probe.json.
Usage: python benchmarks/wgmma_probe.py [--layers "L3-8B o,L3-70B gate_up"] [--m 1,16,256]"""
import argparse
import json
import os
import sys

import cupy as cp
import numpy as np

import lqq
from lqq import bench, configs, gpu_gemm, tune_cache
from lqq.autotune import pinned

ap = argparse.ArgumentParser()
ap.add_argument("--layers", default="L3-8B o,L3-8B gate_up,L3-8B down,L3-70B gate_up")
ap.add_argument("--m", default="1,16,64,256,1024,4096")
args = ap.parse_args()
rng = np.random.default_rng(0)
sms = gpu_gemm.sm_count()
rows = []
print("| layer | M | heuristic | ms | best | ms | mma.sync ms | best TOP/s | best TB/s |")
print("|---|---|---|---|---|---|---|---|---|")
for name in args.layers.split(","):
    N, K = bench.SHAPES[name]
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    ws = bench.rotated_weights(w)
    for M in map(int, args.m.split(",")):
        xq, xs = lqq.quantize_activation(cp.asarray(rng.standard_normal((M, K)).astype(np.float16)))
        out = cp.empty((M, N), cp.float16)
        calls = [lambda v=v: lqq.gemm((xq, xs), v, out=out, check_finite=False) for v in ws]
        heur_plan = configs.heuristic(M, N, K, sms, wgmma=True)
        heur = tune_cache.plan_text(heur_plan)
        plans = {heur: heur_plan}                      # text -> plan, the heuristic's first
        for cfg in configs.WGMMA_CONFIGS:
            if M / 4 <= cfg.BN <= max(16, 2 * M):
                tiles, _ = configs.wgmma_units(cfg, M, N, K)
                for ctas in (sms * cfg.MINB, 2 * sms * cfg.MINB, tiles):
                    p = configs.plan(cfg, M, N, K, ctas=ctas)
                    plans.setdefault(tune_cache.plan_text(p), p)
        portable_plan = bench.portable_plan(M, N, K)
        portable = tune_cache.plan_text(portable_plan)
        plans[portable] = portable_plan
        times = {}
        for t, p in plans.items():
            try:
                with pinned(p):
                    times[t] = bench.time_calls(calls, 10, 5)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"{name} M={M} {t}: {type(e).__name__}: {e}", file=sys.stderr)
        wg = {t: v for t, v in times.items() if t != portable}
        best = min(wg, key=wg.get)
        rows.append({"layer": name, "N": N, "K": K, "M": M, "heuristic": heur, "portable": portable,
                     "times_ms": times})
        print(f"| {name} | {M} | {heur} | {times.get(heur, float('nan')):.4f} | {best} | "
              f"{wg[best]:.4f} | {times.get(portable, float('nan')):.4f} | "
              f"{2 * M * N * K / wg[best] * 1e-9:.0f} | {w.nbytes / wg[best] * 1e-9:.2f} |", flush=True)
        del calls
    del ws
    cp.get_default_memory_pool().free_all_blocks()
out = os.environ.get("OUT", "/tmp")
with open(os.path.join(out, "probe.json"), "w") as f:
    json.dump(rows, f, indent=1)
