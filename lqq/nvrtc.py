"""A minimal ctypes binding to NVRTC: find the library, compile one source.

No CUDA toolkit, GPU or CuPy is needed: the pip wheels ``nvidia-cuda-nvrtc-cu12``
(CUDA 12) and ``nvidia-cuda-nvrtc`` (CUDA 13) are enough to build cubins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import re
import site
import sys
from dataclasses import dataclass

from . import knobs

_INSTALL_HINT = ("pip install nvidia-cuda-nvrtc-cu12 (CUDA 12) or nvidia-cuda-nvrtc (CUDA 13), "
                 "or point LQQ_NVRTC at libnvrtc")


class CompileError(RuntimeError):
    """NVRTC rejected a source; the message carries the full compiler log."""

    def __init__(self, message: str, log: str = "", source_path: str | None = None):
        super().__init__(message)
        self.log = log
        self.source_path = source_path


@dataclass(frozen=True)
class CompileResult:
    cubin: bytes
    ptx: str | None     # None where NVRTC produced none for these options
    log: str


def _site_dirs() -> list[str]:
    dirs = list(sys.path)
    try:
        dirs += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:      # some virtualenv builds lack these
        pass
    return [d for d in dict.fromkeys(dirs) if d and os.path.isdir(d)]


def _version_of(path: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", os.path.basename(path))
    return tuple(int(n) for n in nums)


def _candidate_paths():
    """Library paths to try, best first, found lazily: LQQ_NVRTC, pip wheels
    (newest CUDA first), CUDA_PATH, /usr/local/cuda, then whatever the loader
    finds (ctypes.util.find_library runs ldconfig: tens of milliseconds, paid
    only when no wheel or toolkit copy loads)."""
    override = knobs.nvrtc_path()
    if override is not None:
        yield str(override)
        return
    if sys.platform == "win32":
        patterns = ["nvidia/*/bin/nvrtc64_*.dll", "nvidia/*/bin/x86_64/nvrtc64_*.dll"]
        toolkit = ["bin/nvrtc64_*.dll", "bin/x64/nvrtc64_*.dll"]
    else:
        patterns = ["nvidia/*/lib/libnvrtc.so.*"]
        toolkit = ["lib64/libnvrtc.so*", "lib/libnvrtc.so*"]
    wheels = []
    for d in _site_dirs():
        for pat in patterns:
            # "builtins" and "alt" variants are helpers, not the API library.
            wheels += [p for p in glob.glob(os.path.join(d, pat))
                       if "builtins" not in p and ".alt." not in p]
    yield from sorted(wheels, key=_version_of, reverse=True)
    for root in [os.environ.get("CUDA_PATH"), "/usr/local/cuda"]:
        if root:
            for pat in toolkit:
                yield from sorted(glob.glob(os.path.join(root, pat)), key=_version_of, reverse=True)
    for name in ["nvrtc", "nvrtc64_130_0", "nvrtc64_120_0"]:
        lib = ctypes.util.find_library(name)     # ldconfig cache on Linux
        if lib:
            yield lib
    yield from ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]


def candidates() -> list[str]:
    """Every library path lqq would try, best first (see _candidate_paths)."""
    return list(dict.fromkeys(_candidate_paths()))


@functools.lru_cache(maxsize=None)
def _load_for(override: str | None) -> ctypes.CDLL:
    errors, tried = [], set()
    for path in _candidate_paths():
        if path in tried:
            continue
        tried.add(path)
        try:
            lib = ctypes.CDLL(path)
            lib.nvrtcVersion       # a library that loads but is not NVRTC fails here
        except (OSError, AttributeError) as e:
            errors.append(f"  {path}: {e}")
            continue
        _declare(lib)
        return lib
    if override is not None:
        raise RuntimeError(f"LQQ_NVRTC={override} could not be loaded:\n" + "\n".join(errors))
    raise RuntimeError("libnvrtc was not found; " + _INSTALL_HINT)


def library() -> ctypes.CDLL:
    """The loaded libnvrtc (loaded once per LQQ_NVRTC value)."""
    override = knobs.nvrtc_path()
    return _load_for(None if override is None else str(override))


def library_path() -> str:
    return library()._name


def _declare(lib: ctypes.CDLL) -> None:
    P, S, C, I = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_int
    sigs = {
        "nvrtcVersion": [ctypes.POINTER(I), ctypes.POINTER(I)],
        "nvrtcCreateProgram": [ctypes.POINTER(P), C, C, I, P, P],
        "nvrtcCompileProgram": [P, I, ctypes.POINTER(C)],
        "nvrtcDestroyProgram": [ctypes.POINTER(P)],
        "nvrtcGetProgramLogSize": [P, S], "nvrtcGetProgramLog": [P, C],
        "nvrtcGetPTXSize": [P, S], "nvrtcGetPTX": [P, C],
        "nvrtcGetCUBINSize": [P, S], "nvrtcGetCUBIN": [P, C],
    }
    for fn, args in sigs.items():
        getattr(lib, fn).argtypes = args
        getattr(lib, fn).restype = I
    lib.nvrtcGetErrorString.argtypes = [I]
    lib.nvrtcGetErrorString.restype = C


def _check(lib, status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} failed: {lib.nvrtcGetErrorString(status).decode()}")


def version() -> tuple[int, int]:
    lib = library()
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def _get(lib, prog, size_fn: str, get_fn: str) -> bytes | None:
    """A program output sized by its own Size call; None if NVRTC has none."""
    size = ctypes.c_size_t()
    if getattr(lib, size_fn)(prog, ctypes.byref(size)) != 0 or size.value == 0:
        return None
    buf = ctypes.create_string_buffer(size.value)
    if getattr(lib, get_fn)(prog, buf) != 0:
        return None
    return buf.raw    # exactly size bytes: the cubin may contain NULs


def compile(source: str, name: str, options: list[str]) -> CompileResult:
    """Compile one CUDA source; ``options`` one flag per element."""
    lib = library()
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), f"{name}.cu".encode(),
                                       0, None, None), "nvrtcCreateProgram")
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = lib.nvrtcCompileProgram(prog, len(options), opts)
        log = (_get(lib, prog, "nvrtcGetProgramLogSize", "nvrtcGetProgramLog") or b"")
        log = log.rstrip(b"\0").decode(errors="replace")
        if status != 0:
            err = lib.nvrtcGetErrorString(status).decode()
            raise CompileError(f"NVRTC failed to compile {name} ({err}):\n{log}", log=log)
        cubin = _get(lib, prog, "nvrtcGetCUBINSize", "nvrtcGetCUBIN")
        if cubin is None:
            raise CompileError(f"NVRTC produced no cubin for {name}; target a real "
                               f"architecture (sm_XX, not compute_XX)", log=log)
        ptx = _get(lib, prog, "nvrtcGetPTXSize", "nvrtcGetPTX")
        ptx = ptx.rstrip(b"\0").decode() if ptx is not None else None
        return CompileResult(cubin=cubin, ptx=ptx, log=log)
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
