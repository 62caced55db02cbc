"""Reading tensors from a `.safetensors` file with the `safetensors` package,
only those of the layer asked for (a shard can hold gigabytes).

NumPy has no bfloat16, so safetensors' NumPy reader cannot return BF16
tensors (compressed-tensors often stores its scales that way). Those few are
read from the file directly, by the layout the safetensors format documents
(8-byte little-endian header length, JSON header, raw little-endian data), and
widened to float32, which holds every bfloat16 exactly.
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np


def _safetensors():
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401  (the NumPy side must be there too)
    except ImportError:
        raise ImportError("reading .safetensors files needs the safetensors package: "
                          "pip install safetensors") from None
    return safetensors


def _open(path):
    st = _safetensors()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return st.safe_open(path, framework="np")
    except Exception as e:  # SafetensorError for a torn or foreign file
        raise ValueError(f"{path} is not a readable .safetensors file ({e})") from None


def tensor_names(path) -> list:
    """Every tensor name in the file (reads the header only)."""
    with _open(path) as f:
        return list(f.keys())


def _read_bf16(path, name: str) -> np.ndarray:
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        info = json.loads(fh.read(n))[name]
        start, end = info["data_offsets"]
        fh.seek(8 + n + start)
        raw = np.frombuffer(fh.read(end - start), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(info["shape"])


def read_tensors(path, prefix: str = "") -> dict:
    """{name: NumPy array} for the tensors named `prefix.*` (all when prefix is "")."""
    path = os.fspath(path)
    head = f"{prefix.rstrip('.')}." if prefix else ""
    out = {}
    with _open(path) as f:
        for name in f.keys():
            if not name.startswith(head):
                continue
            dtype = f.get_slice(name).get_dtype()
            if dtype == "BF16":
                out[name] = _read_bf16(path, name)
                continue
            try:
                out[name] = f.get_tensor(name)
            except TypeError as e:  # a dtype NumPy cannot hold (float8, ...)
                raise ValueError(f"{path}: tensor {name!r} has dtype {dtype}, which this "
                                 f"reader does not handle ({e})") from None
    return out
