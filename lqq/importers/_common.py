"""What the format importers share: fetching and checking tensors, unpacking
int32 words of eight 4-bit fields, and the one dequantization rule every
supported format reduces to once unpacked:

    W[n, k] = (q[n, k] - zero[n, g]) * scale[n, g],   g = g_idx[k]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BITS = 4                  # the only width these importers read
PER_WORD = 32 // BITS     # fields per int32 word
_FLOATS = ("float16", "float32", "float64")
_WORDS = ("int32", "uint32")


@dataclass
class Unpacked:
    """A source layer as integers and float scales, in LQQ's [N, K] orientation.

    q:      int16 [N, K]   quantized values in the source's own domain
    zero:   int16 [N, ng]  effective zero points (0 for symmetric formats)
    scale:  float32 [N, ng]
    g_idx:  int64 [K]      group of each input column
    group_size: the source's group size where groups are contiguous runs of
                equal length (the last one may be short), else None
    act_order:  True when g_idx is not the contiguous k // group_size
    """
    q: np.ndarray
    zero: np.ndarray
    scale: np.ndarray
    g_idx: np.ndarray
    group_size: int | None
    act_order: bool

    @property
    def shape(self):
        return tuple(self.q.shape)

    def dequantize(self) -> np.ndarray:
        """float32 [N, K]; exact (a 5-bit integer times a float16/bfloat16
        scale fits float32's mantissa; float32 scales round once, as in the
        source's float32 arithmetic)."""
        N, K = self.q.shape
        G = self.group_size
        if not self.act_order and G is not None and K % G == 0:
            ng = K // G   # contiguous equal groups: broadcast, no [N, K] gathers
            d = self.q.reshape(N, ng, G) - self.zero[:, :, None]
            return (d.astype(np.float32) * self.scale[:, :, None]).reshape(N, K)
        d = (self.q - self.zero[:, self.g_idx]).astype(np.float32)
        return d * self.scale[:, self.g_idx]


def key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def norm_prefix(prefix) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str (e.g. 'model.layers.0.mlp.down_proj'), "
                        f"got {type(prefix).__name__}")
    return prefix[:-1] if prefix.endswith(".") else prefix


def get(tensors, prefix: str, name: str, fmt: str, required=True):
    """tensors[prefix.name] as a NumPy array; a missing required tensor is a
    ValueError that lists what the prefix does hold."""
    k = key(prefix, name)
    if k in tensors:
        return np.asarray(tensors[k])
    if not required:
        return None
    head = f"{prefix}." if prefix else ""
    have = sorted(t[len(head):] for t in tensors if t.startswith(head))
    raise ValueError(f"{fmt}: tensor {k!r} is missing; this layer holds "
                     f"{have if have else 'no tensors under that prefix'}"
                     f"{'' if have else ' (check the prefix)'}")


def require_dtype(a, allowed, what: str, fmt: str):
    if str(a.dtype) not in allowed:
        raise ValueError(f"{fmt}: {what} has dtype {a.dtype}, expected one of {list(allowed)}")


def require_words(a, what: str, fmt: str, ndim=2):
    require_dtype(a, _WORDS, what, fmt)
    if a.ndim != ndim:
        raise ValueError(f"{fmt}: {what} must be {ndim}-D, got shape {tuple(a.shape)}")
    return np.ascontiguousarray(a).view(np.uint32)


def require_scales(a, what: str, fmt: str):
    """Float scales as float32 (bfloat16 arrives as float32 from the reader)."""
    require_dtype(a, _FLOATS, what, fmt)
    s = a.astype(np.float32)
    if not bool(np.isfinite(s).all()):
        bad = int((~np.isfinite(s)).sum())
        raise ValueError(f"{fmt}: {what} holds {bad} NaN or Inf value(s); the checkpoint is "
                         f"corrupt or was not quantized")
    return s


def require_shape(a, shape, what: str, fmt: str, why: str = ""):
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{fmt}: {what} has shape {tuple(a.shape)}, expected {tuple(shape)}"
                         + (f" ({why})" if why else ""))


