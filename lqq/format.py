"""The LQQ weight format (SPEC section 1): the LQQWeight container, the encoder
front door, reconstruction, and the versioned on-disk file.

    W'[n,k] = s1[n] * (Q[n,k] * s2[n,g] + z[n,g] - 128),   g = k // group_size

Codes are stored two per byte (even k in the low nibble), row-major [N, K/2].
How the kernels want the codes laid out is the packing module's business.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field

import numpy as np

from . import _xp, checks, encoders
from ._version import __version__

FORMAT_NAME = "lqq-weight"
FORMAT_VERSION = 1
_ARRAYS = ("codes", "s2", "z", "s1")


@dataclass(eq=False)
class LQQWeight:
    """An LQQ-quantized weight of logical shape [N, K] (out x in features).

    codes: uint8 [N, K // 2], two 4-bit codes per byte (even k low nibble)
    s2:    uint8 [N, K // group_size], steps in 1..17
    z:     uint8 [N, K // group_size], offsets, z + 15 * s2 <= 255
    s1:    float32 [N], per-channel scales
    Arrays are NumPy or CuPy (all on the same side).
    """
    codes: object
    s2: object
    z: object
    s1: object
    shape: tuple
    group_size: int
    method: str = "round"
    format_version: int = FORMAT_VERSION
    # packed copies per device (lqq.gpu_gemm): never passed on by
    # dataclasses.replace, whose new arrays they would not match
    _device_cache: dict = field(default_factory=dict, repr=False, init=False, compare=False)

    @property
    def N(self) -> int:
        return self.shape[0]

    @property
    def K(self) -> int:
        return self.shape[1]

    @property
    def xp(self):
        return _xp.module_of(self.codes)

    @property
    def on_gpu(self) -> bool:
        return _xp.is_cupy(self.codes)

    @property
    def nbytes(self) -> int:
        return sum(int(getattr(self, a).nbytes) for a in _ARRAYS)

    def __repr__(self):
        side = "cupy" if self.on_gpu else "numpy"
        return (f"LQQWeight(shape={self.shape}, group_size={self.group_size}, "
                f"method={self.method!r}, {side}, {self.nbytes / 2**20:.2f} MiB)")

    def unpacked_codes(self):
        """Codes Q as uint8 [N, K], one per byte."""
        xp = self.xp
        out = xp.empty(self.shape, dtype=xp.uint8)
        out[:, 0::2] = self.codes & 0x0F
        out[:, 1::2] = self.codes >> 4
        return out

    def int8(self):
        """The exact integer weight W8' = Q * s2 + z - 128 as int8 [N, K]."""
        xp = self.xp
        N, K = self.shape
        G = self.group_size
        Q = self.unpacked_codes().reshape(N, K // G, G).astype(xp.int16)
        W8 = Q * self.s2[..., None].astype(xp.int16) + self.z[..., None].astype(xp.int16) - 128
        return W8.reshape(N, K).astype(xp.int8)

    def to_gpu(self):
        """A copy of this weight with its arrays on the current CuPy device."""
        cp = _xp._require_cupy("LQQWeight.to_gpu")
        return LQQWeight(*(cp.asarray(getattr(self, a)) for a in _ARRAYS), shape=self.shape,
                         group_size=self.group_size, method=self.method)

    def to_cpu(self):
        return LQQWeight(*(_xp.to_numpy(getattr(self, a)) for a in _ARRAYS), shape=self.shape,
                         group_size=self.group_size, method=self.method)

    def save(self, path):
        save(self, path)


def pack_nibbles(xp, Q):
    """uint8 codes [N, K] (K even) -> bytes [N, K/2], even k in the low nibble."""
    return (Q[:, 0::2] | (Q[:, 1::2] << 4)).astype(xp.uint8)


def quantize_weight(W, group_size: int = 64, method: str = "search") -> LQQWeight:
    """Quantize a float weight ``W`` [N, K] (out_features x in_features, like
    ``torch.nn.Linear.weight``) to LQQ.

    group_size: 32, 64, 128, 256 or K (one group per row); must divide K.
    method: "search" (default; least squared error over (s2, z) candidates),
    "round" (SPEC's deterministic reference encoder) or "paper".
    A NumPy input gives a NumPy-backed weight, a CuPy (or CUDA torch) input a
    GPU-backed one; both encoders give identical bits.
    """
    arr, _kind = _xp.as_array(W)
    xp = _xp.module_of(arr)
    if not checks.is_float(arr):
        raise TypeError(f"W must be a float array (float16/bfloat16/float32/float64), got "
                        f"{checks.dtype_name(arr)}")
    checks.require_ndim(arr, 2, "W")
    if method not in encoders.METHODS:
        raise ValueError(f"method={method!r} is not known; use one of {encoders.METHODS}")
    N, K = arr.shape
    if N < 1 or K < 1:
        raise ValueError(f"W must be non-empty, got shape {tuple(arr.shape)}")
    checks.check_k(K)
    group_size = checks.check_group_size(group_size, K)
    W32 = arr.astype(xp.float32)
    checks.require_finite(xp, W32, "W")
    s1, s2, z, Q = encoders.ENCODERS[method](xp, W32, group_size)
    return LQQWeight(pack_nibbles(xp, Q), s2, z, s1, shape=(N, K), group_size=group_size,
                     method=method)


def dequantize(w: LQQWeight):
    """Float32 reconstruction ``s1 * (Q * s2 + z - 128)`` [N, K], on the weight's side."""
    _check_weight(w)
    xp = w.xp
    return (w.s1[:, None] * w.int8().astype(xp.float32)).astype(xp.float32)


def _check_weight(w):
    if not isinstance(w, LQQWeight):
        raise TypeError(f"expected an LQQWeight (from lqq.quantize_weight or lqq.load), got "
                        f"{type(w).__name__}")


def validate(w: LQQWeight):
    """Check that the arrays of ``w`` form a legal LQQ weight; ValueError if not."""
    _check_weight(w)
    N, K = w.shape
    G = w.group_size
    xp = w.xp
    want = {"codes": ((N, K // 2), "uint8"), "s2": ((N, K // G), "uint8"),
            "z": ((N, K // G), "uint8"), "s1": ((N,), "float32")}
    for name, (shape, dtype) in want.items():
        a = getattr(w, name)
        if tuple(a.shape) != shape or str(a.dtype) != dtype:
            raise ValueError(f"LQQ weight array {name!r} is {a.dtype}{tuple(a.shape)}, "
                             f"expected {dtype}{shape}")
    if K % G or (G not in checks.GROUP_SIZES and G != K):
        raise ValueError(f"illegal group size {G} for K={K}")
    s2 = w.s2.astype(xp.int32)
    if bool(((s2 < 1) | (s2 > 17)).any()):
        raise ValueError("LQQ weight has steps s2 outside 1..17")
    if bool((w.z.astype(xp.int32) + 15 * s2 > 255).any()):
        raise ValueError("LQQ weight breaks the overflow invariant z + 15 * s2 <= 255")
    if not bool((xp.isfinite(w.s1) & (w.s1 > 0)).all()):
        raise ValueError("LQQ weight has non-finite or non-positive channel scales s1")


# ---------------------------------------------------------------- on disk

def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def save(w: LQQWeight, path):
    """Write ``w`` to ``path`` (a zip of .npy arrays and a JSON header with the
    format name, version, shape, group size, method and a SHA-256 per array).
    The write is atomic: a crash leaves the old file or none, never a torn one."""
    validate(w)
    arrays = {a: _xp.to_numpy(getattr(w, a)) for a in _ARRAYS}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "lqq_version": __version__,
            "shape": list(w.shape), "group_size": w.group_size, "method": w.method,
            "arrays": {a: {"dtype": str(v.dtype), "shape": list(v.shape), "sha256": _sha256(v)}
                       for a, v in arrays.items()}}
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lqq-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("meta.json", json.dumps(meta, indent=1))
            for name, a in arrays.items():
                buf = io.BytesIO()
                np.save(buf, a, allow_pickle=False)
                zf.writestr(name + ".npy", buf.getvalue())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path) -> LQQWeight:
    """Read an LQQ weight written by ``save`` (NumPy-backed; ``.to_gpu()`` moves
    it). Refuses, with ValueError, a file that is not an LQQ weight, comes from
    a newer format version, or whose contents do not match its header."""
    path = os.fspath(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path} is not an LQQ weight file ({e})") from None
    with zf:
        try:
            meta = json.loads(zf.read("meta.json"))
        except (KeyError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"{path}: missing or unreadable LQQ header ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ValueError(f"{path} is not an LQQ weight file (format={meta.get('format')!r})"
                             if isinstance(meta, dict) else f"{path}: bad LQQ header")
        ver = meta.get("format_version")
        if ver != FORMAT_VERSION:
            raise ValueError(f"{path} has LQQ format version {ver}; this lqq "
                             f"({__version__}) reads version {FORMAT_VERSION}: upgrade lqq "
                             f"or re-quantize")
        arrays = {}
        for name in _ARRAYS:
            info = meta.get("arrays", {}).get(name)
            try:
                a = np.load(io.BytesIO(zf.read(name + ".npy")), allow_pickle=False)
            except Exception as e:
                raise ValueError(f"{path}: array {name!r} is missing or corrupt ({e})") from None
            if info is None or _sha256(a) != info.get("sha256"):
                raise ValueError(f"{path}: array {name!r} does not match its checksum; the "
                                 f"file is corrupt")
            arrays[name] = a
    try:
        w = LQQWeight(**arrays, shape=tuple(int(v) for v in meta["shape"]),
                      group_size=int(meta["group_size"]), method=str(meta["method"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: incomplete LQQ header ({e})") from None
    try:
        validate(w)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return w
