"""compressed-tensors checkpoints in the `pack-quantized` format (llm-compressor,
vLLM), 4-bit integer weights with group, channel or tensor scales:

    weight_packed      int32 [N, ceil(K/8)]  packed along K, low bits first;
                                             each field is q + 8 for the signed
                                             value q in [-8, 7]
    weight_scale       float [N, ng]         ([N, 1]: channel, one value: tensor)
    weight_zero_point  optional: int32 [ceil(N/8), ng] packed along N the same
                                 way (zero + 8), or unpacked ints [N, ng];
                                 absent for symmetric schemes (zero 0)
    weight_g_idx       int32 [K], optional (activation ordering)
    weight_shape       int [2] = (N, K)
    W[n, k] = (q[n, k] - zero[n, g]) * scale[n, g],   g = g_idx[k] or k // G
"""
from __future__ import annotations

import numpy as np

from . import _common as C

FORMAT = "compressed-tensors"
OFFSET = 8          # fields hold the signed value + 8


def _shape(tensors, prefix):
    a = C.get(tensors, prefix, "weight_shape", FORMAT)
    if not np.issubdtype(a.dtype, np.integer) or a.shape != (2,):
        raise ValueError(f"{FORMAT}: weight_shape must be 2 integers (N, K), got "
                         f"{a.dtype}{tuple(a.shape)}")
    N, K = (int(v) for v in a)
    if N < 1 or K < 1:
        raise ValueError(f"{FORMAT}: weight_shape {(N, K)} is empty")
    return N, K


def _zero_points(zp, N: int, ng: int, symmetric):
    if zp is None:
        if symmetric is False:
            raise ValueError(f"{FORMAT}: symmetric=False but weight_zero_point is missing")
        return np.zeros((N, ng), dtype=np.int16)
    if not np.issubdtype(zp.dtype, np.integer):
        raise ValueError(f"{FORMAT}: weight_zero_point has dtype {zp.dtype}, expected int32 "
                         f"(packed) or an integer type (unpacked)")
    packed = (-(-N // 8), ng)
    if str(zp.dtype) in ("int32", "uint32") and zp.shape == packed:
        words = np.ascontiguousarray(zp).view(np.uint32)
        z = C.unpack_cols(words)[:N].astype(np.int16) - OFFSET
    elif zp.shape == (N, ng):
        z = zp.astype(np.int16)
        if z.min() < -OFFSET or z.max() >= OFFSET:
            raise ValueError(f"{FORMAT}: weight_zero_point values span [{z.min()}, {z.max()}], "
                             f"outside the signed 4-bit range [-8, 7]")
    else:
        raise ValueError(f"{FORMAT}: weight_zero_point has shape {tuple(zp.shape)}, expected "
                         f"{packed} (int32 packed along N) or {(N, ng)} (unpacked)")
    if symmetric and bool(z.any()):
        raise ValueError(f"{FORMAT}: symmetric=True but weight_zero_point holds nonzero values")
    return z


def unpack_compressed_tensors(tensors, prefix: str, *, num_bits: int = 4, group_size=None,
                              compression_format: str = "pack-quantized",
                              symmetric=None) -> C.Unpacked:
    """The integers and scales of one pack-quantized layer, oriented [N, K]."""
    C.check_bits(num_bits, FORMAT)
    if compression_format != "pack-quantized":
        raise ValueError(f"{FORMAT}: compression_format={compression_format!r} is not "
                         f"supported; only "
                         f"'pack-quantized' (int4 packed into int32) is read")
    prefix = C.norm_prefix(prefix)
    packed = C.get(tensors, prefix, "weight_packed", FORMAT)
    if str(packed.dtype) == "uint8":
        raise ValueError(f"{FORMAT}: weight_packed is uint8, which is the nvfp4-pack-quantized "
                         f"(FP4) layout; only int4 'pack-quantized' (int32 words) is read")
    words = C.require_words(packed, "weight_packed", FORMAT)
    N, K = _shape(tensors, prefix)
    if words.shape != (N, -(-K // 8)):
        raise ValueError(f"{FORMAT}: weight_packed has shape {tuple(words.shape)}, expected "
                         f"[{N}, {-(-K // 8)}] for 4-bit values of weight_shape {(N, K)} "
                         f"(another bit width?)")
    scale = C.get(tensors, prefix, "weight_scale", FORMAT)
    if scale.size == 1 and scale.ndim <= 1:          # tensor strategy
        scale = np.broadcast_to(scale.reshape(1, 1), (N, 1))
    if scale.ndim != 2 or scale.shape[0] != N:
        raise ValueError(f"{FORMAT}: weight_scale has shape {tuple(scale.shape)}, expected "
                         f"[{N}, groups] (or [{N}, 1] per channel)")
    s = C.require_scales(scale, "weight_scale", FORMAT)
    ng = s.shape[1]
    z = _zero_points(C.get(tensors, prefix, "weight_zero_point", FORMAT, required=False),
                     N, ng, symmetric)
    g_idx = C.get(tensors, prefix, "weight_g_idx", FORMAT, required=False)
    g_idx, G, act_order = C.resolve_groups(K, ng, g_idx, group_size, "weight_g_idx", FORMAT)
    q = C.unpack_rows(words)[:, :K].astype(np.int16) - OFFSET
    return C.Unpacked(q=q, zero=z, scale=np.ascontiguousarray(s), g_idx=g_idx, group_size=G,
                      act_order=act_order)


def dequantize_compressed_tensors(tensors, prefix: str, **meta) -> np.ndarray:
    """compressed-tensors' own dequantization of layer `prefix`: float32 [N, K]."""
    return unpack_compressed_tensors(tensors, prefix, **meta).dequantize()
