"""The front door: one layer of a 4-bit checkpoint -> an LQQWeight and a
report. The source is dequantized exactly by its own rules, then requantized
with lqq.quantize_weight (the formats' grids differ: theirs is a float scale
and zero per group, LQQ's an integer step on a per-row scale)."""
from __future__ import annotations

import inspect
import re
from collections.abc import Mapping

import numpy as np

from .. import checks
from ..format import dequantize, quantize_weight
from . import awq, compressed_tensors, gptq, safetensors_io

# name -> (unpacker, fixed meta, suffix of the tensor that marks a layer)
_FORMATS = {
    "awq": (awq.unpack_awq, {}, "qweight"),
    "gptq": (gptq.unpack_gptq, {"checkpoint_format": "gptq"}, "qweight"),
    "gptq_v2": (gptq.unpack_gptq, {"checkpoint_format": "gptq_v2"}, "qweight"),
    "compressed-tensors": (compressed_tensors.unpack_compressed_tensors, {}, "weight_packed"),
}
FORMATS = tuple(_FORMATS)
_DEFAULT_GROUP = 64


def _canonical(format) -> str:
    f = str(format).strip().lower()
    f = {"gptq-v2": "gptq_v2", "gptq_v1": "gptq", "gptq-v1": "gptq",
         "compressed_tensors": "compressed-tensors"}.get(f, f)
    if f not in _FORMATS:
        raise ValueError(f"unknown checkpoint format {format!r}; expected one of {FORMATS}")
    return f


def _unpack(tensors, prefix, fmt, meta):
    unpack, fixed, _ = _FORMATS[fmt]
    meta = dict(meta)
    if "source_group_size" in meta:   # import_layer's own group_size is LQQ's
        meta["group_size"] = meta.pop("source_group_size")
    allowed = [p for p in inspect.signature(unpack).parameters if p not in ("tensors", "prefix")]
    unknown = sorted(set(meta) - set(allowed))
    if unknown:
        shown = ["source_group_size" if a == "group_size" else a for a in allowed]
        raise ValueError(f"{fmt}: unknown option(s) {unknown}; this format takes {shown}")
    for k, v in fixed.items():  # "gptq" may be told checkpoint_format="gptq_v2"
        if meta.setdefault(k, v) != v and fmt != "gptq":
            raise ValueError(f"format={fmt!r} conflicts with {k}={meta[k]!r}")
    if not isinstance(tensors, Mapping):
        raise TypeError(f"tensors must be a mapping of name -> array (e.g. from "
                        f"safetensors.numpy.load_file), got {type(tensors).__name__}")
    return unpack(tensors, prefix, **meta)


def dequantize_source(tensors, prefix: str, format: str, **meta) -> np.ndarray:
    """The source format's own dequantization of one layer: float32 [N, K]."""
    return _unpack(tensors, prefix, _canonical(format), meta).dequantize()


def _default_group(src_G, K: int) -> int:
    # Matching the source's groups keeps its grid inside one LQQ group: on
    # normal weights that is 2-3x less requantization error than any other size.
    if src_G is not None and K % src_G == 0 and (src_G in checks.GROUP_SIZES or src_G == K):
        return src_G
    return _DEFAULT_GROUP if K % _DEFAULT_GROUP == 0 else checks.K_MULTIPLE


def rel_error(approx, ref) -> float:
    """Relative Frobenius error ||approx - ref|| / ||ref|| (0 for two zero arrays)."""
    d = np.linalg.norm((approx - ref).astype(np.float64))
    r = np.linalg.norm(ref.astype(np.float64))
    return float(d / r) if r else (0.0 if d == 0 else float("inf"))


def import_layer(tensors, prefix: str, format: str, group_size=None, method="search", **meta):
    """Convert one layer of a 4-bit checkpoint to LQQ.

    tensors: mapping name -> NumPy array; the layer's tensors are `prefix.qweight`
             etc. format: one of FORMATS. group_size: LQQ's (default: the
             source's where LQQ supports it and it divides K, else 64).
    meta:    the source's options, checked against the checkpoint: bits /
             num_bits (4 only), source_group_size, and per format
             version="gemm" (awq), checkpoint_format (gptq),
             compression_format / symmetric (compressed-tensors).
    Returns (LQQWeight, report) with report keys source_format, shape,
    rel_error_vs_source, lqq_group_size, source_group_size, act_order, method.
    """
    fmt = _canonical(format)
    u = _unpack(tensors, prefix, fmt, meta)
    N, K = u.shape
    where = f"{fmt} layer {prefix!r}"
    try:
        checks.check_k(K)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    G = _default_group(u.group_size, K) if group_size is None else group_size
    W = u.dequantize()
    try:
        w = quantize_weight(W, group_size=G, method=method)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    report = {"source_format": fmt, "shape": (N, K),
              "rel_error_vs_source": rel_error(dequantize(w), W),
              "lqq_group_size": w.group_size, "source_group_size": u.group_size,
              "act_order": u.act_order, "method": method}
    return w, report


def import_safetensors(path, prefix: str, format: str, group_size=None, method="search",
                       **meta):
    """import_layer on the tensors `prefix.*` of a .safetensors file."""
    tensors = safetensors_io.read_tensors(path, prefix)
    if not tensors:
        raise ValueError(f"{path}: no tensors under prefix {prefix!r}; "
                         f"lqq.importers.list_layers(path, {format!r}) lists the layers")
    w, report = import_layer(tensors, prefix, format, group_size=group_size, method=method,
                             **meta)
    report["path"] = str(path)
    return w, report


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def list_layers(source, format: str) -> list:
    """Prefixes of the quantized layers of `format` in a .safetensors file (or a
    mapping of name -> array), in natural order (layers.2 before layers.10)."""
    suffix = _FORMATS[_canonical(format)][2]
    names = source.keys() if isinstance(source, Mapping) else safetensors_io.tensor_names(source)
    found = {n[: -len(suffix) - 1] for n in names if n.endswith("." + suffix)}
    if suffix in names:
        found.add("")
    return sorted(found, key=_natural)
