"""Kernel launches through the CUDA driver's cuLaunchKernelEx (ctypes), for the
one thing CuPy's launcher cannot ask for: programmatic dependent launch (PDL).

With PDL a kernel may start while the previous kernel on the stream finishes:
its CTAs are placed, initialize their barriers and then wait in
`griddepcontrol.wait` (lqq_grid_dependency_wait in ptx_common.j2) until the
previous grid has completed and its writes are visible. Only kernels whose
every global memory access follows that wait may be launched with pdl=True;
every other launch goes through CuPy unchanged. Stream capture turns a PDL
launch into a programmatic edge of the CUDA graph.
"""
from __future__ import annotations

import ctypes
import functools
import struct

import numpy as np

from . import knobs

_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION = 6     # CUlaunchAttributeID


class _LaunchAttribute(ctypes.Structure):       # CUlaunchAttribute: id, pad, 64-byte union
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", ctypes.c_int),
                ("value_rest", ctypes.c_char * 60)]


class _LaunchConfig(ctypes.Structure):          # CUlaunchConfig
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                ("shared_mem", ctypes.c_uint), ("stream", ctypes.c_void_p),
                ("attrs", ctypes.POINTER(_LaunchAttribute)), ("num_attrs", ctypes.c_uint)]


_PDL_ATTR = _LaunchAttribute(id=_ATTR_PROGRAMMATIC_STREAM_SERIALIZATION, value=1)
_PDL_ATTR_PTR = ctypes.pointer(_PDL_ATTR)


@functools.lru_cache(maxsize=1)
def _launch_fn():
    """cuLaunchKernelEx from libcuda, or None where the driver lacks it."""
    try:
        fn = ctypes.CDLL("libcuda.so.1").cuLaunchKernelEx
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.POINTER(_LaunchConfig), ctypes.c_void_p,
                   ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
    return fn


@functools.lru_cache(maxsize=None)
def _capability(device_id: int) -> str:
    import cupy as cp
    return cp.cuda.Device(device_id).compute_capability


def compute_capability() -> str:
    """The current device's compute capability ("90"), cached per device."""
    import cupy as cp
    return _capability(cp.cuda.Device().id)


def pdl_active() -> bool:
    """Whether launch(..., pdl=True) uses PDL here (LQQ_PDL, an sm_90+ GPU and a
    driver with cuLaunchKernelEx)."""
    return knobs.pdl() and _launch_fn() is not None and int(compute_capability()) >= 90


def _pack(args):
    """(buffer, kernelParams): every argument in its own 8-byte aligned slot of
    one buffer, and the array of pointers to them that cuLaunchKernelEx takes.
    Hot path (every launch): one struct.pack, a few type checks per argument."""
    import cupy as cp
    fmt, values, offsets, off = ["<"], [], [], 0
    for a in args:
        t = type(a)
        offsets.append(off)
        if t is np.int32:
            fmt.append("i4x")
            values.append(int(a))
            off += 8
        elif t is cp.ndarray:
            fmt.append("Q")
            values.append(a.data.ptr)
            off += 8
        elif isinstance(a, (np.ndarray, np.generic)):   # other scalars, by-value structs
            data = np.ascontiguousarray(a).tobytes()
            n = -(-len(data) // 8) * 8
            fmt.append(f"{n}s")
            values.append(data)
            off += n
        else:
            raise TypeError(f"kernel argument of type {t.__name__}: pass a cupy array or a "
                            f"numpy scalar/array")
    buf = (ctypes.c_uint64 * (off // 8)).from_buffer_copy(struct.pack("".join(fmt), *values))
    base = ctypes.addressof(buf)
    return buf, (ctypes.c_void_p * len(offsets))(*[base + o for o in offsets])


_function_ptrs: dict = {}      # RawKernel -> CUfunction (lqq keeps its kernels loaded)


def launch(kernel, grid, block, args, shared_mem: int = 0, stream=None, pdl: bool = False):
    """Launch a cupy.RawKernel on `stream` (default: the current CuPy stream),
    with programmatic dependent launch when pdl is asked for and available."""
    import cupy as cp
    if not (pdl and pdl_active()):
        with stream or cp.cuda.get_current_stream():
            kernel(grid, block, args, shared_mem=shared_mem)
        return
    stream = stream or cp.cuda.get_current_stream()
    grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
    config = _LaunchConfig((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), shared_mem,
                           stream.ptr, _PDL_ATTR_PTR, 1)
    buf, params = _pack(args)      # noqa: F841 - buf must live through the call
    fptr = _function_ptrs.get(kernel)
    if fptr is None:
        fptr = _function_ptrs[kernel] = kernel.kernel.ptr
    err = _launch_fn()(ctypes.byref(config), fptr, params, None)
    if err:
        raise RuntimeError(f"cuLaunchKernelEx({kernel.name}) failed with CUresult {err}")
