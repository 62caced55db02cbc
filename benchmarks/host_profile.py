"""Where the host time of an eager lqq.gemm call goes: cProfile over 300
back-to-back calls (pre-quantized input, then float input), top functions by
own time. python benchmarks/host_profile.py [M,N,K]"""
import cProfile
import pstats
import sys

import cupy as cp
import numpy as np

import lqq

M, N, K = map(int, (sys.argv[1] if len(sys.argv) > 1 else "1,4096,4096").split(","))
rng = np.random.default_rng(0)
w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
x = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
xq = lqq.quantize_activation(x)
out = cp.empty((M, N), cp.float16)
for inp in (xq, x):
    for _ in range(20):
        lqq.gemm(inp, w, out=out, check_finite=False)
    cp.cuda.get_current_stream().synchronize()
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(300):
        lqq.gemm(inp, w, out=out, check_finite=False)
    prof.disable()
    cp.cuda.get_current_stream().synchronize()
    print("==", "pre-quantized" if inp is xq else "float", "input; per call us = tottime / 300 * 1e6")
    pstats.Stats(prof).sort_stats("tottime").print_stats(22)
