"""Eager (no CUDA graph) cost per lqq.gemm call: 200 back-to-back calls on one
stream, one sync at the end, median of 5. Shows the per-call host overhead
that CUDA graphs hide.
python benchmarks/eager_time.py M,N,K ...   (LQQ_PDL=0 to compare launch paths)"""
import sys
import time

import cupy as cp
import numpy as np

import lqq


def per_call_us(fn, calls=200, reps=5):
    for _ in range(20):
        fn()
    cp.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        cp.cuda.get_current_stream().synchronize()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return float(np.median(times))


rng = np.random.default_rng(0)
for arg in sys.argv[1:]:
    M, N, K = map(int, arg.split(","))
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    x = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
    xq = lqq.quantize_activation(x)
    out = cp.empty((M, N), cp.float16)
    t_float = per_call_us(lambda: lqq.gemm(x, w, out=out, check_finite=False))
    t_int8 = per_call_us(lambda: lqq.gemm(xq, w, out=out, check_finite=False))
    print(f"M={M} N={N} K={K}: eager {t_float:.1f} us/call (float input), "
          f"{t_int8:.1f} us/call (pre-quantized)", flush=True)
