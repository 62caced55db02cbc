"""AWQ checkpoints in the GEMM packing (AutoAWQ `WQLinear_GEMM`, the
`"version": "gemm"` of its quant_config), as HF transformers and vLLM read them:

    qweight  int32 [K, N/8]    eight 4-bit values of one input row per word
    qzeros   int32 [K/G, N/8]  same packing, zero points as is (no +1)
    scales   fp16  [K/G, N]
    W^T[k, n] = (q[k, n] - zero[k // G, n]) * scales[k // G, n]

Inside a word the eight output columns 8c..8c+7 sit in AWQ's interleaved
order: bits 4i..4i+3 hold column 8c + ORDER[i].
"""
from __future__ import annotations

import numpy as np

from . import _common as C

FORMAT = "awq"
ORDER = (0, 2, 4, 6, 1, 3, 5, 7)           # nibble i holds column ORDER[i] of its 8
REVERSE = tuple(int(i) for i in np.argsort(ORDER))   # column j sits in nibble REVERSE[j]


def _deinterleave(nibbles: np.ndarray) -> np.ndarray:
    """[R, 8C] in nibble order -> [R, 8C] in column order."""
    R, M = nibbles.shape
    return nibbles.reshape(R, M // 8, 8)[:, :, list(REVERSE)].reshape(R, M)


def unpack_awq(tensors, prefix: str, *, bits: int = 4, group_size=None,
               version: str = "gemm") -> C.Unpacked:
    """The integers and scales of one AWQ GEMM layer, oriented [N, K]."""
    C.check_bits(bits, FORMAT)
    if str(version).lower() != "gemm":
        raise ValueError(f"awq: version={version!r} is not supported; only the GEMM packing "
                         f"(quant_config 'version': 'gemm') is read, not GEMV/Marlin/exllama")
    prefix = C.norm_prefix(prefix)
    qweight = C.require_words(C.get(tensors, prefix, "qweight", FORMAT), "qweight", FORMAT)
    qzeros = C.require_words(C.get(tensors, prefix, "qzeros", FORMAT), "qzeros", FORMAT)
    scales = C.get(tensors, prefix, "scales", FORMAT)
    if scales.ndim != 2:
        raise ValueError(f"awq: scales must be 2-D [K/G, N], got shape {tuple(scales.shape)}")
    ng, N = scales.shape
    K = qweight.shape[0]
    if qweight.shape[1] * 8 != N:
        raise ValueError(f"awq: qweight has shape {tuple(qweight.shape)} and scales "
                         f"{tuple(scales.shape)}: GEMM packing of 4-bit weights needs qweight "
                         f"[K, N/8] = [{K}, {N / 8:g}] (another bit width, or a GEMV-packed "
                         f"checkpoint?)")
    C.require_shape(qzeros, (ng, N // 8), "qzeros", FORMAT, "[K/G, N/8]")
    s = C.require_scales(scales, "scales", FORMAT)
    if ng < 1 or K % ng:
        raise ValueError(f"awq: K={K} is not a whole number of groups ({ng} in the scales)")
    g_idx, G, _ = C.resolve_groups(K, ng, None, group_size, "", FORMAT)
    if K % G:
        raise ValueError(f"awq: group_size={G} does not divide K={K}")
    q = _deinterleave(C.unpack_rows(qweight))        # [K, N]
    z = _deinterleave(C.unpack_rows(qzeros))         # [ng, N]
    return C.Unpacked(q=q.T.astype(np.int16, order="C"), zero=z.T.astype(np.int16, order="C"),
                      scale=s.T.astype(np.float32, order="C"), g_idx=g_idx, group_size=G,
                      act_order=False)


def dequantize_awq(tensors, prefix: str, **meta) -> np.ndarray:
    """AWQ's own dequantization of layer `prefix`: float32 [N, K] (out x in)."""
    return unpack_awq(tensors, prefix, **meta).dequantize()
