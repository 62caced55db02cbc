"""The wgmma kernel against the mma.sync heuristic on Llama-3-8B shapes
(CUDA-graph timing, rotated weights). Usage: python benchmarks/wgmma_probe.py"""
import os

import cupy as cp
import numpy as np

import lqq
from lqq import bench

rng = np.random.default_rng(0)
print("| layer | M | heuristic ms | wgmma bn64 ms | wgmma bn128 ms | best TOP/s |")
print("|---|---|---|---|---|---|")
for name in ("L3-8B qkv", "L3-8B gate_up", "L3-8B down"):
    N, K = bench.SHAPES[name]
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    ws = bench.rotated_weights(w)
    for M in (64, 256, 1024, 4096):
        xq, xs = lqq.quantize_activation(cp.asarray(rng.standard_normal((M, K)).astype(np.float16)))
        out = cp.empty((M, N), cp.float16)
        calls = [lambda v=v: lqq.gemm((xq, xs), v, out=out, check_finite=False) for v in ws]
        times = []
        for force in (None, "wgmma_bn64_st4", "wgmma_bn128_st4"):
            if force:
                os.environ["LQQ_FORCE_CONFIG"] = force
            else:
                os.environ.pop("LQQ_FORCE_CONFIG", None)
            times.append(bench.time_calls(calls, 10, 5))
        os.environ.pop("LQQ_FORCE_CONFIG", None)
        print(f"| {name} | {M} | " + " | ".join(f"{t:.4f}" for t in times)
              + f" | {2 * M * N * K / min(times) * 1e-9:.0f} |")