def check_bits(bits, fmt: str):
    if bits != BITS:
        raise ValueError(f"{fmt}: {bits}-bit weights are not supported; these importers "
                         f"read 4-bit checkpoints only")


def unpack_rows(words: np.ndarray) -> np.ndarray:
    """uint32 [R, C] packed along the last axis, low bits first -> uint8 [R, 8C]:
    out[r, 8c + j] = bits 4j..4j+3 of words[r, c]."""
    R, C = words.shape
    out = np.empty((R, C * PER_WORD), dtype=np.uint8)
    for j in range(PER_WORD):  # one shift at a time keeps temporaries word-sized
        out[:, j::PER_WORD] = (words >> np.uint32(BITS * j)) & np.uint32(0xF)
    return out


def unpack_cols(words: np.ndarray) -> np.ndarray:
    """uint32 [R, C] packed along the first axis, low bits first -> uint8 [8R, C]:
    out[8r + j, c] = bits 4j..4j+3 of words[r, c]."""
    R, C = words.shape
    out = np.empty((R * PER_WORD, C), dtype=np.uint8)
    for j in range(PER_WORD):
        out[j::PER_WORD, :] = (words >> np.uint32(BITS * j)) & np.uint32(0xF)
    return out


def _check_given(given, K: int, ng: int, fmt: str):
    if given is None:
        return None
    if isinstance(given, bool) or not isinstance(given, (int, np.integer)) or \
            (given < 1 and given != -1):
        raise ValueError(f"{fmt}: group_size={given!r} is not a positive int (or -1 for "
                         f"one group per row)")
    G = K if given == -1 else int(given)
    if -(-K // G) != ng:
        raise ValueError(f"{fmt}: group_size={given} gives {-(-K // G)} groups for K={K}, "
                         f"but the scales hold {ng}")
    return G


def infer_group_size(K: int, ng: int, fmt: str) -> int:
    """The source's group size from K and its number of groups, ceil(K / G)
    (the last group may be short). Two readings can fit: the equal split K / ng
    and a power of two with a short last group (K=96, ng=2: 48 or 64); where
    they differ the caller must say which."""
    if ng < 1:
        raise ValueError(f"{fmt}: the scales hold no groups")
    if ng == 1:
        return K
    equal = K // ng if K % ng == 0 else None
    pow2 = [1 << e for e in range(3, 17) if -(-K // (1 << e)) == ng]
    pow2 = pow2[0] if pow2 else None
    if equal and pow2 and equal != pow2:
        raise ValueError(f"{fmt}: K={K} in {ng} groups fits group size {equal} (equal "
                         f"groups) and {pow2} (short last group); pass group_size=")
    if equal or pow2:
        return equal or pow2
    raise ValueError(f"{fmt}: cannot tell the group size that splits K={K} into {ng} "
                     f"groups; pass group_size=")


def resolve_groups(K: int, ng: int, g_idx, given, what: str, fmt: str):
    """(g_idx int64 [K], source group size or None, act_order) from an optional
    stored g_idx and an optional configured group size. A stored g_idx that is
    just k // G (GPTQ saves one even without act-order) counts as contiguous."""
    G = _check_given(given, K, ng, fmt)
    if g_idx is None:
        G = G if G is not None else infer_group_size(K, ng, fmt)
        return np.arange(K, dtype=np.int64) // G, G, False
    if not np.issubdtype(g_idx.dtype, np.integer):
        raise ValueError(f"{fmt}: {what} has dtype {g_idx.dtype}, expected an integer type")
    require_shape(g_idx, (K,), what, fmt, "one group index per input column")
    g = g_idx.astype(np.int64)
    if g.min() < 0 or g.max() >= ng:
        raise ValueError(f"{fmt}: {what} holds group indices in [{g.min()}, {g.max()}], "
                         f"expected [0, {ng - 1}] for {ng} groups")
    G0 = int((g == 0).sum())
    if G0 and np.array_equal(g, np.arange(K) // G0) and (G is None or G == G0):
        return g, G0, False
    if G is None:  # act-order: the group size is only a hint for requantizing
        try:
            G = infer_group_size(K, ng, fmt)
        except ValueError:
            G = None
    return g, G, True
