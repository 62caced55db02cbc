"""LQQ encoders: choose (s1, s2, z, Q) for a weight matrix (SPEC section 1).

All three encoders produce the same format and keep the overflow invariant
``z + 15 * s2 <= 255``. The code is written against an array module ``xp``
(numpy or cupy), so the same lines run on the CPU and on the GPU; every step is
an exact IEEE float32 operation or integer arithmetic, so both give the same
bits.
"""
from __future__ import annotations

import numpy as np

METHODS = ("search", "round", "paper")

# "search" measures error in 1/16 of an int8 level, in integers, so the
# objective (and its tie-breaking) is identical on every device.
_FIX = 16
_SEARCH_S2_BELOW = 2     # s2 candidates: ceil(r/15) - 2 .. ceil(r/15)
_SEARCH_Z_RADIUS = 8     # z candidates: lo - 8 .. lo + 8
_SEARCH_S2_ABOVE = 7     # and ceil(r/15) + 1 .. + 7 (at most 17), each with a level on 128


def channel_scales(xp, W32, level: int):
    """s1[n] = max_k |W[n,k]| / level (float32); an all-zero row gets 1."""
    amax = xp.max(xp.abs(W32), axis=1)
    s1 = amax / xp.float32(level)
    return xp.where(amax == 0, xp.float32(1), s1).astype(xp.float32)


def _level1(xp, W32, s1, level: int):
    """U = clip(rint(W / s1), -level, level) + 128, as int32 in [1, 255]."""
    W8 = xp.clip(xp.rint(W32 / s1[:, None]), -level, level)
    return W8.astype(xp.int32) + 128


def _codes(xp, U, s2, z):
    """Q = clip(rint((U - z) / s2), 0, 15) for grouped U [N, ng, G] (float64 is
    exact here: the ratio's ties are exactly representable)."""
    t = (U - z[..., None]).astype(xp.float64) / s2[..., None].astype(xp.float64)
    return xp.clip(xp.rint(t), 0, 15).astype(xp.uint8)


