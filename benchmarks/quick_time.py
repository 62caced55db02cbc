"""Timings for a few shapes (CUDA graphs, rotated weights), the heuristic's
plan or a forced one: python benchmarks/quick_time.py M,N,K[:config] ..."""
import os
import sys

import numpy as np

from lqq import bench, gpu_gemm, tune_cache

rng = np.random.default_rng(0)
for arg in sys.argv[1:]:
    shape, _, force = arg.partition(":")
    M, N, K = map(int, shape.split(","))
    if force:
        os.environ["LQQ_FORCE_CONFIG"] = force
    else:
        os.environ.pop("LQQ_FORCE_CONFIG", None)
    calls, wbytes = bench._lqq_calls(N, K, M, rng, with_quant=False)   # group size 64
    t = bench.time_calls(calls, 20, 7)
    plan = tune_cache.plan_text(gpu_gemm.choose(M, N, K, 64))   # what ran
    print(f"M={M} N={N} K={K} {plan}: {t:.4f} ms, {2 * M * N * K / t * 1e-9:.0f} TOP/s, "
          f"{wbytes / t * 1e-9:.2f} TB/s", flush=True)
    del calls
