"""Small GEMMs for compute-sanitizer (memcheck, racecheck): one per kernel
family, with and without split-K, ragged M and N. Exits non-zero on a wrong
result."""
import os

import cupy as cp
import numpy as np

import lqq
from lqq import reference

rng = np.random.default_rng()
CASES = [("bm8_rb1_s1", 3, 100, 256), ("bm8_rb1_s3", 5, 130, 384), ("bm32_rb2_s2", 33, 200, 512),
         ("bm128_rb1_s1", 129, 72, 192), ("decode_bm8_rb1_pf4_s2", 1, 100, 640),
         ("decode_bm16_rb2_pf8_s1", 11, 200, 256)]
if cp.cuda.Device().compute_capability == "90":
    CASES += [("wgmma_bn64_st4_s2", 70, 200, 512), ("wgmma_bn128_st4_s1", 129, 130, 384),
              ("wgmma_bn16_st8_c5", 3, 300, 1024), ("wgmma_bn256_st4_c3", 300, 200, 768),
              ("wgmma_bn64_st4_c2", 70, 200, 2048),     # the last three wrap the stage ring
              ("wgmma_bn64_st8_wg4_c3", 70, 300, 2048),
              ("wgmma_bn96_st6_wg3_c4", 100, 500, 2048),    # three slabs, the last tile two
              ("wgmma_bn192_st5_c5", 150, 300, 1024), ("wgmma_bn128_st6_wg3_c3", 130, 400, 1024),
              ("wgmma_bn8_st7_wg3_mb2_c4", 1, 400, 2048),  # decode: two CTAs of three consumers
              ("wgmma_bn16_st8_wg4_c3", 12, 600, 2048),    # decode: one CTA of four consumers
              ("wgmma_bn8_st10_wg4_c2", 1, 300, 3072),     # ... wrapping a 10-stage ring
              ("wgmma_bn8_st8_wg4_c5", 12, 600, 2048),     # unsigned A: segments start and end mid-tile
              ("wgmma_bn8_st7_wg6_c2", 1, 800, 2048),      # six consumers; a one-slab last tile
              # the fused decode path: fp16 rows quantized inside the GEMM
              ("wgmma_bn8_st8_fx16_c5", 1, 300, 1088),     # K past the last 128-wide block
              ("wgmma_bn16_st7_fx16_c3", 5, 200, 2048),
              ("wgmma_bn8_st6_wg3_mb2_fx16_c4", 3, 400, 2048),
              ("wgmma_bn16_st8_wg4_fx16_c3", 12, 600, 2048),
              # split-K inside clusters: sums through distributed shared memory
              ("wgmma_bn128_st4_ks4", 130, 200, 1024), ("wgmma_bn64_st4_ks2", 70, 300, 1024),
              ("wgmma_bn128_st4_ks2", 130, 300, 1024),    # KS_PUSH: st.async into the peer
              ("wgmma_bn64_st8_wg4_ks2", 40, 500, 2048),
              ("wgmma_bn256_st3_ks2", 260, 200, 1024),    # KS_PUSH with a 64 KB buffer
              ("wgmma_bn64_st8_ks2", 16, 512, 2048),     # a small layer at 16 tokens: 8 CTAs
              ("wgmma_bn64_st4_ks4", 16, 512, 2048)]     # the same in clusters of four: 16 CTAs
only = os.environ.get("LQQ_SANITIZE_ONLY", "")        # a substring: run the matching cases only
for force, M, N, K in [c for c in CASES if only in c[0]]:
    os.environ["LQQ_FORCE_CONFIG"] = force
    w = lqq.quantize_weight(rng.standard_normal((N, K)).astype(np.float32), 64, "round")
    X = rng.standard_normal((M, K)).astype(np.float16)
    got = cp.asnumpy(lqq.gemm(cp.asarray(X), w.to_gpu()))
    x8, xs = lqq.quantize_activation(X)
    assert np.array_equal(got, reference.gemm(x8, xs, w)), force
    print("ok", force, M, N, K)
