"""The autotune cache: the kernel plan measured fastest per GPU and shape.

One JSON file per device fingerprint under ``<cache root>/autotune/``::

    {"format": "lqq-autotune", "format_version": 1,
     "device": {"gpu": "NVIDIA H100 80GB HBM3", "sm_count": 132,
                "compute_capability": "9.0", "driver": 12040, "nvrtc": "12.9",
                "lqq": "0.1.0", "template_hash": "<sha256>"},
     "entries": {"4096x4096/g64/m16": {"N": 4096, "K": 4096, "group_size": 64,
                 "m_bucket": 16, "winner": "decode_bm16_rb1_pf4_s4", "winner_ms": ...,
                 "heuristic": "...", "heuristic_ms": ..., "candidates": [...], ...}}}

Plans are written as LQQ_FORCE_CONFIG strings, so a winner can be pinned by
hand. The file name carries a hash of the fingerprint, and a file whose
``device`` differs from this process's GPU and versions is never used.

M buckets: a token count M maps to the smallest power of two >= M, capped at
8192 (bucket b holds b/2 < M <= b; bucket 8192 holds every M > 4096). autotune
times the bucket's own M, so a winner's BM always covers the bucket.

``lookup`` is on lqq.gemm's hot path: the file is read once per (device, file
version) into a dict, re-stat'ed at most every RECHECK_S seconds; a call costs
a few dict lookups.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path

from . import knobs
from ._version import __version__

FORMAT = "lqq-autotune"
FORMAT_VERSION = 1
M_MAX = 8192
M_BUCKETS = tuple(1 << i for i in range(M_MAX.bit_length()))     # 1, 2, 4, ..., 8192
RECHECK_S = 1.0


def m_bucket(M: int) -> int:
    if M < 1:
        raise ValueError(f"M={M}: the token count must be >= 1")
    return min(1 << (M - 1).bit_length(), M_MAX)


def entry_key(N: int, K: int, group_size: int, bucket: int) -> str:
    return f"{N}x{K}/g{group_size}/m{bucket}"


def plan_text(p) -> str:
    """A Plan as LQQ_FORCE_CONFIG text, e.g. decode_bm8_rb1_pf4_s8."""
    from . import configs
    c = p.config
    if isinstance(c, configs.DecodeConfig):
        return f"decode_bm{c.BM}_rb{c.RB}_pf{c.PF}_s{p.splits}"
    if isinstance(c, configs.WgmmaConfig):
        return f"wgmma_{c.tag}_c{p.grid[0]}"
    return f"mma_bm{c.BM}_rb{c.RB}_s{p.splits}"


# ---------------------------------------------------------------- the key

_fingerprints: dict = {}


def current_device() -> int:
    import cupy as cp
    return cp.cuda.Device().id


def device_fingerprint(dev_id: int | None = None) -> dict:
    """Everything a measurement depends on besides the shape (needs CuPy and a
    GPU); memoized per device for the process, but for LQQ_ARCH (read on
    every call: a forced compile target tunes into a file of its own)."""
    dev = current_device() if dev_id is None else dev_id
    fp = _fingerprints.get(dev)
    if fp is None:
        import cupy as cp

        from . import jit, nvrtc
        props = cp.cuda.runtime.getDeviceProperties(dev)
        name = props["name"]
        fp = _fingerprints[dev] = {
            "gpu": name.decode() if isinstance(name, bytes) else str(name),
            "sm_count": int(props["multiProcessorCount"]),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "driver": int(cp.cuda.runtime.driverGetVersion()),
            "nvrtc": ".".join(map(str, nvrtc.version())),
            "lqq": __version__,
            "template_hash": jit.template_hash()}
    target = knobs.arch()
    return {**fp, "target": target} if target else fp


def device_hash(device: dict) -> str:
    return hashlib.sha256(json.dumps(device, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    from . import jit
    return jit.cache_root() / "autotune"


def path_for(device: dict) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(device.get("gpu", "gpu"))).strip("-") or "gpu"
    cc = str(device.get("compute_capability", "")).replace(".", "")
    return cache_dir() / f"{slug}-cc{cc}-{device_hash(device)[:12]}.json"


# ---------------------------------------------------------------- the file

def _valid_entry(e) -> bool:
    from . import configs
    try:
        ok = all(isinstance(e[f], int) and e[f] > 0 for f in ("N", "K", "group_size", "m_bucket"))
        configs._parse_forced(e["winner"])
        return ok
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return False


def read(path: Path, device: dict) -> dict:
    """The valid entries of ``path`` for ``device``; {} with a warning if the
    file is torn, corrupt, not ours, or written for another GPU or version."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        warnings.warn(f"lqq: ignoring unreadable autotune cache {path} ({e}); it will be "
                      f"rewritten", RuntimeWarning, stacklevel=2)
        return {}
    why = None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        why = "not an lqq autotune file"
    elif doc.get("format_version") != FORMAT_VERSION:
        why = f"format version {doc.get('format_version')!r}, expected {FORMAT_VERSION}"
    elif doc.get("device") != device:
        why = "written for another GPU, driver, NVRTC, lqq version or template set"
    elif not isinstance(doc.get("entries"), dict):
        why = "no entries table"
    if why:
        warnings.warn(f"lqq: ignoring autotune cache {path} ({why}); it will be rewritten",
                      RuntimeWarning, stacklevel=2)
        return {}
    entries = {k: e for k, e in doc["entries"].items() if _valid_entry(e)}
    if len(entries) < len(doc["entries"]):
        warnings.warn(f"lqq: ignoring {len(doc['entries']) - len(entries)} malformed entries in "
                      f"{path}", RuntimeWarning, stacklevel=2)
    return entries


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock beside ``path`` where the OS has flock, so
    concurrent read-merge-write cycles do not drop each other's entries.
    Without it, writes stay atomic and the last one wins."""
    try:
        import fcntl
        f = open(path.with_name(path.name + ".lock"), "a+")
    except (ImportError, OSError):
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError:
            pass
        yield


def store(entries: dict, device: dict | None = None) -> Path:
    """Merge ``entries`` (entry_key -> entry) into the device's file; atomic."""
    from . import jit
    device = device or device_fingerprint()
    path = path_for(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "device": device,
               "entries": {**read(path, device), **entries}, "updated": time.time()}
        jit._write_atomic(path, json.dumps(doc, indent=1, sort_keys=True).encode())
    invalidate()
    return path


