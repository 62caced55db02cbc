"""The 3-D TMA maps over a packed weight (lqq.tma.packed_geometry) address
exactly the bytes the Hopper kernel's consumers expect, in the shared-memory
order they read (no GPU: the maps' index arithmetic, checked against the
packing's layout)."""
import numpy as np
import pytest

from lqq import packing, tma
from lqq.format import quantize_weight


def _box_bytes(dims, strides, box, start):
    """(global byte offset, shared byte offset) of every element of a box at
    `start`, inside the tensor (TMA zero-fills the rest)."""
    out = []
    for i2 in range(box[2]):
        for i1 in range(box[1]):
            for i0 in range(box[0]):
                e = (start[0] + i0, start[1] + i1, start[2] + i2)
                if all(x < d for x, d in zip(e, dims)):
                    out.append((e[0] * 8 + e[1] * strides[0] + e[2] * strides[1],
                                ((i2 * box[1] + i1) * box[0] + i0) * 8))
    return out


@pytest.mark.parametrize("N,K,G,C", [(200, 512, 64, 2), (64, 256, 32, 4), (130, 384, 128, 3),
                                     (192, 512, 256, 2), (70, 256, 256, 3)])
def test_packed_maps_cover_the_packing(N, K, G, C):
    rng = np.random.default_rng(0)
    w = quantize_weight(rng.standard_normal((N, K)).astype(np.float32), G, "round")
    p = packing.pack(w)
    Nb, Kb = p.n_pad // packing.ROW_BLOCK, p.k_pad // packing.K_BLOCK
    gpk = max(1, packing.K_ALIGN // G)
    (cd, cs, cb), (md, ms, mb) = tma.packed_geometry(Nb, Kb, p.groups_pad, C, gpk)
    # the maps span the arrays exactly
    assert cd[0] * 8 == 2048 and cd[2] * cs[1] == p.codes.nbytes
    assert md[0] * 8 == 128 and md[2] * ms[1] == p.meta.nbytes
    tiles_n = -(-Nb // C)
    for tn in range(tiles_n):
        for kq in range(Kb // 2):
            # codes: slab c's 128-wide k-block (4096 bytes) at c * 4096 of the stage
            for gb, sb in _box_bytes(cd, cs, cb, (0, 2 * kq, C * tn)):
                c, r = divmod(sb, 4096)
                assert gb == ((C * tn + c) * Kb + 2 * kq) * 2048 + r
            # group parameters: slab c's groups of this k-block at c * gpk * 128
            g = kq * packing.K_ALIGN // G
            rows = _box_bytes(md, ms, mb, (0, g, C * tn))
            for gb, sb in rows:
                c, r = divmod(sb, gpk * 128)
                assert gb == ((C * tn + c) * p.groups_pad + g) * 128 + r
            # every valid slab's bytes arrive (nothing the consumers read is left out)
            valid = min(C, Nb - C * tn)
            assert len(rows) * 8 == valid * min(gpk, p.groups_pad - g) * 128
