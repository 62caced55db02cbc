"""The kernels' memory layout of an LQQ weight (separate from the format, and
versioned, so a kernel can change it without touching LQQ files).

Layout version 1. The weight is cut into blocks of 64 rows x 64 k. A block is
2048 bytes: 128 threads x 16 bytes, thread t = 32 w + 4 g + c (warp w, lane
group g, lane c) gets the codes of exactly the operand-A fragments it feeds to
two 32-wide k-steps of ``mma.m16n8k32`` / ``wgmma.m64nNk32`` (HOPPER.md):

    word 2*ks + h   (ks = k-step 0/1, h = 0 for row 16w+g, 1 for row 16w+g+8)
      byte j, low nibble  = Q[row, 64 kb + 32 ks + 4c + j]       -> A reg h   (k 4c..)
      byte j, high nibble = Q[row, 64 kb + 32 ks + 16 + 4c + j]  -> A reg 2+h (k 16+4c..)

so ``word & 0x0F0F0F0F`` and ``(word >> 4) & 0x0F0F0F0F`` are two A registers
with one code per byte lane, ready for the IMAD + XOR dequantization. Blocks are
stored [N/64][K/64], so the k-blocks of one 64-row slab are contiguous.

Group parameters are uint16 ``s2 | z << 8`` stored [N/64][groups][64 rows].
Rows are padded to a multiple of 64 and K to a multiple of 128 (a Hopper
K-block); padding has code 0, s2 = 1, z = 128, i.e. weight 0, and s1 = 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import _xp

LAYOUT_VERSION = 1
ROW_BLOCK = 64
K_BLOCK = 64
K_ALIGN = 128
BLOCK_BYTES = ROW_BLOCK * K_BLOCK // 2
PAD_META = 1 | (128 << 8)


@dataclass
class PackedWeight:
    """An LQQWeight in the kernels' layout (arrays on the weight's side)."""
    codes: object      # uint8 [Np/64, Kp/64, 128, 16]
    meta: object       # uint16 [Np/64, ceil(Kp/G), 64]
    s1: object         # float32 [Np]
    N: int
    K: int
    group_size: int
    layout_version: int = LAYOUT_VERSION
    # lqq.gpu_gemm's launch records of a GPU copy (not part of the layout):
    # their TMA maps hold these arrays' addresses, so they live and die with them
    launches: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def n_pad(self) -> int:
        return self.codes.shape[0] * ROW_BLOCK

    @property
    def k_pad(self) -> int:
        return self.codes.shape[1] * K_BLOCK

    @property
    def groups_pad(self) -> int:
        return self.meta.shape[1]


def round_up(a: int, b: int) -> int:
    """a rounded up to a multiple of b."""
    return -(-a // b) * b


def pack(w) -> PackedWeight:
    """Pack an LQQWeight into layout version 1 (on the weight's side)."""
    xp = w.xp
    N, K = w.shape
    G = w.group_size
    Np, Kp = round_up(N, ROW_BLOCK), round_up(K, K_ALIGN)
    Nb, Kb = Np // ROW_BLOCK, Kp // K_BLOCK
    Q = xp.zeros((Np, Kp), dtype=xp.uint8)
    Q[:N, :K] = w.unpacked_codes()
    Qp = Q.reshape(Nb, 4, 2, 8, Kb, 2, 2, 4, 4)      # nb, w, h, g, kb, ks, hl, c, j
    byte = Qp[:, :, :, :, :, :, 0] | (Qp[:, :, :, :, :, :, 1] << 4)  # nb, w, h, g, kb, ks, c, j
    codes = xp.ascontiguousarray(byte.transpose(0, 4, 1, 3, 6, 5, 2, 7)).reshape(Nb, Kb, 128, 16)

    ngp = -(-Kp // G)
    meta = xp.full((Np, ngp), PAD_META, dtype=xp.uint16)
    meta[:N, :K // G] = w.s2.astype(xp.uint16) | (w.z.astype(xp.uint16) << 8)
    meta = xp.ascontiguousarray(meta.reshape(Nb, ROW_BLOCK, ngp).transpose(0, 2, 1))
    s1 = xp.ones(Np, dtype=xp.float32)
    s1[:N] = w.s1
    return PackedWeight(codes, meta, s1, N, K, G)


def unpack_codes(p: PackedWeight):
    """Inverse of the code packing: uint8 codes [N, K], one per byte."""
    xp = _xp.module_of(p.codes)
    Nb, Kb = p.codes.shape[:2]
    byte = p.codes.reshape(Nb, Kb, 4, 8, 4, 2, 2, 4)        # nb, kb, w, g, c, ks, h, j
    byte = byte.transpose(0, 2, 6, 3, 1, 5, 4, 7)             # nb, w, h, g, kb, ks, c, j
    Q = xp.stack([byte & 0x0F, byte >> 4], axis=6)            # ..., ks, hl, c, j
    return Q.reshape(Nb * ROW_BLOCK, Kb * K_BLOCK)[:p.N, :p.K]


def thread_words(p: PackedWeight, nb: int, kb: int):
    """The four 32-bit words thread t loads for block (nb, kb): uint32 [128, 4]."""
    xp = _xp.module_of(p.codes)
    return xp.ascontiguousarray(p.codes[nb, kb]).view(xp.uint32).reshape(128, 4)


def dequant_word_emulated(q4, s2, z):
    """Bit-level model of the kernel's dequantization of four byte lanes (uint32
    arrays): ``u = q4 * s2 + z * 0x01010101`` (one 32-bit IMAD, wrapping), then
    ``u ^ 0x80808080``. Returns the 32-bit results."""
    xp = _xp.module_of(q4)
    q4 = xp.asarray(q4, dtype=xp.uint64)
    u = (q4 * xp.asarray(s2, dtype=xp.uint64) + xp.asarray(z, dtype=xp.uint64) * 0x01010101)
    return ((u & 0xFFFFFFFF) ^ 0x80808080).astype(xp.uint32)


def word_lanes_int8(words):
    """uint32 words -> int8 lanes [..., 4], lowest byte first (little endian)."""
    xp = _xp.module_of(words)
    return xp.ascontiguousarray(words.astype(xp.uint32)).view(xp.int8).reshape(*words.shape, 4)
