"""``lqq.gemm``: the front door. Checks the inputs once, flattens batch
dimensions, and sends NumPy inputs to the exact reference and CuPy (or CUDA
torch) inputs to the GPU kernels."""
from __future__ import annotations

import numpy as np

from . import _xp, activation, checks, reference
from .format import LQQWeight, _check_weight

_OUT_DTYPES = {"float16": np.float16, "float32": np.float32, "int32": np.int32}


_out_dtypes: dict = {}       # dtype-like -> numpy type (hot path: one dict lookup)


def _out_dtype(out_dtype, out):
    if out_dtype is None:
        out_dtype = out.dtype if out is not None else np.float16
    return checks.memoized(_out_dtypes, out_dtype, _resolve_out_dtype)


def _resolve_out_dtype(out_dtype):
    if hasattr(out_dtype, "is_floating_point"):      # a torch dtype
        name = str(out_dtype).replace("torch.", "")
    else:
        try:
            name = np.dtype(out_dtype).name
        except TypeError:
            name = str(out_dtype)
    if name == "bfloat16":
        return checks.bfloat16_dtype()
    if name not in _OUT_DTYPES:
        raise TypeError(f"out_dtype={name} is not supported; use float16 (default), bfloat16, "
                        f"float32, or int32 (the raw accumulators)")
    return _OUT_DTYPES[name]


def _split_x(x, K):
    """x -> (x2d or None, xq2d or None, xs1d or None, leading shape, kind)."""
    if isinstance(x, tuple):
        if len(x) != 2:
            raise TypeError("pre-quantized activations must be a pair (xq, xs) from "
                            "lqq.quantize_activation")
        xq, kind = _xp.as_array(x[0])
        xs, kind_s = _xp.as_array(x[1])
        if _xp.is_cupy(xq) != _xp.is_cupy(xs):
            raise TypeError("xq and xs must be on the same side (both NumPy or both GPU)")
        if checks.dtype_name(xq) != "int8":
            raise TypeError(f"xq must be int8, got {xq.dtype}")
        if checks.dtype_name(xs) != "float32":
            raise TypeError(f"xs must be float32 scales, got {xs.dtype}")
        if xq.ndim < 1 or xq.shape[-1] != K:
            raise ValueError(f"xq has shape {tuple(xq.shape)}; its last dimension must be the "
                             f"weight's K={K}")
        if tuple(xs.shape) != tuple(xq.shape[:-1]):
            raise ValueError(f"xs has shape {tuple(xs.shape)}, expected {tuple(xq.shape[:-1])} "
                             f"(one scale per token)")
        return None, xq.reshape(-1, K), xs.reshape(-1), xq.shape[:-1], kind
    arr, kind = _xp.as_array(x)
    activation.check_float_activation(arr, K)
    return arr.reshape(-1, K), None, None, arr.shape[:-1], kind


def _capturing(stream, kind) -> bool:
    """True while the stream lqq will run on is being captured into a CUDA
    graph, when nothing may synchronize."""
    try:
        if stream is None and kind == "torch":
            import torch
            return bool(torch.cuda.is_current_stream_capturing())
        return bool((stream or _xp.cupy_or_none().cuda.get_current_stream()).is_capturing())
    except Exception:
        return False


def gemm(x, w: LQQWeight, bias=None, out=None, out_dtype=None, stream=None, check_finite=True):
    """Y = X @ W'^T with 4-bit LQQ weights and per-token INT8 activations.

    x: float activations [..., K] (quantized per token on the fly), or a pair
       ``(xq, xs)`` from ``lqq.quantize_activation``.
    w: an LQQWeight [N, K] on the same side as x (NumPy or GPU).
    bias: optional float [N].
    out: optional preallocated output [..., N] (no allocation inside CUDA-graph
       capture); its dtype is the output dtype unless out_dtype says otherwise.
    out_dtype: float16 (default), bfloat16 (needs ml_dtypes, as CuPy's
       bfloat16 arrays do), float32, or int32 for the raw accumulators.
    stream: CuPy stream for the GPU path (default: CuPy's current stream, or
       torch's current stream for torch tensors).
    check_finite: refuse NaN/Inf in x and bias. On the GPU this costs a
       reduction and a synchronization; it is skipped during CUDA-graph capture,
       and latency-critical callers can pass False.

    NumPy inputs run the exact reference; CuPy arrays and CUDA torch tensors
    run the CUDA kernels and come back as the same kind.
    """
    _check_weight(w)
    N, K = w.shape
    x2, xq, xs, lead, kind = _split_x(x, K)
    on_gpu = _xp.is_cupy(x2 if x2 is not None else xq)
    if on_gpu != w.on_gpu:
        fix = "w.to_gpu()" if on_gpu else "w.to_cpu()"
        raise TypeError(f"x is on the {'GPU' if on_gpu else 'CPU'} but the weight is not; "
                        f"move the weight with {fix}")
    xp = _xp.module_of(x2 if x2 is not None else xq)
    odt = _out_dtype(out_dtype, out)
    check_finite = check_finite and not (on_gpu and _capturing(stream, kind))
    if bias is not None:
        bias, _ = _xp.as_array(bias)
        if _xp.is_cupy(bias) != on_gpu:
            raise TypeError("bias must be on the same side as x")
        if tuple(bias.shape) != (N,):
            raise ValueError(f"bias has shape {tuple(bias.shape)}, expected ({N},)")
        if not checks.is_float(bias):
            raise TypeError(f"bias must be a float array, got {checks.dtype_name(bias)}")
        if check_finite:
            checks.require_finite(xp, bias, "bias")
    out_shape = tuple(lead) + (N,)
    out_given = out
    if out is not None:
        out, _ = _xp.as_array(out)
        if _xp.is_cupy(out) != on_gpu:
            raise TypeError("out must be on the same side as x")
        if tuple(out.shape) != out_shape or np.dtype(out.dtype) != np.dtype(odt):
            raise ValueError(f"out is {out.dtype}{tuple(out.shape)}, expected "
                             f"{np.dtype(odt).name}{out_shape}")
        if not out.flags.c_contiguous:
            raise ValueError("out must be C-contiguous")
    if check_finite:
        checks.require_finite(xp, x2 if x2 is not None else xs, "x" if x2 is not None else "xs")

    if on_gpu:
        from . import gpu_gemm
        y = gpu_gemm.gemm(x2, xq, xs, w, bias, odt, out, stream, torch_input=(kind == "torch"))
    else:
        if x2 is not None:
            xq, xs = activation.quantize_rows(np, x2)
        y = reference.gemm(xq, xs, w, bias, odt)
        if out is not None:
            out.reshape(-1, N)[...] = y
    if out_given is not None:
        return out_given
    return _xp.hand_back(y.reshape(out_shape), kind)
