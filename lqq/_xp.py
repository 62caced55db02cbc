"""Which array library an input lives in: NumPy (host), CuPy (device), or a
foreign array (torch, anything with ``__dlpack__`` / ``__cuda_array_interface__``).

CuPy is optional: nothing here imports it until an input that is not a NumPy
array arrives, so ``import lqq`` works on a machine with no GPU and no CuPy.
"""
from __future__ import annotations

import numpy as np

_cupy = None
_cupy_checked = False


def cupy_or_none():
    """The cupy module, or None when it is not installed."""
    global _cupy, _cupy_checked
    if not _cupy_checked:
        _cupy_checked = True
        try:
            import cupy  # noqa: F401
            _cupy = cupy
        except Exception:  # ImportError, or a broken CUDA install
            _cupy = None
    return _cupy


def is_cupy(a) -> bool:
    cp = cupy_or_none()
    return cp is not None and isinstance(a, cp.ndarray)


def is_torch(a) -> bool:
    return type(a).__module__.startswith("torch") and hasattr(a, "is_cuda")


def module_of(a):
    """numpy or cupy, whichever holds ``a`` (NumPy for scalars and lists)."""
    if is_cupy(a):
        return cupy_or_none()
    return np


def to_numpy(a) -> np.ndarray:
    if is_cupy(a):
        return a.get()
    return np.asarray(a)


def as_array(a):
    """Return (array, kind) where array is numpy or cupy and kind says how to
    hand results back: 'numpy', 'cupy' or 'torch'. Torch CUDA tensors and other
    ``__cuda_array_interface__`` / DLPack device arrays become CuPy views with no
    copy; torch CPU tensors become NumPy views."""
    if isinstance(a, np.ndarray):
        return a, "numpy"
    if is_cupy(a):
        return a, "cupy"
    if is_torch(a):
        if a.is_cuda:
            cp = _require_cupy("a CUDA torch tensor")
            with torch_current_stream(cp):
                return cp.from_dlpack(a.detach()), "torch"
        return _torch_cpu_to_numpy(a.detach()), "torch"
    if hasattr(a, "__cuda_array_interface__"):
        cp = _require_cupy("a CUDA array")
        return cp.asarray(a), "cupy"
    if isinstance(a, (list, tuple, int, float)) or hasattr(a, "__array__"):
        return np.asarray(a), "numpy"
    raise TypeError(
        f"expected a numpy array, a cupy array or a torch tensor, got {type(a).__name__}")


class _StreamHandle:
    """A raw cudaStream_t under the CUDA stream protocol, which CuPy 14's
    Stream.from_external takes (its ExternalStream is deprecated)."""
    __slots__ = ("handle",)

    def __init__(self, handle: int):
        self.handle = handle

    def __cuda_stream__(self):
        return (0, self.handle)


def torch_current_stream(cp):
    """torch's current CUDA stream as a CuPy stream (a view: CuPy neither owns
    nor synchronizes it). DLPack exchanges synchronize the producer's stream
    with the consumer's; making torch's current stream CuPy's too keeps that
    a no-op, which is also what keeps it legal inside torch.cuda.graph capture."""
    import torch
    handle = torch.cuda.current_stream().cuda_stream
    if hasattr(cp.cuda.Stream, "from_external"):
        return cp.cuda.Stream.from_external(_StreamHandle(handle))
    return cp.cuda.ExternalStream(handle)          # CuPy 13


def _torch_cpu_to_numpy(t):
    """A CPU tensor as a NumPy view; bfloat16 (which NumPy lacks) through its
    bits, as ml_dtypes' bfloat16."""
    import torch
    if t.dtype == torch.bfloat16:
        from .checks import bfloat16_dtype
        return t.view(torch.int16).numpy().view(bfloat16_dtype())
    return t.numpy()


def _numpy_to_torch(a: np.ndarray):
    import torch
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def hand_back(result, kind):
    """Convert a numpy/cupy result to the caller's kind (no copy for torch)."""
    if kind == "torch":
        import torch
        if isinstance(result, np.ndarray):
            return _numpy_to_torch(result)
        with torch_current_stream(cupy_or_none()):
            return torch.from_dlpack(result)
    return result


def _require_cupy(what: str):
    cp = cupy_or_none()
    if cp is None:
        raise RuntimeError(
            f"{what} needs CuPy: pip install 'lqq[cuda12]' or 'lqq[cuda13]'")
    return cp
