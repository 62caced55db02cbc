"""Input validation shared by the public functions. Every error names the
problem and the fix."""
from __future__ import annotations

import numpy as np

GROUP_SIZES = (32, 64, 128, 256)
K_MULTIPLE = 32          # every K (in_features) is a multiple of this
K_MAX = 65536            # |acc| <= 127 * 128 * K must fit int32

FLOAT_KINDS = ("float16", "bfloat16", "float32", "float64")


def bfloat16_dtype() -> np.dtype:
    """NumPy's bfloat16 dtype, which the ml_dtypes package defines (CuPy's
    bfloat16 arrays use it too); a TypeError that says so without it."""
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 arrays on the host, and bfloat16 outputs, need the ml_dtypes "
                        "package, which defines NumPy's (and CuPy's) bfloat16: "
                        "pip install ml-dtypes") from None
    return np.dtype(ml_dtypes.bfloat16)


def memoized(cache: dict, key, compute):
    """cache[key], filled by compute(key) the first time; a key that cannot be
    hashed is computed on every call. For hot-path lookups by dtype."""
    try:
        return cache[key]
    except KeyError:
        hashable = True
    except TypeError:
        hashable = False
    value = compute(key)
    if hashable:
        cache[key] = value
    return value


_dtype_names: dict = {}     # dtype -> name: str(dtype) costs microseconds on every call


def _name_of(dt) -> str:
    return str(dt).replace("torch.", "")


def dtype_name(a) -> str:
    dt = getattr(a, "dtype", None)
    if dt is None:
        return type(a).__name__
    return memoized(_dtype_names, dt, _name_of)


def is_float(a) -> bool:
    return dtype_name(a) in FLOAT_KINDS


def require_ndim(a, ndim, name: str):
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(a.shape)}")


def _finite(xp, a):
    if dtype_name(a) == "bfloat16":
        # from the bits: elementwise math on bfloat16 is not in every CuPy
        return (a.view(xp.uint16) & 0x7F80) != 0x7F80
    return xp.isfinite(a)


def require_finite(xp, a, name: str):
    finite = _finite(xp, a)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s); LQQ needs finite "
                         f"inputs (clean or clamp them first)")


def check_group_size(group_size, K: int) -> int:
    if isinstance(group_size, bool) or not isinstance(group_size, (int, np.integer)):
        raise TypeError(f"group_size must be an int, got {type(group_size).__name__}")
    group_size = int(group_size)
    if group_size not in GROUP_SIZES and group_size != K:
        raise ValueError(f"group_size={group_size} is not supported; use one of "
                         f"{GROUP_SIZES} or K={K} (one group per row)")
    if K % group_size:
        raise ValueError(f"K={K} (in_features) is not divisible by group_size={group_size}; "
                         f"pick a group size that divides K")
    return group_size


def check_k(K: int):
    if K % K_MULTIPLE:
        raise ValueError(f"K={K} (in_features) must be a multiple of {K_MULTIPLE}; "
                         f"pad the weight's columns (and the activations) with zeros")
    if K > K_MAX:
        raise ValueError(f"K={K} exceeds {K_MAX}: the int32 accumulator could overflow; "
                         f"split the layer along K")
