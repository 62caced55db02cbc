"""Tensor maps for TMA (cuTensorMapEncodeTiled from libcuda through ctypes:
CuPy has no binding). A map is 128 opaque bytes passed to the kernel by value."""
from __future__ import annotations

import ctypes
import functools

import numpy as np

_UINT8, _UINT16, _UINT64, _SWIZZLE_NONE, _SWIZZLE_128B = 0, 1, 4, 0, 3
_L2_128B, _OOB_ZERO, _NO_INTERLEAVE = 2, 0, 0
MAP_DTYPE = np.dtype([("opaque", np.uint64, 16)], align=True)   # 128 bytes


def _aligned_map():
    """A zeroed size-1 MAP_DTYPE array at a 64-byte aligned address: the driver
    requires it of the map it encodes (NumPy aligns less)."""
    buf = np.zeros(MAP_DTYPE.itemsize + 64, np.uint8)
    off = -buf.ctypes.data % 64
    return buf[off:off + MAP_DTYPE.itemsize].view(MAP_DTYPE)


@functools.lru_cache(maxsize=1)
def _encode_fn():
    lib = ctypes.CDLL("libcuda.so.1")
    fn = lib.cuTensorMapEncodeTiled
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p,
                   ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64),
                   ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32),
                   ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return fn


def _encode(ptr: int, dtype: int, dims: tuple, strides: tuple, box: tuple, swizzle: int):
    """A tiled map (dims and box innermost first, byte strides of the outer
    dims), elements past the ends read as zeros; shared by every map below."""
    out = _aligned_map()
    rank = len(dims)
    err = _encode_fn()(out.ctypes.data, dtype, rank, ctypes.c_void_p(ptr),
                       (ctypes.c_uint64 * rank)(*dims), (ctypes.c_uint64 * (rank - 1))(*strides),
                       (ctypes.c_uint32 * rank)(*box), (ctypes.c_uint32 * rank)(*(1,) * rank),
                       _NO_INTERLEAVE, swizzle, _L2_128B, _OOB_ZERO)
    if err:
        raise RuntimeError(f"cuTensorMapEncodeTiled failed with CUresult {err}")
    return out


@functools.lru_cache(maxsize=256)
def rows_2d(ptr: int, rows: int, row_bytes: int, box_rows: int, box_bytes: int = 128):
    """Map of a row-major uint8 matrix [rows, row_bytes] read in boxes of
    box_rows x box_bytes with 128-byte swizzle; rows past the end read as zeros.
    Returns a size-1 structured array (CuPy passes it by value), shared:
    never modify it; maps are memoized (a pure function of the arguments; encoding one through
    the driver costs microseconds on every call)."""
    if ptr % 16 or row_bytes % 16:
        raise ValueError("TMA needs a 16-byte aligned base and row stride")
    return _encode(ptr, _UINT8, (row_bytes, rows), (row_bytes,), (box_bytes, box_rows), _SWIZZLE_128B)


@functools.lru_cache(maxsize=256)
def values_2d(ptr: int, rows: int, cols: int, box_rows: int, box_cols: int = 128):
    """Map of a row-major matrix of 16-bit values [rows, cols] (fp16 or bf16:
    the bits are only moved) read in boxes of box_rows x box_cols with no
    swizzle; values past either end read as zeros. Memoized like rows_2d."""
    if ptr % 16 or cols % 8:
        raise ValueError("TMA needs a 16-byte aligned base and row stride")
    return _encode(ptr, _UINT16, (cols, rows), (2 * cols,), (box_cols, box_rows), _SWIZZLE_NONE)


def packed_geometry(Nb: int, Kb: int, groups_pad: int, slabs: int, groups_per_block: int):
    """(dims, byte strides, box) of the two 3-D maps over a packed weight, in
    8-byte elements, innermost first: codes [Nb][Kb][2048 B] read as one
    128-wide k-block (two 64-wide blocks) of `slabs` row blocks, and group
    parameters [Nb][groups_pad][128 B] read as the k-block's groups of the same
    row blocks. Each box lands as [slab][...] in shared memory, the layout the
    Hopper kernel's consumers read."""
    codes = ((256, Kb, Nb), (2048, Kb * 2048), (256, 2, slabs))
    meta = ((16, groups_pad, Nb), (128, groups_pad * 128), (16, groups_per_block, slabs))
    return codes, meta


@functools.lru_cache(maxsize=256)
def blocks_3d(ptr: int, dims: tuple, strides: tuple, box: tuple):
    """Map of a 3-D array of 8-byte elements (dims innermost first; strides in
    bytes of dims 1 and 2), read in boxes with no swizzle; boxes past the end
    read as zeros. Memoized like rows_2d."""
    if ptr % 16 or any(st % 16 for st in strides):
        raise ValueError("TMA needs a 16-byte aligned base and strides")
    return _encode(ptr, _UINT64, dims, strides, box, _SWIZZLE_NONE)
