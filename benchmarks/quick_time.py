"""Timings for a few shapes (CUDA graphs, rotated weights), the heuristic's
plan or a forced one: python benchmarks/quick_time.py M,N,K[:config] ..."""
import os
import sys

import cupy as cp
import numpy as np

import lqq
from lqq import bench, gpu_gemm, tune_cache

rng = np.random.default_rng(0)
for arg in sys.argv[1:]:
    shape, _, force = arg.partition(":")
    M, N, K = map(int, shape.split(","))
    if force:
        os.environ["LQQ_FORCE_CONFIG"] = force
    else:
        os.environ.pop("LQQ_FORCE_CONFIG", None)
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    ws = bench.rotated_weights(w)
    xq, xs = lqq.quantize_activation(cp.asarray(rng.standard_normal((M, K)).astype(np.float16)))
    out = cp.empty((M, N), cp.float16)
    t = bench.time_calls([lambda v=v: lqq.gemm((xq, xs), v, out=out, check_finite=False)
                          for v in ws], 20, 7)
    plan = tune_cache.plan_text(gpu_gemm.choose(M, N, K, w.group_size))   # what ran
    print(f"M={M} N={N} K={K} {plan}: {t:.4f} ms, {2 * M * N * K / t * 1e-9:.0f} TOP/s, "
          f"{w.nbytes / t * 1e-9:.2f} TB/s", flush=True)
    del ws
