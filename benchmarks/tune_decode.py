"""Sweep decode configs and K splits on the Llama shapes (M = 1 and 16) to
inform the heuristic; prints the best few per shape and the heuristic's own
pick. Usage on a GPU machine: python benchmarks/tune_decode.py"""
import os

import cupy as cp
import numpy as np

import lqq
from lqq import bench, configs, gpu_gemm

rng = np.random.default_rng(0)
for name in ("L3-8B o", "L3-8B gate_up", "L3-70B o", "L3-70B down"):
    N, K = bench.SHAPES[name]
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    ws = bench.rotated_weights(w)
    for M in (1, 16):
        xq, xs = lqq.quantize_activation(cp.asarray(rng.standard_normal((M, K)).astype(np.float16)))
        out = cp.empty((M, N), cp.float16)
        calls = [lambda v=v: lqq.gemm((xq, xs), v, out=out, check_finite=False) for v in ws]
        os.environ.pop("LQQ_FORCE_CONFIG", None)
        h = configs.heuristic(M, N, K, gpu_gemm.sm_count())
        t_h = bench.time_calls(calls, 20, 5)
        res = []
        for cfg in configs.DECODE_CONFIGS:
            if cfg.BM < M:
                continue
            for s in (1, 2, 4, 8, 16):
                os.environ["LQQ_FORCE_CONFIG"] = f"decode_bm{cfg.BM}_rb{cfg.RB}_pf{cfg.PF}_s{s}"
                p = configs.forced(M, N, K)
                res.append((bench.time_calls(calls, 20, 5), cfg.name[-14:], p.splits))
        os.environ.pop("LQQ_FORCE_CONFIG", None)
        res.sort()
        tb = lambda t: w.nbytes / t * 1e-9
        print(f"{name} M={M}: heuristic {h.config.name[-14:]} s{h.splits} {t_h*1e3:.1f} us "
              f"({tb(t_h):.2f} TB/s); best: " + ", ".join(
                  f"{c} s{s} {t*1e3:.1f} us ({tb(t):.2f})" for t, c, s in res[:4]))
