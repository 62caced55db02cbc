"""Activation quantization alone, GEMM alone (pre-quantized) and both (float
input), each as a CUDA graph of back-to-back calls with rotated weights, so
the cost of quantizing inside lqq.gemm can be told apart from the kernels'
interplay (run once with LQQ_PDL=0 and once with LQQ_PDL=1; with
LQQ_FUSED_QUANT=1 the float-input GEMM quantizes inside the Hopper kernel
wherever it can at decode, so "float-input gemm" is the fused path; with 0
never; with the default, auto, where lqq.configs.fused_pays says).
python benchmarks/quant_ab.py M,N,K ...
QUANT_AB_ACT=THREADS,VPT pins the quantizer's shape (lqq.configs.ActConfig)
instead of the one lqq picks per (M, row bytes)."""
import os
import sys

import cupy as cp
import numpy as np

import lqq
from lqq import bench, configs

if os.environ.get("QUANT_AB_ACT"):
    pinned = configs.ActConfig(*map(int, os.environ["QUANT_AB_ACT"].split(",")))
    configs.activation_config = lambda M, row_bytes: pinned

rng = np.random.default_rng(0)
print(f"LQQ_PDL={os.environ.get('LQQ_PDL', '(default: on)')} "
      f"LQQ_FUSED_QUANT={os.environ.get('LQQ_FUSED_QUANT', '(default: auto)')} "
      f"quantizer={os.environ.get('QUANT_AB_ACT', '(by M)')}")
for arg in sys.argv[1:]:
    M, N, K = map(int, arg.split(","))
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    ws = bench.rotated_weights(w)
    x = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
    q, s = cp.empty((M, K), cp.int8), cp.empty(M, cp.float32)
    out = cp.empty((M, N), cp.float16)
    t_quant = bench.time_calls([lambda: lqq.quantize_activation(x, out=(q, s), check_finite=False)],
                               20, 7)
    lqq.quantize_activation(x, out=(q, s))
    t_gemm = bench.time_calls([lambda v=v: lqq.gemm((q, s), v, out=out, check_finite=False)
                               for v in ws], 20, 7)
    t_both = bench.time_calls([lambda v=v: lqq.gemm(x, v, out=out, check_finite=False)
                               for v in ws], 20, 7)
    print(f"M={M} N={N} K={K}: quantize {t_quant * 1e3:.1f} us, gemm {t_gemm * 1e3:.1f} us, "
          f"float-input gemm {t_both * 1e3:.1f} us (+{(t_both - t_gemm) * 1e3:.1f})", flush=True)
    del ws
