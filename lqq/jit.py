"""The run-time kernel pipeline: render a Jinja template -> compile with NVRTC
-> cache the cubin on disk -> load it with CuPy.

    src = render("gemm.cu.j2", BM=128, BN=128)
    kernel = get_function(src, "lqq_gemm")        # a cupy.RawKernel

Cache entries live in ``<LQQ_CACHE_DIR>/kernels/<key[:2]>/<key>.{cubin,json}``.
Writers publish with ``os.replace`` (cubin first, json last) and readers
check the json and the cubin's sha256, so concurrent processes need no locks
and a torn or foreign entry is rebuilt, never trusted.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2

from . import knobs, nvrtc
from ._version import __version__
from .nvrtc import CompileError

__all__ = ["render", "template_dir", "template_hash", "compile", "load", "get_function",
           "cache_root", "clear_cache", "list_cache", "default_arch", "log_debug", "Compiled",
           "CompileError"]

logger = logging.getLogger("lqq")


@dataclass(frozen=True)
class Compiled:
    key: str
    name: str
    arch: str
    cubin_path: Path
    log: str
    compile_seconds: float      # 0.0 on a cache hit
    cached: bool


def log_debug(msg: str, *args) -> None:
    """Log through the "lqq" logger when LQQ_DEBUG is on, visibly even if the
    application never configured logging."""
    if not knobs.debug():
        return
    if not logger.hasHandlers():
        logger.addHandler(logging.StreamHandler())
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.info("lqq: " + msg, *args)


# ---------------------------------------------------------------- templates

def template_dir() -> Path:
    """lqq/cuda_templates in an installed package, else the repo's cuda_templates/."""
    here = Path(__file__).resolve().parent
    packaged = here / "cuda_templates"
    return packaged if packaged.is_dir() else here.parent / "cuda_templates"


@functools.lru_cache(maxsize=None)
def _environment(directory: str) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(directory),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def render(template: str, **params) -> str:
    """Render one template (which may import/include others) to a single source."""
    return _environment(str(template_dir())).get_template(template).render(**params)


def template_hash() -> str:
    """sha256 over every template file's relative name and contents."""
    root = template_dir()
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


# ---------------------------------------------------------------- cache

def cache_root() -> Path:
    return knobs.cache_dir()


def _entry(key: str) -> tuple[Path, Path]:
    d = cache_root() / "kernels" / key[:2]
    return d / f"{key}.cubin", d / f"{key}.json"


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read_entry(key: str) -> dict | None:
    """The metadata of a valid entry, or None (missing, torn, corrupt, foreign)."""
    cubin_path, json_path = _entry(key)
    if not json_path.exists():
        return None
    try:
        meta = json.loads(json_path.read_text())
        if not isinstance(meta, dict) or meta.get("key") != key or not isinstance(meta.get("log"), str):
            raise ValueError("metadata is malformed or belongs to another entry")
        if hashlib.sha256(cubin_path.read_bytes()).hexdigest() != meta["cubin_sha256"]:
            raise ValueError("cubin does not match its recorded sha256")
        return meta
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("lqq: ignoring bad cache entry %s (%s); rebuilding", json_path, e)
        return None


def list_cache() -> list[dict]:
    """Metadata of every valid cache entry, with its cubin path and size."""
    entries = []
    for json_path in sorted((cache_root() / "kernels").glob("*/*.json")):
        meta = _read_entry(json_path.stem)
        if meta is not None:
            cubin_path = _entry(meta["key"])[0]
            entries.append({**meta, "cubin_path": str(cubin_path), "bytes": cubin_path.stat().st_size})
    return entries


def clear_cache() -> None:
    """Delete every cached kernel and saved failed source."""
    for sub in ("kernels", "failed"):
        shutil.rmtree(cache_root() / sub, ignore_errors=True)


# ---------------------------------------------------------------- compile

def default_arch() -> str:
    """LQQ_ARCH, else the current GPU's (sm_90a on Hopper, to get wgmma)."""
    arch = knobs.arch()
    if arch:
        return arch
    try:
        import cupy
        cc = cupy.cuda.Device().compute_capability
    except Exception as e:          # no cupy, no driver or no GPU
        raise RuntimeError(f"cannot tell the target GPU ({e}); pass arch= or set "
                           f"LQQ_ARCH (e.g. sm_90a)") from e
    return "sm_90a" if cc == "90" else f"sm_{cc}"


