"""Per-token symmetric INT8 activation quantization (SPEC section 1).

    a_s[m] = max_k |X[m,k]| / 127   (float32; an all-zero row gets 1)
    X8     = clip(rint(X / a_s), -127, 127)

IEEE float32 division everywhere, so every device gives the reference's codes.
"""
from __future__ import annotations

from . import _xp, checks


def quantize_rows(xp, X2):
    """[M, K] float -> (int8 [M, K], float32 [M]) on the array's own side."""
    X32 = X2.astype(xp.float32)
    amax = xp.max(xp.abs(X32), axis=1)
    xs = xp.where(amax == 0, xp.float32(1), amax / xp.float32(127)).astype(xp.float32)
    x8 = xp.clip(xp.rint(X32 / xs[:, None]), -127, 127).astype(xp.int8)
    return x8, xs


def check_float_activation(x, K=None):
    if not checks.is_float(x):
        raise TypeError(f"x must be float16/bfloat16/float32/float64, or a pair (int8 codes, "
                        f"float32 scales) from lqq.quantize_activation; got {checks.dtype_name(x)}")
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have at least one dimension with K > 0 features, got shape "
                         f"{tuple(x.shape)}")
    if K is not None and x.shape[-1] != K:
        raise ValueError(f"x has {x.shape[-1]} features (last dimension) but the weight has "
                         f"K={K} in_features")


def _check_out(out, xp, lead, K):
    """``out=(xq, xs)``: preallocated int8 [..., K] and float32 [...] on x's side."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError("out must be a pair (xq, xs) of preallocated arrays")
    (q, _), (s, _) = _xp.as_array(out[0]), _xp.as_array(out[1])
    for a, shape, dtype, name in ((q, tuple(lead) + (K,), "int8", "xq"),
                                  (s, tuple(lead), "float32", "xs")):
        if _xp.module_of(a) is not xp:
            raise TypeError(f"out {name} must be on the same side as x")
        if tuple(a.shape) != shape or str(a.dtype) != dtype or not a.flags.c_contiguous:
            raise ValueError(f"out {name} is {a.dtype}{tuple(a.shape)}, expected a contiguous "
                             f"{dtype}{shape}")
    return q.reshape(-1, K), s.reshape(-1)


def quantize_activation(x, out=None, check_finite=True):
    """Quantize activations ``x`` [..., K] per token (per row of the last
    dimension). Returns ``(xq, xs)``: int8 codes of x's shape and float32 scales
    of shape ``x.shape[:-1]``, on x's side (NumPy, CuPy, or torch).
    out: an optional preallocated pair ``(xq, xs)`` to write (nothing is
    allocated on the GPU then, e.g. inside CUDA-graph capture).
    check_finite: refuse NaN/Inf (on the GPU a reduction and a synchronization;
    pass False inside graph capture or on latency-critical paths)."""
    arr, kind = _xp.as_array(x)
    check_float_activation(arr)
    xp = _xp.module_of(arr)
    lead, K = arr.shape[:-1], arr.shape[-1]
    X2 = arr.reshape(-1, K)
    dest = None if out is None else _check_out(out, xp, lead, K)
    if check_finite:
        checks.require_finite(xp, X2, "x")
    if _xp.is_cupy(X2):
        from . import gpu_activation
        x8, xs = gpu_activation.quantize_rows_gpu(X2, out=dest)
    else:
        x8, xs = quantize_rows(xp, X2)
        if dest is not None:
            dest[0][...], dest[1][...] = x8, xs
    if out is not None:
        return out
    return _xp.hand_back(x8.reshape(*lead, K), kind), _xp.hand_back(xs.reshape(lead), kind)