def load_all() -> list[dict]:
    """Every file under the autotune directory, for `lqq cache list`: path,
    device, entries (or error), bytes. Does not need a GPU."""
    out = []
    for path in sorted(cache_dir().glob("*.json")):
        row = {"path": str(path), "bytes": path.stat().st_size}
        try:
            doc = json.loads(path.read_bytes())
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not an lqq autotune file")
            row.update(device=doc.get("device"), entries=doc.get("entries") or {})
        except (OSError, ValueError) as e:
            row.update(device=None, entries={}, error=str(e))
        out.append(row)
    return out


def clear() -> None:
    shutil.rmtree(cache_dir(), ignore_errors=True)
    invalidate()


# ---------------------------------------------------------------- hot-path lookup

class _Index:
    def __init__(self, path: Path, version, entries: dict, sm_count: int = 0):
        self.path, self.version, self.sm_count = path, version, sm_count
        self.checked = time.monotonic()
        self.memo: dict = {}
        # (N, K, bucket) -> {group size: ((config, splits, ctas), the M it was tuned at)}
        self.by_shape: dict = {}
        from . import configs
        for e in entries.values():
            self.by_shape.setdefault((e["N"], e["K"], e["m_bucket"]), {})[e["group_size"]] = (
                configs._parse_forced(e["winner"]), e.get("m_tuned", e["m_bucket"]))

    def resolve(self, M, N, K, group_size):
        from . import configs, packing
        per = self.by_shape.get((N, K, m_bucket(M)))
        if not per:
            return None
        if group_size is None:          # caller did not say: prefer the default group size
            group_size = 64 if 64 in per else min(per)
        if group_size not in per:
            return None
        (cfg, splits, ctas), m_tuned = per[group_size]
        p = configs.plan(cfg, M, N, K, splits, ctas)
        if configs.why_illegal(p, M, N, K):
            return None
        if isinstance(cfg, configs.WgmmaConfig) and M != m_tuned and self.sm_count \
                and packing.round_up(M, cfg.BN) > M:
            # a Hopper winner timed at another M of the bucket (`lqq autotune`
            # times its largest, a power of two, where the token tiles were
            # full): where the heuristic's token tile pads this M less, the
            # heuristic runs: a wider tile computes the padded tokens anyway
            # (twice, in the last tile's overlap), e.g. 129..192 tokens on a
            # 256-token winner up to twice the tokens (M = 384 on 256-token
            # tiles took 0.121 ms against 0.070 on 192, H200, RESULTS.md
            # session 16, before the last tile moved inside M).
            h = configs.heuristic(M, N, K, self.sm_count, wgmma=True).config
            if isinstance(h, configs.WgmmaConfig) and \
                    packing.round_up(M, h.BN) < packing.round_up(M, cfg.BN):
                return None
        return p


_indexes: dict = {}
_warned: set = set()
_MISS = object()


def invalidate() -> None:
    """Forget what was loaded (after a write, or when LQQ_CACHE_DIR changes)."""
    _indexes.clear()


def _file_version(path: Path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def lookup(M: int, N: int, K: int, group_size: int | None = None, device: dict | None = None):
    """The cached winner's Plan for this shape on the current GPU, or None.
    Never raises (a broken cache means the heuristic) and never times anything."""
    try:
        slot = current_device() if device is None else device_hash(device)
        ix = _indexes.get(slot)
        now = time.monotonic()
        if ix is None or now - ix.checked > RECHECK_S:
            device = device or device_fingerprint(slot)
            path = path_for(device)
            version = _file_version(path)
            if ix is not None and ix.version == version and ix.path == path:
                ix.checked = now
            else:
                ix = _indexes[slot] = _Index(path, version, read(path, device) if version else {},
                                             device.get("sm_count", 0))
        memo = (M, N, K, group_size)
        p = ix.memo.get(memo, _MISS)
        if p is _MISS:
            if len(ix.memo) > 65536:
                ix.memo.clear()
            p = ix.memo[memo] = ix.resolve(M, N, K, group_size)
        return p
    except Exception as e:  # noqa: BLE001 - the hot path falls back, it never fails
        if type(e) not in _warned:
            _warned.add(type(e))
            warnings.warn(f"lqq: autotune cache lookup failed ({type(e).__name__}: {e}); using "
                          f"the heuristic", RuntimeWarning, stacklevel=2)
        return None
