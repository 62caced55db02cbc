"""The exact NumPy reference of the W4A8 GEMM: the oracle every GPU kernel is
tested against (SPEC section 1).

    acc[m,n] = sum_k X8[m,k] * W8'[n,k]                        (int32, exact)
    Y[m,n]   = float32(a_s[m] * s1[n]) * float32(acc[m,n]) (+ float32(bias[n]))

each product and sum one IEEE float32 operation (no fused multiply-add), then
one rounding to the output dtype.
"""
from __future__ import annotations

import numpy as np

INT32_MAX = np.iinfo(np.int32).max


def accumulate(x8: np.ndarray, w8: np.ndarray) -> np.ndarray:
    """int8 [M, K] x int8 [N, K] -> int32 [M, N]. The products are computed in
    float64 BLAS, which is exact here: every partial sum is an integer below
    127 * 128 * 65536 < 2^53. The result is checked to fit int32."""
    acc = np.asarray(x8, dtype=np.float64) @ np.asarray(w8, dtype=np.float64).T
    acc64 = acc.astype(np.int64)
    if acc64.size and int(np.abs(acc64).max()) > INT32_MAX:
        raise OverflowError("int32 accumulator overflow (K too large)")
    return acc64.astype(np.int32)


def epilogue(acc: np.ndarray, xs: np.ndarray, s1: np.ndarray, bias=None, out_dtype=np.float16):
    """Scales (and bias) applied to int32 accumulators [M, N]; float32 math, one
    final rounding to ``out_dtype``."""
    scale = np.asarray(xs, np.float32)[:, None] * np.asarray(s1, np.float32)[None, :]
    y = scale * acc.astype(np.float32)
    if bias is not None:
        y = y + np.asarray(bias).astype(np.float32)[None, :]
    return y.astype(out_dtype)


def gemm(x8, xs, w, bias=None, out_dtype=np.float16):
    """Reference W4A8 GEMM on NumPy arrays: x8 int8 [M, K], xs float32 [M],
    ``w`` an LQQWeight. out_dtype int32 returns the raw accumulators."""
    acc = accumulate(x8, w.int8())
    if np.dtype(out_dtype) == np.int32:
        return acc
    return epilogue(acc, xs, w.s1, bias, out_dtype)