def round_params(xp, lo, hi):
    """(s2, z) of "round" from a group's lowest and highest U (int arrays)."""
    s2 = xp.maximum(1, (hi - lo + 14) // 15)          # ceil((hi - lo) / 15), at least 1
    return s2, xp.minimum(lo, 255 - 15 * s2)


def paper_params(xp, lo, hi):
    """(s2, z) of "paper": s2 = clip(ceil((hi - lo) / 15), 1, 16), z = lo, with z
    clamped to 255 - 15 * s2 where lo is above it (see encode_paper)."""
    s2 = xp.clip((hi - lo + 14) // 15, 1, 16)
    return s2, xp.minimum(lo, 255 - 15 * s2)


def _encode_minmax(xp, W32, group_size: int, level: int, params):
    """The shared shape of "round" and "paper": level-1 rounding, then (s2, z)
    from each group's range, then nearest codes."""
    N, K = W32.shape
    s1 = channel_scales(xp, W32, level)
    U = _level1(xp, W32, s1, level).reshape(N, K // group_size, group_size)
    s2, z = params(xp, U.min(axis=2), U.max(axis=2))
    Q = _codes(xp, U, s2, z)
    return s1, s2.astype(xp.uint8), z.astype(xp.uint8), Q.reshape(N, K)


def encode_round(xp, W32, group_size: int):
    return _encode_minmax(xp, W32, group_size, 127, round_params)


def encode_paper(xp, W32, group_size: int):
    """The paper's variant: level 1 in [-119, 119], s2 in 1..16, z = lo.
    z = lo can break the format's invariant for groups whose lowest value is
    above 255 - 15 * s2 (their emitted codes never overflow, but code 15 would);
    there z is clamped to 255 - 15 * s2, exactly as "round" does, so every LQQ
    file obeys the invariant whatever encoder wrote it."""
    return _encode_minmax(xp, W32, group_size, 119, paper_params)


def _search_codes(xp, V, s2, z):
    """Codes for fixed-point V (float32 holding integers, units of 1/_FIX level)
    under (s2, z): nearest level, halves rounded up, clipped to 0..15. Every
    value is an integer below 2^24, so float32 is exact and the floor of the
    correctly rounded quotient equals the integer floor division."""
    return xp.clip(xp.floor((V - _FIX * z + (_FIX // 2) * s2) / (_FIX * s2)), 0, 15)


def exhaustive_group_error(W32, group_size: int):
    """The least squared error (in units of s1^2, per row) that ANY legal
    (s2, z) reaches with the format's s1 = max|W| / 127: a lower bound for every
    encoder, for judging the search. Tries all 1..17 x 0..255-15*s2; slow,
    NumPy, for tests and the quality benchmark only."""
    N, K = W32.shape
    s1 = channel_scales(np, W32, 127)
    V = (W32 / s1[:, None] + 128).astype(np.float64).reshape(N, K // group_size, group_size)
    best = np.full(V.shape[:2], np.inf)
    for s2 in range(1, 18):
        for z in range(0, 256 - 15 * s2):
            Q = np.clip(np.rint((V - z) / s2), 0, 15)
            best = np.minimum(best, ((Q * s2 + z - V) ** 2).sum(axis=2))
    return (best * (s1[:, None].astype(np.float64) ** 2)).sum(axis=1)


def encode_search(xp, W32, group_size: int, rows_per_chunk: int | None = None):
    """Per group, the (s2, z) with the least squared error against the
    unrounded W / s1 + 128, among s2 in [ceil(r/15) - 2, ceil(r/15)] and z in
    [lo - 8, lo + 8], then s2 in [ceil(r/15) + 1, ceil(r/15) + 7] (at most 17)
    each with the z that puts a level on 128 (W = 0) and covers lo, all
    limited so that z + 15 * s2 <= 255. Extremes may clip. Ties go to the
    first candidate in that order."""
    N, K = W32.shape
    G = group_size
    ng = K // G
    s1 = channel_scales(xp, W32, 127)
    s2_out = xp.empty((N, ng), dtype=xp.uint8)
    z_out = xp.empty((N, ng), dtype=xp.uint8)
    Q_out = xp.empty((N, K), dtype=xp.uint8)
    if rows_per_chunk is None:  # keep a chunk's int32 temporaries near 1 MB (cache-sized)
        rows_per_chunk = max(1, (1 << 18) // K) if xp is np else max(1, (1 << 25) // K)
    for r0 in range(0, N, rows_per_chunk):
        r1 = min(N, r0 + rows_per_chunk)
        W = W32[r0:r1]
        sc = s1[r0:r1, None]
        # V: the unrounded level-1 value + 128 in 1/_FIX units
        V = xp.rint((W / sc) * xp.float32(_FIX)) + xp.float32(128 * _FIX)
        V = V.reshape(r1 - r0, ng, G)
        U = _level1(xp, W, s1[r0:r1], 127).reshape(r1 - r0, ng, G)
        lo, hi = U.min(axis=2), U.max(axis=2)
        base = xp.maximum(1, (hi - lo + 14) // 15)
        best = None                                # (err, s2, z) per group so far

        def consider(s2, z):
            # a candidate replaces the best only if strictly better: ties keep
            # the earlier one
            nonlocal best
            s2f = s2.astype(xp.float32)[..., None]
            zf = z.astype(xp.float32)[..., None]
            e = _FIX * (_search_codes(xp, V, s2f, zf) * s2f + zf) - V   # |e| <= 4080: e*e exact
            err = (e * e).sum(axis=2, dtype=xp.float64)                  # exact: integers < 2^53
            if best is None:
                best = (err, s2, z)
            else:
                better = err < best[0]
                best = tuple(xp.where(better, new, old) for new, old in zip((err, s2, z), best))

        for ds in range(-_SEARCH_S2_BELOW, 1):
            s2 = xp.maximum(1, base + ds)
            zmax = 255 - 15 * s2
            for dz in range(-_SEARCH_Z_RADIUS, _SEARCH_Z_RADIUS + 1):
                consider(s2, xp.clip(lo + dz, 0, zmax))
        # wider steps with a level on the zero point (128: W = 0), for groups
        # that hold a row's lone outlier: most values near 0, one far out
        # (Student-t, 3 degrees of freedom: s2 = 14 with levels on 128 and
        # 254 against the window's best at s2 = 10, 190 -> 111 in error)
        for ds in range(1, _SEARCH_S2_ABOVE + 1):
            s2 = xp.minimum(base + ds, 17)
            zmax = 255 - 15 * s2
            k = xp.maximum(-((lo - 128) // s2), -((zmax - 128) // s2))   # levels below 128
            consider(s2, xp.clip(128 - s2 * k, 0, zmax))
        _, best_s2, best_z = best
        Q = _search_codes(xp, V, best_s2.astype(xp.float32)[..., None],
                          best_z.astype(xp.float32)[..., None])
        s2_out[r0:r1] = best_s2
        z_out[r0:r1] = best_z
        Q_out[r0:r1] = Q.reshape(r1 - r0, K).astype(xp.uint8)
    return s1, s2_out, z_out, Q_out


ENCODERS = {"round": encode_round, "paper": encode_paper, "search": encode_search}


def rtn_int4_float(W, group_size: int):
    """Plain round-to-nearest asymmetric INT4 with float32 scales and integer
    zero points (the GPTQ/AWQ "RTN" baseline); returns the reconstruction. For
    quality comparisons only, NumPy."""
    W = np.asarray(W, dtype=np.float32)
    N, K = W.shape
    g = W.reshape(N, K // group_size, group_size)
    mn, mx = g.min(axis=2, keepdims=True), g.max(axis=2, keepdims=True)
    scale = (mx - mn) / np.float32(15)
    scale = np.where(scale == 0, np.float32(1), scale)
    zero = np.rint(-mn / scale)
    q = np.clip(np.rint(g / scale) + zero, 0, 15)
    return ((q - zero) * scale).reshape(N, K).astype(np.float32)
