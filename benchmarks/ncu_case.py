"""One GEMM shape run a few times, for Nsight Compute:
  ncu --clock-control none -k regex:wgmma --launch-skip 2 --launch-count 1 \\
      python benchmarks/ncu_case.py M N K [LQQ_FORCE_CONFIG text]"""
import os
import sys

import cupy as cp
import numpy as np

import lqq

M, N, K = map(int, sys.argv[1:4])
if len(sys.argv) > 4:
    os.environ["LQQ_FORCE_CONFIG"] = sys.argv[4]
rng = np.random.default_rng(0)
w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
xq, xs = lqq.quantize_activation(cp.asarray(rng.standard_normal((M, K)).astype(np.float16)))
out = cp.empty((M, N), cp.float16)
for _ in range(4):
    lqq.gemm((xq, xs), w, out=out, check_finite=False)
cp.cuda.get_current_stream().synchronize()
print("ran", M, N, K, os.environ.get("LQQ_FORCE_CONFIG", "heuristic"))