def _options(arch: str, options) -> list[str]:
    # -v puts register/spill counts and ptxas warnings (e.g. C7510) in the log.
    # NVRTC 12.9+ keeps its own cache of ptxas results where a driver is
    # present, and a hit returns the cubin with an empty log (no figures, no
    # warnings); lqq's cache already stores the cubin with its log, so NVRTC's
    # is turned off.
    no_cache = ["--no-cache"] if nvrtc.version() >= (12, 9) else []
    return [f"--gpu-architecture={arch}", "-std=c++17", "--ptxas-options=-v", *no_cache, *options]


def _key(source: str, opts: list[str], arch: str) -> str:
    blob = json.dumps([source, sorted(opts), arch, list(nvrtc.version()), __version__])
    return hashlib.sha256(blob.encode()).hexdigest()


def compile(source: str, name: str, arch: str | None = None, options: tuple = ()) -> Compiled:
    """Compile ``source`` (kernel ``name``) to a cubin, or reuse the cached one."""
    arch = arch or default_arch()
    opts = _options(arch, options)
    key = _key(source, opts, arch)
    cubin_path, json_path = _entry(key)
    dump = knobs.dump_dir()
    # With LQQ_DUMP_DIR set, a kernel not yet dumped is recompiled so that its
    # .cu, .ptx and .sass all come from one compile.
    dumped = dump is None or (dump / f"{name}-{key[:12]}.cu").exists()
    meta = _read_entry(key) if dumped else None
    if meta is not None:
        log_debug("%s %s: cache hit %s", name, arch, key[:12])
        return Compiled(key, name, arch, cubin_path, meta["log"], 0.0, True)

    start = time.perf_counter()
    try:
        result = nvrtc.compile(source, name, opts)
    except CompileError as e:
        failed = cache_root() / "failed" / f"{key}.cu"
        _write_atomic(failed, source.encode())
        raise CompileError(f"{e}\nsource: {failed}", log=e.log, source_path=str(failed)) from None
    seconds = time.perf_counter() - start

    _write_atomic(cubin_path, result.cubin)
    meta = {"key": key, "name": name, "arch": arch, "options": opts,
            "nvrtc_version": list(nvrtc.version()), "lqq_version": __version__,
            "log": result.log, "cubin_sha256": hashlib.sha256(result.cubin).hexdigest(),
            "compile_seconds": seconds, "time": time.time()}
    _write_atomic(json_path, json.dumps(meta, indent=1).encode())
    if dump is not None:
        _dump(dump, f"{name}-{key[:12]}", source, result.ptx, cubin_path)
    log_debug("%s %s: compiled in %.2f s (%s)", name, arch, seconds, key[:12])
    return Compiled(key, name, arch, cubin_path, result.log, seconds, False)


def _dump(directory: Path, stem: str, source: str, ptx: str | None, cubin_path: Path) -> None:
    from . import sass
    if ptx is not None:
        _write_atomic(directory / f"{stem}.ptx", ptx.encode())
    try:
        _write_atomic(directory / f"{stem}.sass", sass.sass_text(cubin_path).encode())
    except RuntimeError:
        pass                        # no cuobjdump/nvdisasm here: SASS is optional
    _write_atomic(directory / f"{stem}.cu", source.encode())   # last: marks the dump complete


# ---------------------------------------------------------------- load

_modules: dict[tuple[str, int], object] = {}
_kernels: dict[tuple[str, int, str], object] = {}


def _device_id() -> int:
    import cupy
    return cupy.cuda.Device().id


def load(compiled: Compiled, name: str | None = None):
    """The cupy.RawKernel ``name`` (default: compiled.name) on the current device."""
    import cupy
    name = name or compiled.name
    dev = _device_id()
    module = _modules.get((compiled.key, dev))
    if module is None:
        module = _modules[(compiled.key, dev)] = cupy.RawModule(path=str(compiled.cubin_path))
    return module.get_function(name)


def get_function(source: str, name: str, arch: str | None = None, options: tuple = ()):
    """compile + load, memoized in-process so repeat calls skip the disk."""
    arch = arch or default_arch()
    memo = (_key(source, _options(arch, options), arch), _device_id(), name)
    kernel = _kernels.get(memo)
    if kernel is None:
        kernel = _kernels[memo] = load(compile(source, name, arch, options), name)
    return kernel
