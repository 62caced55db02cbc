"""GPTQ checkpoints (AutoGPTQ / GPTQModel / HF transformers `QuantLinear`):

    qweight  int32 [K/8, N]        packed along K: bits 4j..4j+3 of word [r, n]
                                   hold q[8r + j, n]
    qzeros   int32 [ng, N/8]       packed along N: bits 4j..4j+3 of word [g, c]
                                   hold the stored zero of column 8c + j
    scales   fp16  [ng, N]         ng = ceil(K / G)
    g_idx    int32 [K] (optional)  group of each input row; act-order
                                   (desc_act) checkpoints permute it
    W^T[k, n] = (q[k, n] - zero[g_idx[k], n]) * scales[g_idx[k], n]

Two zero conventions: checkpoint_format "gptq" (v1, what AutoGPTQ wrote)
stores zero - 1, so zero = stored nibble + 1 (each nibble on its own, as the
v1 kernels read it); "gptq_v2" (GPTQModel) stores the zero as is.
"""
from __future__ import annotations

import numpy as np

from . import _common as C

FORMAT = "gptq"
CHECKPOINT_FORMATS = ("gptq", "gptq_v2")


def unpack_gptq(tensors, prefix: str, *, bits: int = 4, group_size=None,
                checkpoint_format: str = "gptq") -> C.Unpacked:
    """The integers and scales of one GPTQ layer, oriented [N, K]."""
    C.check_bits(bits, FORMAT)
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise ValueError(f"gptq: checkpoint_format={checkpoint_format!r} is not known; "
                         f"expected one of {CHECKPOINT_FORMATS}")
    fmt = "gptq_v2" if checkpoint_format == "gptq_v2" else FORMAT
    prefix = C.norm_prefix(prefix)
    qweight = C.require_words(C.get(tensors, prefix, "qweight", fmt), "qweight", fmt)
    qzeros = C.require_words(C.get(tensors, prefix, "qzeros", fmt), "qzeros", fmt)
    scales = C.get(tensors, prefix, "scales", fmt)
    g_idx = C.get(tensors, prefix, "g_idx", fmt, required=False)
    if scales.ndim != 2:
        raise ValueError(f"{fmt}: scales must be 2-D [ng, N], got shape {tuple(scales.shape)}")
    ng, N = scales.shape
    K = qweight.shape[0] * 8
    C.require_shape(qweight, (K // 8, N), "qweight", fmt, "[K/8, N]: N must match the scales")
    if qzeros.shape[1] != -(-N // 8):
        raise ValueError(f"{fmt}: qzeros has shape {tuple(qzeros.shape)}, expected "
                         f"[{ng}, {-(-N // 8)}] for 4-bit zeros of N={N} columns (another "
                         f"bit width?)")
    C.require_shape(qzeros, (ng, -(-N // 8)), "qzeros", fmt, "one row per group of the scales")
    if g_idx is not None and g_idx.shape != (K,):
        raise ValueError(f"{fmt}: g_idx has shape {tuple(g_idx.shape)} but qweight implies "
                         f"K={K} for 4-bit packing (another bit width, or a mismatched g_idx?)")
    s = C.require_scales(scales, "scales", fmt)
    g_idx, G, act_order = C.resolve_groups(K, ng, g_idx, group_size, "g_idx", fmt)
    q = C.unpack_cols(qweight)                        # [K, N]
    z = C.unpack_rows(qzeros)[:, :N].astype(np.int16)  # [ng, N]
    if checkpoint_format == "gptq":
        z += 1
    return C.Unpacked(q=q.T.astype(np.int16, order="C"), zero=z.T.astype(np.int16, order="C"),
                      scale=s.T.astype(np.float32, order="C"), g_idx=g_idx, group_size=G,
                      act_order=act_order)


def dequantize_gptq(tensors, prefix: str, **meta) -> np.ndarray:
    """GPTQ's own dequantization of layer `prefix`: float32 [N, K] (out x in)."""
    return unpack_gptq(tensors, prefix, **meta).dequantize()
