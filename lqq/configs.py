"""Kernel configurations: every kernel lqq can launch, named by arch, dtype and
operation, and the deterministic heuristic that picks one per shape (kept
apart from the JIT runtime, which only renders, compiles and loads)."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from . import knobs, packing

KERNEL_PREFIX = "lqq_w4a8_gemm_"        # of every GEMM kernel's name


@dataclass(frozen=True)
class KernelSpec:
    """One compilable kernel: template + parameters that change its code."""
    name: str
    template: str
    params: dict = field(hash=False, compare=False)
    family: str = ""
    archs: tuple = ("sm_80", "sm_90a")

    def render(self) -> str:
        from . import jit
        return jit.render(self.template, name=self.name, **self.params)

    def function(self):
        """The loaded cupy.RawKernel on the current device, memoized so a hot
        call skips rendering and hashing the source."""
        import cupy as cp

        from . import jit
        memo = (self.name, cp.cuda.Device().id)
        k = _loaded.get(memo)
        if k is None:
            k = _loaded[memo] = jit.get_function(self.render(), self.name)
            jit.log_debug("using kernel %s", self.name)
        return k


_loaded: dict = {}


# ---------------------------------------------------------------- GEMM, mma.sync

@dataclass(frozen=True)
class MmaConfig:
    """Portable tensor-core GEMM: RB slabs of 64 weight rows x BM tokens per CTA."""
    BM: int
    RB: int

    @property
    def name(self) -> str:
        return f"{KERNEL_PREFIX}mma_sm80_bm{self.BM}_rb{self.RB}"

    @property
    def threads(self) -> int:
        return 128 * self.RB

    def spec(self) -> KernelSpec:
        return KernelSpec(self.name, "gemm_mma_sm80.cu.j2", {"BM": self.BM, "RB": self.RB},
                          family="gemm_mma_sm80")


MMA_BM = (8, 16, 32, 64, 128)
MMA_CONFIGS = tuple(MmaConfig(bm, rb) for bm in MMA_BM for rb in (1, 2))


@dataclass(frozen=True)
class DecodeConfig:
    """Weight-streaming GEMM for few tokens: the CTA's activation slice resident
    in shared memory, PF weight loads in flight per thread."""
    BM: int
    RB: int
    PF: int

    XROW = 80                        # smem bytes per token per k-block: 64 + 16 padding

    @property
    def KBMAX(self) -> int:          # k-blocks per split within 40 KB of shared memory
        return 40960 // (self.XROW * self.BM)

    def smem_bytes(self, kb_per_split: int) -> int:
        return kb_per_split * self.BM * self.XROW

    @property
    def name(self) -> str:
        return f"{KERNEL_PREFIX}mma_sm80_decode_bm{self.BM}_rb{self.RB}_pf{self.PF}"

    @property
    def threads(self) -> int:
        return 128 * self.RB

    def spec(self) -> KernelSpec:
        return KernelSpec(self.name, "gemm_mma_decode_sm80.cu.j2",
                          {"BM": self.BM, "RB": self.RB, "PF": self.PF, "KBMAX": self.KBMAX,
                           "XROW": self.XROW},
                          family="gemm_mma_decode_sm80")


DECODE_CONFIGS = tuple(DecodeConfig(bm, rb, pf) for bm in (8, 16) for rb in (1, 2)
                       for pf in (4, 8))


@dataclass(frozen=True)
class WgmmaConfig:
    """Hopper (sm_90a) GEMM: a producer warpgroup and C consumer warpgroups (C
    64-row slabs per tile), BN tokens per tile (the wgmma N), a STAGES-deep
    ring of 128-wide k-blocks, on a persistent stream-K grid (any number of
    CTAs)."""
    BN: int
    STAGES: int
    C: int = 2
    MB: int = 0          # CTAs per SM to size registers for; 0: the default (MINB)
    FX: str = ""         # fused decode path: the float input ("f16", "bf16") it quantizes itself
    KS: int = 0          # split-K inside clusters of KS CTAs (grid: tiles x KS), or 0

    @property
    def RB(self) -> int:             # 64-row slabs per tile, as the other families call it
        return self.C

    @property
    def BM(self) -> int:             # tokens per tile, as the other families call it
        return self.BN

    @property
    def tag(self) -> str:
        """bn.._st..[_wgC][_mbB][_fx..][_ksS]: the part of the kernel name and of
        LQQ_FORCE_CONFIG that names the config."""
        wg = f"_wg{self.C}" if self.C != 2 else ""
        mb = f"_mb{self.MB}" if self.MB else ""
        fx = f"_fx{FX_TAGS[self.FX]}" if self.FX else ""
        ks = f"_ks{self.KS}" if self.KS else ""
        return f"bn{self.BN}_st{self.STAGES}{wg}{mb}{fx}{ks}"

    @property
    def name(self) -> str:
        return f"{KERNEL_PREFIX}wgmma_sm90_{self.tag}"

    @property
    def threads(self) -> int:
        return 128 * (self.C + 1)

    @property
    def REGS(self) -> tuple:
        """setmaxnreg (producer, consumer) where the consumers' BN/2 accumulators
        plus two 16-register A banks need more than an even split gives:
        40 x 128 + 232 x 256 = 168 x 384 (HOPPER.md); with three consumers
        24 x 128 + 160 x 384 <= 128 x 512 (no spills since e717552's template;
        the producer then runs on the uniform datapath: 67 -> 8 R2UR per
        loop); with four 24 x 128 + 112 x 512 <= 96 x 640; with six (one CTA
        of 896 threads) 24 x 128 + 80 x 768 <= 72 x 896."""
        if self.MINB > 1 and self.C * self.MINB > 4:
            # six consumer warpgroups per SM, for decode: (24 x 128 + 72 x 384) x 2
            # fits 65536 registers
            return (24, 72)
        if self.C == 6:
            return (24, 80)
        if self.C == 4:
            return (24, 112) if self.BN >= 64 else ()
        if self.C == 3:
            return (24, 160)
        return (40, 232) if self.BN >= 128 else ()

    @property
    def MINB(self) -> int:
        """CTAs per SM the kernel is compiled for: two for the narrowest tiles
        with two consumers (decode wants more stages in flight per SM), else one."""
        if self.MB:
            return self.MB
        return 2 if self.BN <= 16 and self.C == 2 else 1

    def stage_bytes(self) -> int:
        """Activations + each slab's codes and group parameters, padded to 1024
        bytes (the swizzled activation tile of every stage must be aligned)."""
        raw = self.BN * 256 if self.FX else 0        # the fused path's raw 16-bit values
        return -(-(self.BN * 128 + self.C * (4096 + 512) + raw) // 1024) * 1024

    @property
    def EPI(self) -> int:
        """Tokens per round of the epilogue's staging buffer (each consumer warp
        has its own: EPI x 16 rows x 2 bytes, past the ring), through which
        16-bit outputs leave as 16-byte stores; 0 (straight from registers)
        for tiles under 64 tokens, whose epilogue is short. 32 with four
        consumers, where 64 would not fit beside eight stages."""
        if self.BN < 64:
            return 0
        return 32 if self.C == 4 else 64

    @property
    def KS_PUSH(self) -> bool:
        """Split-K in clusters of two CTAs of two consumers, where a receive
        buffer for the peer's half fits beside the ring: each CTA pushes the
        half it does not finish straight into the peer's shared memory
        (st.async, counted on the peer's mbarrier) as soon as its k-slice is
        done, instead of two cluster barriers around reads of the peer's
        ring (streamk.cluster_reduce)."""
        return (self.KS == 2 and self.C == 2     # (1 KB of static shared memory besides)
                and self._smem_base() + self.ks_recv_bytes() <= SMEM_PER_CTA - 1024)

    def ks_recv_bytes(self) -> int:
        """The receive buffer of KS_PUSH: one consumer's BN / 8 x 128 x 16
        bytes of int32 partial sums."""
        return (self.BN // 8) * 128 * 16

    @property
    def UA(self) -> bool:
        """Unsigned A: the consumers dequantize to the weights + 128 (the IMAD
        alone, no XOR) for a u8 x s8 wgmma, and take 128 x each token's
        activation sum off their sums per segment; the producer's idle warps
        compute those sums from the stages (one lane a token row). Only the
        one-CTA-per-SM decode tiles of four consumers and up to 16 tokens:
        H200, session 18, against signed A, two rounds: 1.01x at M = 1 and 4
        on 57344 x 8192 and at 1 on 8192 x 28672 (bn8_st8_wg4), 1.03x at 16
        on 28672 x 4096 (bn16_st8_wg4); slower where two CTAs share an SM
        (bn8_st8 0.88x at 1 x 4096 x 4096, bn8_st7_wg3_mb2 0.97-0.98x on
        28672 x 4096) and at 64 tokens (bn64_st8_wg4 0.95x on 28672 x 4096:
        the summing reads grow with the token rows). Not the fused path (its
        converters hold those warps). These tiles split no registers (REGS is
        empty): the summing warps keep the launch's 96 a thread."""
        return self.BN <= 16 and self.C == 4 and self.MINB == 1 and not self.FX

    @property
    def SK_GROUP(self) -> int:
        """Stream-K contributors whose partial sums a tile's owner loads at
        once (streamk.reduce). ptxas already unrolls the one-at-a-time loop
        4x for 8- and 16-token tiles and 2x for 32 (each unrolled step's
        loads go out together), not at all for 64; an explicit group (4 for
        8-token tiles and two-consumer 32-token ones, 2 for 64-token tiles
        of two or three consumers, 1 where the register rule below leaves
        less) makes it
        one round trip per group for any number of contributors (decode grids
        have up to 7 per tile). Within 16 more registers on the configs of
        two CTAs per SM or four or more consumers, 64 on the rest (0 spills
        in every shipped config); 16-token tiles keep the loop (a group of 2
        would cost round trips at 4, 5 and 8 contributors, one of 4 spills),
        as do tiles over 64 tokens and the KS configs (no stream-K)."""
        if self.KS or self.BN == 16:
            return 1
        tight = self.MINB > 1 or self.C >= 4
        return max(1, min(4, (16 if tight else 64) // (self.BN // 2)))

    def _smem_base(self) -> int:
        return (self.STAGES * self.stage_bytes() + 1024          # + alignment slack
                + self.C * 4 * self.EPI * 32)

    def smem_bytes(self, kb_per_split: int = 0) -> int:
        return self._smem_base() + (self.ks_recv_bytes() if self.KS_PUSH else 0)

    PROBE_WORDS = 20     # u64 counters per CTA in the probe build

    def spec(self, probe: bool = False) -> KernelSpec:
        """probe: the timing-probe build of benchmarks/probe_stages.py (one more
        argument, PROBE_WORDS u64 counters per CTA); never used by lqq.gemm."""
        params = {"BN": self.BN, "STAGES": self.STAGES, "C": self.C, "REGS": self.REGS,
                  "MINB": self.MINB, "EPI": self.EPI, "FX": self.FX, "KS": self.KS,
                  "SK_GROUP": self.SK_GROUP, "KS_PUSH": self.KS_PUSH,
                  "UA": self.UA}
        if probe:
            params["PROBE"] = self.PROBE_WORDS
        return KernelSpec(self.name + ("_probe" if probe else ""), "gemm_wgmma_sm90.cu.j2",
                          params, family="gemm_wgmma_sm90", archs=("sm_90a",))


# the fused decode path's input kinds, as kernel-name tags
FX_TAGS = {"f16": "16", "bf16": "bf16"}
# shared memory one CTA may have on sm_90 (dynamic, opt-in) and an SM holds
SMEM_PER_CTA, SMEM_PER_SM = 232448, 233472


def fused(cfg: "WgmmaConfig", kind: str) -> "WgmmaConfig":
    """The fused decode variant of a decode tile (BN <= 16) for float input
    `kind`: as many of its stages as fit beside the raw values (MINB CTAs per
    SM, a few KB of static shared memory each)."""
    st = cfg.STAGES
    while st > 2 and (WgmmaConfig(cfg.BN, st, cfg.C, cfg.MB, kind).smem_bytes() + 2048) * cfg.MINB \
            > SMEM_PER_SM:
        st -= 1
    return WgmmaConfig(cfg.BN, st, cfg.C, cfg.MB, kind)


# decode of up to 8 tokens on the largest layers where K <= 4096 or the
# quantization fuses (wgmma_for): two CTAs of three consumers per SM, as
# many stages as two of them fit in shared memory
WIDE_DECODE = {8: WgmmaConfig(8, 7, 3, 2), 16: WgmmaConfig(16, 6, 3, 2)}

# the fused decode path (lqq.gpu_gemm.fused_plan): the decode tiles the
# heuristic picks, for fp16 and bf16 input, but one CTA of four for up to 8
# tokens (taken from K = 8192 where fusing did not pay)
FUSED_CONFIGS = tuple(fused(c, kind) for c in (
    WgmmaConfig(8, 8), WgmmaConfig(16, 8), WIDE_DECODE[8], WgmmaConfig(16, 8, 4))
    for kind in FX_TAGS)
# values (M x K) up to which a CTA reads every row itself for its absmax
FUSED_MAX_VALUES = 32768
# where the fused path measured faster than the quantizer kernel before the
# GEMM (LQQ_FUSED_QUANT=auto; benchmarks/RESULTS.md, session 11, H200): the
# two-CTA tile of the largest layers, where the separate quantizer cost about
# 5 us (28672 x 4096 at M = 1, 2: 2.2-2.6 us saved; 16384 x 8192: 2.3;
# 57344 x 4096: 1.3), with few values for every CTA to read (at M x K =
# 32768 it lost 9 us) and not too many k-blocks per CTA (the fused tile has a
# stage fewer: 57344 x 8192, 146 k-blocks, lost 1 us). The other decode tiles
# lost 0.2-2.6 us at M = 1.
FUSED_AUTO_MAX_VALUES = 8192
FUSED_AUTO_MAX_KB = 96


def fused_pays(plan: "Plan", M: int, K: int) -> bool:
    """Whether LQQ_FUSED_QUANT=auto fuses the quantization into `plan`."""
    return (plan.config == WIDE_DECODE[8] and M * K <= FUSED_AUTO_MAX_VALUES
            and plan.kb_per_split <= FUSED_AUTO_MAX_KB)

WGMMA_CONFIGS = tuple(WgmmaConfig(bn, st) for bn, st in (
    (8, 8), (16, 8), (32, 8), (64, 4), (64, 8), (128, 4), (128, 6), (192, 5), (256, 4),
    (256, 5))) + tuple(WIDE_DECODE.values()) + tuple(
    WgmmaConfig(bn, st, 4) for bn, st in ((8, 8), (8, 10), (16, 8), (32, 8), (64, 8))) + tuple(
    WgmmaConfig(bn, st, 3) for bn, st in ((64, 8), (96, 6), (128, 6))) + (
    # decode on one CTA of six consumers per SM: the six warpgroups of WIDE_DECODE
    # on one ring, so no CTA of an SM ends early (two CTAs of three ended about
    # 20 us apart at M = 1 on 57344 x 8192, H200 probe); autotune candidates
    WgmmaConfig(8, 7, 6), WgmmaConfig(16, 6, 6)) + tuple(
    # split-K inside clusters of two or four CTAs (partial sums through
    # distributed shared memory), for layers with few tiles at M = 64..256
    WgmmaConfig(bn, st, c, KS=ks) for bn, st, c, ks in (
        (64, 4, 2, 2), (64, 4, 2, 4), (128, 4, 2, 2), (128, 4, 2, 4), (256, 4, 2, 2),
        (64, 8, 4, 2),
        # other ring depths beside the push buffer (KS_PUSH): cluster_split
        # finds the four-stage ones above (listed first), cluster_ring may
        # swap the depth
        (64, 8, 2, 2), (128, 6, 2, 2), (256, 3, 2, 2)))


def wgmma_units(cfg: WgmmaConfig, M: int, N: int, K: int) -> tuple[int, int]:
    """(tiles, 128-wide k-blocks per tile) of the stream-K work split."""
    Nb = -(-N // packing.ROW_BLOCK)
    Q = -(-K // packing.K_ALIGN)
    return -(-Nb // cfg.C) * -(-M // cfg.BN), Q


def wgmma_eligible(K: int, group_size: int, compute_capability: str) -> bool:
    """The Hopper kernel needs sm_90 and group parameters that never straddle a
    128-wide k-block."""
    return compute_capability == "90" and (group_size in (32, 64, 128, 256)
                                           or (group_size == K and K % 128 == 0))


def wgmma_target_ok() -> bool:
    """Whether the compile target can build the Hopper kernel: LQQ_ARCH unset
    (the GPU's own, sm_90a on Hopper) or sm_90a. Under another target (sm_90)
    lqq runs the portable kernels, and tunes them into a separate file."""
    return knobs.arch() in (None, "sm_90a")


@dataclass(frozen=True)
class Plan:
    """A config plus its launch shape for one (M, N, K)."""
    config: object
    splits: int
    kb_per_split: int
    grid: tuple


def plan(config, M: int, N: int, K: int, splits: int = 1, ctas: int | None = None) -> Plan:
    """The launch of ``config`` for (M, N, K). K is cut into ``splits`` slices;
    the Hopper kernel instead takes ``ctas`` (its persistent grid; default one
    CTA per tile times ``splits``), never more than it has units of work, and
    reports the splits and k-blocks per CTA that come out of it. A config
    with KS (cluster split-K) always takes tiles x KS CTAs."""
    splits = max(1, splits)
    if isinstance(config, WgmmaConfig):
        tiles, Q = wgmma_units(config, M, N, K)
        if config.KS:
            ctas = tiles * config.KS
        P = max(1, min(tiles * Q, ctas if ctas else tiles * splits))
        per_cta = -(-tiles * Q // P)
        return Plan(config, -(-P // tiles), 2 * per_cta, (P, 1, 1))
    Nb = -(-N // packing.ROW_BLOCK)
    Kb = -(-K // packing.K_ALIGN) * (packing.K_ALIGN // packing.K_BLOCK)
    if isinstance(config, DecodeConfig):
        splits = max(splits, -(-Kb // config.KBMAX))
    kb_per_split = -(-Kb // splits)
    splits = -(-Kb // kb_per_split)           # no empty split
    return Plan(config, splits, kb_per_split, (-(-Nb // config.RB), -(-M // config.BM), splits))


def wgmma_for(M: int, N: int, K: int, sm_count: int = 132) -> WgmmaConfig:
    """The Hopper config for M tokens (probes on the H100, autotune on the
    H200: RESULTS.md; benchmarks/heuristic_vs_tuned.py checks this function
    against a stored autotune run). The narrowest tile that covers M up to
    128 tokens; more consumer warpgroups where the layer has tiles to spare
    (decode from MID_LAYER weights, 17..64 tokens on large layers, 65..96,
    97..128 on large layers); one 192-token tile for 129..192 and one 256-token tile for
    193..256 on larger layers, two narrower tiles on small ones; 256 once
    M >= 1024, from 512 on all but the smallest layers, or M >= 256 on wide
    layers (N >= 8192), where the wider B tile halves the weight traffic per
    token (but 257..511 tokens on two 192-token tiles where those pad less:
    a mostly empty last tile is slow). Between those, 128-token tiles, with
    three consumers where that fits the tiles in one wave of sm_count CTAs
    and two do not."""
    small = N * K <= SMALL_LAYER
    big = N * K >= BIG_LAYER
    if (M >= 1024 or (M >= 512 and N * K > TINY_LAYER) or (M >= 256 and N >= 8192)
            or (192 < M <= 256 and not small)):
        # 28672 x 4096 at M = 224: 0.085 ms against 0.102 for two 128-token
        # tiles (H100); at M = 512 on 4096 x 14336, 1.24x a 128-token tile
        # (H200). Four stages beat five by 1.01-1.12x at M = 256..1024 on
        # every Llama-3 layer and in 14 of 16 problems at M = 2048 and 4096
        # (1.00-1.09x as one stream-K wave; H200 autotune)
        if 256 < M < 512 and packing.round_up(M, 192) < packing.round_up(M, 256):
            # two 192-token tiles where they pad less. Measured when the last
            # tile's rows past M were TMA's zero fill (about twice as slow as
            # a full tile); since the last tile starts at M - BN, what a wider
            # tile pads is computed twice in the overlap instead, and 192 still
            # wins at 320 and 384 (8192 x 8192 1.22-1.23x, RESULTS.md session
            # 17; 28672 x 4096 1.25-1.26x, session 18), 256 at 448 (1.13-1.17x
            # on 28672 x 4096 and 57344 x 8192, session 18). Before the shift
            # (H200, quick_time, 2026-12-03): M = 384 on 28672 x 4096 0.0697 ms
            # against 0.1213, on 57344 x 8192 0.2447 against 0.4348, on 8192 x
            # 8192 0.0406 against 0.0594; M = 320 on 28672 x 4096 0.0791
            # against 0.1412; M = 448 stays: 0.0867 against 0.1264 for three
            # 192-token tiles.
            return WgmmaConfig(192, 5)
        return WgmmaConfig(256, 4)
    if 16 < M <= 64 and (big or (M <= 32 and N >= 8192 and N * K > TINY_LAYER)):
        # four consumer warpgroups (half as many tiles): 1.10-1.25x two at
        # M = 32 and 64 on large layers (H100); on the H200 at M = 32 from
        # N = 8192 (1.01-1.29x), at M = 64 only from 28672 x 4096 (1.13-1.23x;
        # 8192 x 8192: 0.92x, 6144 x 4096: 0.76x), never on 4096 x 4096
        return WgmmaConfig(32 if M <= 32 else 64, 8, 4)
    if 64 < M <= 96 or (128 < M <= 192 and small):
        # three consumers: 1.10-1.19x a 128-token tile at M = 65 and 96 on 70B
        # and 8B layers; at 160..192 on 4096 x 4096, 0.021 ms against 0.024
        return WgmmaConfig(96, 6, 3)
    if 128 < M <= 192:
        # one 192-token tile: 1.35-1.77x two 128-token tiles at M = 160 and 192
        return WgmmaConfig(192, 5)
    if 96 < M <= 128 and big:
        # three consumers: 1.07-1.13x two at M = 112 and 128 on the 70B MLP
        # layers (H100), 1.07x on 28672 x 4096 (H200); slower on smaller ones
        return WgmmaConfig(128, 6, 3)
    bn = next(b for b in (8, 16, 32, 64, 128) if b >= M or b == 128)
    if M <= 16 and N * K >= MID_LAYER:
        # one CTA of four consumer warpgroups per SM (wg4, unsigned A since
        # session 19): H200 autotune at head, session 20, against two CTAs of
        # two (or of three) per SM, 1.05-1.12x at M = 1 and 4 on 8192 x 8192,
        # 4096 x 14336, 12288 x 4096, 16384 x 4096, 22016 x 4096 and 15360 x
        # 5120 (1.01x on 10240 x 8192), 1.01-1.08x at M = 16 (12288 x 4096:
        # 0.96x); below MID_LAYER it lost (6144 x 4096: 0.96x, 16384 x 2048:
        # 0.74-0.86x). On the largest layers two CTAs of three (WIDE_DECODE)
        # stay where the quantization fuses into them (configs.fused_pays:
        # 2.2-2.6 us saved on 28672 x 4096 at M = 1 and 2, about what wg4
        # gains there, 1.9 us), elsewhere wg4 won (28672 x 4096 at M = 4:
        # 1.09x; 57344 x 8192, 8192 x 28672 at M = 1..16: 1.00-1.02x)
        if bn == 8 and big:
            wide = WIDE_DECODE[8]
            if fused_pays(wgmma_plan(wide, M, N, K, sm_count), M, K):
                return wide
        return WgmmaConfig(bn, 8, 4)
    if M > 256:
        # one wave of 192-row tiles beats 1.5 waves of 128-row ones (stream-K):
        # 6144 x 4096 at M = 512, 0.031 ms against 0.043 (H100)
        tiles = lambda c: wgmma_units(WgmmaConfig(128, 6, c), M, N, K)[0]
        if tiles(2) > sm_count >= tiles(3):
            return WgmmaConfig(128, 6, 3)
    # stages (H200 autotune): as many as a layer's tiles keep fed, more from
    # N = 8192. 64-token tiles on four below it (1.02-1.07x), where a layer
    # has few tiles, on eight from there (1.03-1.05x); 128-token tiles on
    # four below it (1.01-1.05x six), on six from there (10240 x 8192 at M =
    # 128: 1.01-1.05x four in all four stored runs; 8192 x 8192 splits in
    # clusters instead, cluster_split)
    stages = {64: 4 if N < 8192 else 8, 128: 4 if N < 8192 else 6}.get(bn, 8)
    return WgmmaConfig(bn, stages)


def wgmma_grid(cfg: WgmmaConfig, M: int, N: int, K: int, sm_count: int) -> int:
    """CTAs for the persistent grid: one per tile when the tiles fill whole
    waves nearly evenly (stream-K's partial sums then cost more than the idle
    SMs: 0.055 vs 0.071 ms for 128 tiles on 132 SMs, 0.029 vs 0.034 ms for 224
    decode tiles on 264 slots), else one wave split stream-K (0.105 vs 0.117 ms
    for 448 decode tiles on 264 slots)."""
    tiles, Q = wgmma_units(cfg, M, N, K)
    if cfg.KS:
        return tiles * cfg.KS
    slots = sm_count * cfg.MINB
    if Q * packing.K_ALIGN <= 1024 and tiles <= slots:
        # at K <= 1024 a whole tile takes about as long as a stream-K piece
        # and its partial sums: 4096 x 1024 at M = 1 on 32 CTAs 3.9 us, on
        # 256 4.8; 14336 x 1024 at M = 1 and 16 on 112 CTAs 4.5 and 4.8 us,
        # on 264 6.6 and 7.2 (H200 autotune, session 20). From 2048 of K
        # stream-K wins (2048 x 2048 at M = 1: 5.4 us on 256 CTAs, 6.6 on 16)
        return tiles
    waves = tiles / slots
    # (from 0.7 waves: 96 256-token tiles on 132 SMs, 1.09x stream-K, H200;
    # for decode tiles, two CTAs an SM, at most one tile an SM from 0.7 of
    # the SMs: 128 tiles of 16384 x 2048 at M = 1 and 16, 7.5 us against 9.5
    # on 256 CTAs; not past one an SM: 150 tiles of 28672 x 4096 at M = 1,
    # two CTAs of three an SM, 1.38x stream-K on 264; H200 autotune, session 20)
    whole_waves = (0.7 <= waves <= 1 or (waves > 1 and -(-tiles // slots) / waves <= 1.08)
                   or 0.7 * sm_count <= tiles <= sm_count)
    # short tiles in many waves: one persistent wave saves every CTA's
    # pipeline fill and launch (28672 x 4096 at M = 1024 / 4096, 6.8 / 27
    # waves: 0.255 vs 0.297 ms, 0.99 vs 1.16 ms; at K >= 8192 one CTA per tile won)
    short_many = Q <= 32 and waves > 6
    # 256-token tiles (four stages) past one wave: one stream-K wave beat one
    # CTA per tile on every such Llama-3 layer at M = 512 and 1024, by
    # 1.02-1.16x, and at 2048 and 4096 by up to 1.14x (H200 autotune); it
    # lost 0.1-5% on four of the six problems whose 256 or 512 tiles fill
    # two or four waves (4096 x 4096 at M = 2048: 0.0524 against 0.0496 ms)
    wide_many = cfg.BN == 256 and waves > 1
    # ... except two whole tiles a CTA: 224 256-token tiles on 112 CTAs
    # (28672 x 4096 at M = 256) beat stream-K on 132 by 1.04-1.05x in two
    # H200 autotune runs; four or more tiles a CTA lost by 6-11% (M = 512 there,
    # 57344 x 8192 at M = 256); past 256 tokens (one token tile) not timed
    if wide_many and M <= 256 and tiles <= 2 * slots and (ctas := whole_tile_ctas(cfg, M, N, K, sm_count)):
        return ctas
    # (four consumers too take one CTA per tile: 28672 x 4096 at M = 16..64,
    # 112 tiles on 132 SMs, 1.03-1.07x one stream-K wave on the H200)
    if whole_waves and not short_many and not wide_many:
        return tiles
    # one wave whose CTAs stay inside one tile each, where one keeps 90% of the slots
    return aligned_ctas(cfg, M, N, K, sm_count) or min(slots, tiles * Q)


def wgmma_plan(cfg: WgmmaConfig, M: int, N: int, K: int, sm_count: int) -> "Plan":
    """The plan of `cfg` on the heuristic's grid (wgmma_grid)."""
    return plan(cfg, M, N, K, ctas=wgmma_grid(cfg, M, N, K, sm_count))


def cluster_split(cfg: WgmmaConfig, M: int, N: int, K: int, sm_count: int) -> WgmmaConfig:
    """`cfg`, or a split-K-in-clusters-of-two config (KS = 2: each CTA holds
    half of one tile, and the halves meet in distributed shared memory) where
    two CTAs per tile fill 70-97% of the SMs: on cfg's token width, else on
    twice it (where cfg needs two token tiles), else, on layers of at most
    TINY_LAYER weights, on half of it. H200 autotune (RESULTS.md, session
    13): 1.01-1.12x the plan before on 4096 x 4096 at M = 128 (64-token
    halves: 0.0109 against 0.0122 ms) and 256, 6144 x 4096 at M = 64, 128 and
    256 (256-token halves: 0.0177 against 0.0188), 8192 x 8192 at M = 64, 128
    and 256, 8192 x 28672 at M = 256; slower on half the SMs (0.67-0.98x) or
    two waves (0.70-0.73x), and halving the token width lost on 4096 x 14336 at
    M = 128 (0.0275 against 0.0219). At M = 512 the rule picks 256-token
    halves on 4096 x 4096 and 4096 x 14336, 1.05x and 1.03x the plan before
    (H200 autotune, session 14), and nothing on the other Llama-3 layers;
    between 257 and 511 tokens, and on other layers, it is extrapolated
    (0.98x at M = 400 on 4096 x 4096, 1.25x at M = 448 on 4096 x 14336),
    without the half width, and only where the split tile computes no more
    padded tokens than cfg's.
    Clusters of four lost everywhere (0.57-0.65x): the H200 holds 30 clusters
    of four at once (cuOccupancyMaxActiveClusters), so 32 take two rounds.
    Layers of at most TINY_LAYER weights at 9..512 tokens have their own
    rule (tiny_layer_tile), which the heuristic asks first."""
    if cfg.C != 2 or cfg.MB or cfg.FX or cfg.KS or M > 512:     # (measured up to M = 512)
        return cfg
    slots = sm_count * cfg.MINB
    widths = [cfg.BN] + [2 * cfg.BN] * (M > cfg.BN) + [cfg.BN // 2] * (N * K <= TINY_LAYER and M <= 256)
    for bn in widths:
        ks = _cluster_tile(bn)
        if ks is None:
            continue
        tiles, Q = wgmma_units(ks, M, N, K)
        # (66 clusters of two fit the H200 at once, but no plan past 128 of
        # its 132 SMs has been measured); never more padded tokens than cfg's
        # (257 tokens on 256-wide tiles would compute 512)
        if Q % 2 == 0 and 0.7 * slots <= 2 * tiles <= 0.97 * slots and packing.round_up(M, bn) <= packing.round_up(M, cfg.BN):
            return cluster_ring(ks, M, K)
    return cfg


def cluster_ring(ks: WgmmaConfig, M: int, K: int) -> WgmmaConfig:
    """The ring depth of a clusters-of-two tile (same tile, same grid). Eight
    stages for 64-token halves of one token tile (M <= 64): H200 autotune,
    session 19, against four, 1.02-1.11x on every Llama-3 layer at M = 32 and
    64 (1.04x at 64 x 8192 x 8192: 0.0162 against 0.0168 ms; 1.02x at 64 x
    6144 x 4096), while at M = 128 on 4096 x 4096 (two token tiles) four
    stages were 1.05x. Three stages for 256-token halves at K <= 4096, the
    depth that leaves room for the push buffer (1.01x at 256 x 6144 x 4096,
    1.03x at 512 x 4096 x 4096), while at K = 8192 and past, four were
    1.05-1.08x (256 x 8192 x 8192, 512 x 4096 x 14336). Four elsewhere."""
    if ks.C != 2 or ks.KS != 2:
        return ks
    stages = 8 if ks.BN == 64 and M <= 64 else 3 if ks.BN == 256 and K <= 4096 else None
    return (stages and _cluster_tile(ks.BN, stages)) or ks


def _cluster_tile(bn: int, stages: int | None = None, ks: int = 2) -> WgmmaConfig | None:
    """The shipped tile of two consumers and `bn` tokens split between
    clusters of `ks` CTAs, with `stages` stages (None: the first listed, four
    stages), or None."""
    return next((c for c in WGMMA_CONFIGS if c.KS == ks and (c.BN, c.C) == (bn, 2)
                 and stages in (None, c.STAGES)), None)


def tiny_layer_tile(M: int, N: int, K: int, sm_count: int) -> WgmmaConfig | None:
    """The tile for 9..512 tokens on a layer of at most TINY_LAYER weights, or
    None (then wgmma_for and cluster_split choose). Such a layer has few
    tiles, and a stream-K wave over every SM cuts each into many short
    pieces whose partial sums one CTA then reads back one by one: 16 pieces
    of a 128 x 128 tile took 14.5 us at 128 x 512 x 2048, where the same
    weights in 32 clusters took 4.7. Instead, 64-token tiles up to 256
    tokens (128-token ones past that), each split between a cluster of CTAs
    (partial sums through distributed shared memory) so that every CTA
    streams 512 to 2048 of K: in clusters of four where there are at most 8
    tiles, of two where the pairs fit the SMs, else, at K <= 1024 past 16
    tokens, whole tiles one a CTA. H200 autotune (RESULTS.md, sessions 19
    and 20), on 512 x 2048, 512 x 3584, 1024 x 1024, 1024 x 4096, 2048 x 512,
    2048 x 2048, 3584 x 3584, 4096 x 1024, 4096 x 2048, 4096 x 4096 and
    4608 x 3584 at M = 16, 64, 128, 256 and 512: the best plan or within
    1.01-1.12x of it in every problem it decides, where the stream-K wave
    took up to 3.06x. Clusters of four lost with more tiles (512 x 2048 at
    M = 256, 16 tiles: 1.06x two), and so did pairs whose CTAs stream less
    than 512 of K (2048 x 512 at M = 256 and 512: 1.15-1.18x whole tiles)
    or more than 2048 (2048 x 8192 at M = 16: 1.29-1.44x the stream-K wave).
    At 9..16 tokens the narrower tile of wgmma_for stays where no cluster
    fits (14336 x 1024 at M = 16: 4.8 us on 16-token tiles, 6.0 on 64)."""
    if not (8 < M <= 512 and N * K <= TINY_LAYER):
        return None
    bn = 64 if M <= 256 else 128
    whole = WgmmaConfig(bn, 4)
    tiles, Q = wgmma_units(whole, M, N, K)
    k_a_cta = lambda ks: Q * packing.K_ALIGN // ks      # K each CTA streams
    quad = _cluster_tile(bn, ks=4)
    fits = lambda ks: ks.KS * tiles <= 0.97 * sm_count * ks.MINB and Q % ks.KS == 0 \
        and 512 <= k_a_cta(ks.KS) <= 2048
    if quad and tiles <= 8 and fits(quad):
        return quad
    pair = cluster_ring(_cluster_tile(bn), M, K)
    if fits(pair):
        return pair
    if M > 16 and K <= 1024 and tiles <= sm_count * whole.MINB:
        return whole
    return None


def aligned_ctas(cfg: WgmmaConfig, M: int, N: int, K: int, sm_count: int) -> int | None:
    """A one-wave stream-K grid whose CTAs each stay inside one tile (tiles x
    a divisor of a tile's units), the largest within the SMs' slots if it
    keeps 90% of them, else None. A CTA straddling two tiles writes a partial
    tile besides its own and ends last (4096 x 4096 at M = 128: 24 such CTAs
    ended 4 us after the rest); on the H200, 128 CTAs against 132 (256
    against 264) took 1-8% off 10 of 11 layers at M = 1..512 and lost 0.8% on
    8192 x 28672 at M = 16 (RESULTS.md, session 11). The heuristic's grid
    since the H200 autotune runs of 2026-12-03 timed it on every problem."""
    tiles, Q = wgmma_units(cfg, M, N, K)
    slots = sm_count * cfg.MINB
    if tiles >= slots or cfg.KS:          # (a KS config's grid is its tiles x KS)
        return None
    best = max(tiles * d for d in range(1, Q + 1) if Q % d == 0 and tiles * d <= slots)
    return best if best >= 0.9 * slots else None


def whole_tile_ctas(cfg: WgmmaConfig, M: int, N: int, K: int, sm_count: int) -> int | None:
    """A one-wave grid of whole tiles where there are more tiles than slots:
    tiles / d CTAs of d tiles each (the smallest such d), so no CTA writes or
    reads partial sums, if that keeps 80% of the slots; else None. Stream-K
    on every slot instead cuts tiles between CTAs, and each cut adds a
    partial-tile store, a wait and a read to the epilogue: on 28672 x 4096
    at M = 128 (bn128_st6_wg3, 132 CTAs, every one straddling a tile
    boundary) the epilogue, output stores included, is 3.4 us per tile of a
    32 us launch (RESULTS.md, session 15). The heuristic takes it for
    256-token tiles past one wave at two tiles a CTA (wgmma_grid), where it
    was measured faster; elsewhere an autotune candidate."""
    tiles, _ = wgmma_units(cfg, M, N, K)
    slots = sm_count * cfg.MINB
    if tiles <= slots or cfg.KS:
        return None
    d = next(d for d in range(2, tiles + 1) if tiles % d == 0 and tiles // d <= slots)
    return tiles // d if tiles // d >= 0.8 * slots else None


# Up to this many weights, 17..64 tokens stay on two consumer warpgroups,
# 9..64 tokens run 64-token tiles split between clusters of two where K is
# short enough (cluster_split) and 512..1023 tokens run on 128-token tiles.
# (Decode of such layers ran on the mma.sync decode kernel until session 19,
# when an H200 autotune of six smaller layers, 512 x 2048 to 4608 x 3584,
# found the Hopper kernel's plan 1.05-1.36x faster at M = 1 and 1.01-1.39x at
# M = 16.)
TINY_LAYER = 4096 * 4096
# Up to this many weights, 129..256 tokens run as two narrower tiles (more
# tiles to spread over the SMs) rather than one wide one (RESULTS.md).
SMALL_LAYER = 6144 * 4096
# From this many weights, decode runs on one CTA of four consumer warpgroups
# per SM (wgmma_for).
MID_LAYER = 12288 * 4096
# From this many weights, 33..64 and 97..128 tokens run on more consumer
# warpgroups per SM (the fewer, larger tiles still fill the SMs), and decode
# on two CTAs of three where the quantization fuses into them.
BIG_LAYER = 28672 * 4096


def heuristic(M: int, N: int, K: int, sm_count: int, wgmma: bool = False) -> Plan:
    """``wgmma``: the GPU and the weight can run the Hopper kernel
    (configs.wgmma_eligible), which then takes every M on a persistent grid
    (wgmma_for picks the tile, cluster_split may split it between two CTAs,
    wgmma_grid the CTAs; RESULTS.md has the measurements). Otherwise, few
    tokens (M <= 16): the decode kernel; K is split so that a CTA streams at most 32 k-blocks (2048 k) and there are at
    least four CTAs per SM (a sweep on the H100, benchmarks/tune_decode.py).
    More tokens: the general kernel, the smallest BM that covers M (at most
    128), two slabs per CTA once the grid is large anyway, split K to reach two
    CTAs per SM."""
    if wgmma:
        # Hopper: a persistent stream-K grid of as many CTAs as fit at once
        cfg = tiny_layer_tile(M, N, K, sm_count) or cluster_split(
            wgmma_for(M, N, K, sm_count), M, N, K, sm_count)
        return wgmma_plan(cfg, M, N, K, sm_count)
    Nb = -(-N // packing.ROW_BLOCK)
    Kb = -(-K // packing.K_ALIGN) * (packing.K_ALIGN // packing.K_BLOCK)
    if M <= 16:
        # two slabs per CTA paid off only for 16 tokens on wide layers
        cfg = DecodeConfig(8, 1, 4) if M <= 8 else DecodeConfig(16, 2 if Nb >= 2 * sm_count else 1, 4)
        ctas = -(-Nb // cfg.RB)
        splits = max(-(-Kb // 32), -(-4 * sm_count // ctas))
        return plan(cfg, M, N, K, min(splits, max(1, Kb // 4)))
    BM = next((b for b in MMA_BM if b >= M), MMA_BM[-1])
    tiles_m = -(-M // BM)
    RB = 2 if Nb * tiles_m >= 4 * sm_count else 1
    ctas = -(-Nb // RB) * tiles_m
    splits = max(1, min(-(-2 * sm_count // ctas), Kb // 4)) if ctas < sm_count else 1
    return plan(MmaConfig(BM, RB), M, N, K, splits)


def _parse_forced(text: str, shipped: bool = True):
    """"bm32_rb1", "mma_bm32_rb2_s4", "decode_bm8_rb1_pf4_s8" or
    "wgmma_bn128_st6_c132" (c: CTAs of the persistent grid; wg4: four consumer
    warpgroups; mb2: registers sized for two CTAs per SM) -> (config, splits, ctas).
    The kernel names `lqq kernels` prints are accepted too, with or without
    their "lqq_w4a8_gemm_" prefix (e.g. "mma_sm80_decode_bm8_rb1_pf4").
    shipped=False: a config lqq does not ship is read too (for experiments,
    e.g. benchmarks/cluster_occupancy.py)."""
    text = text.strip().lower()
    text = text[len(KERNEL_PREFIX):] if text.startswith(KERNEL_PREFIX) else text
    parts = text.split("_")
    if parts[:2] in (["mma", "sm80"], ["wgmma", "sm90"]):     # the arch of a printed name
        parts.pop(1)
    if parts[:2] == ["mma", "decode"]:
        parts.pop(0)
    family = parts.pop(0) if parts and parts[0] in ("mma", "decode", "wgmma") else "mma"
    fields = {}
    for part in parts:
        key = part.rstrip("0123456789")
        fields[key] = int(part[len(key):])
    splits = fields.pop("s", 1)
    ctas = fields.pop("c", None) if family == "wgmma" else None
    if family == "decode":
        cfg = DecodeConfig(fields.pop("bm"), fields.pop("rb"), fields.pop("pf"))
        legal = DECODE_CONFIGS
    elif family == "wgmma":
        # the fused decode path's input: _fx16 or _fxbf16
        fx = {("fx", 16): "f16", ("fxbf", 16): "bf16"}
        kinds = [fx.get((k, fields.pop(k))) for k in ("fx", "fxbf") if k in fields]
        if None in kinds or len(kinds) > 1:
            raise KeyError(kinds)
        cfg = WgmmaConfig(fields.pop("bn"), fields.pop("st"), fields.pop("wg", 2), fields.pop("mb", 0),
                          kinds[0] if kinds else "", fields.pop("ks", 0))
        legal = WGMMA_CONFIGS + FUSED_CONFIGS
    else:
        cfg = MmaConfig(fields.pop("bm"), fields.pop("rb"))
        legal = MMA_CONFIGS
    if fields or (shipped and cfg not in legal) or splits < 1 or (ctas is not None and ctas < 1):
        raise KeyError(cfg)
    return cfg, splits, ctas


def forced(M: int, N: int, K: int, text: str | None = None):
    """The plan LQQ_FORCE_CONFIG pins (or `text`, read the same way), or None."""
    text = knobs.force_config() if text is None else text
    if not text:
        return None
    try:
        cfg, splits, ctas = _parse_forced(text)
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"LQQ_FORCE_CONFIG={text!r} is not a config lqq has; write e.g. "
                         f"mma_bm32_rb1, mma_bm8_rb2_s4, decode_bm8_rb1_pf4_s8 or "
                         f"wgmma_bn128_st6_c132, or a kernel name `lqq kernels` prints "
                         f"(with _sN or _cN appended for splits or CTAs)") from None
    p = plan(cfg, M, N, K, splits, ctas)
    why = why_illegal(p, M, N, K)
    if why:
        raise ValueError(f"LQQ_FORCE_CONFIG={text!r} cannot run M={M}, N={N}, K={K}: {why}")
    return p


# ---------------------------------------------------------------- search space (autotune)

SMEM_STATIC_MAX = 48 * 1024      # per CTA without the opt-in attribute (mma.sync kernels)
SMEM_DYNAMIC_MAX = SMEM_PER_CTA  # sm_90 with the opt-in attribute (the wgmma kernels set it)
REGFILE = 65536                  # 32-bit registers per SM (sm_80 and sm_90)
REGS_MAX = 255                   # per thread; __launch_bounds__(THREADS, 1) lets ptxas use them
GRID_YZ_MAX = 65535
SPLITS = (1, 2, 4, 8, 16, 32)
MIN_KB_PER_SPLIT = 2             # shorter splits are nearly all reduction overhead
MAX_WAVES = 8                    # no K split that makes the grid bigger than this many SM waves


def smem_bytes(p: Plan) -> int:
    cfg = p.config
    if isinstance(cfg, (DecodeConfig, WgmmaConfig)):
        return cfg.smem_bytes(p.kb_per_split)
    return 2 * cfg.BM * DecodeConfig.XROW        # double-buffered activation tile


def registers_lower_bound(cfg) -> int:
    """Registers a thread must hold live: BM/2 int32 accumulators (16 rows x BM
    tokens per warp), the decode kernel's PF-deep ring of weights and group
    parameters (8 words a stage) or the Hopper kernel's two 16-register A
    banks, and ~24-32 for addresses and A fragments."""
    if isinstance(cfg, WgmmaConfig):
        return cfg.BN // 2 + 32 + 24
    ring = 8 * cfg.PF if isinstance(cfg, DecodeConfig) else 8
    return cfg.BM // 2 + ring + 32


def launch_registers(cfg) -> int:
    """Registers per thread at launch: the __launch_bounds__(threads, MINB) cap."""
    minb = cfg.MINB if isinstance(cfg, WgmmaConfig) else 1
    return min(REGS_MAX, REGFILE // (cfg.threads * minb) // 8 * 8)


def registers_cap(cfg) -> int:
    """Registers per thread the launch allows: __launch_bounds__(threads, MINB),
    or a consumer's setmaxnreg."""
    if isinstance(cfg, WgmmaConfig) and cfg.REGS:
        return cfg.REGS[1]
    return launch_registers(cfg)


def register_split_fits(cfg: WgmmaConfig) -> bool:
    """A setmaxnreg split must fit the registers the CTA holds at launch:
    setmaxnreg.inc waits for registers that never come free otherwise."""
    if not cfg.REGS:
        return True
    return 128 * (cfg.REGS[0] + cfg.C * cfg.REGS[1]) <= cfg.threads * launch_registers(cfg)


def why_illegal(p: Plan, M: int, N: int, K: int) -> str | None:
    """None if ``p`` can launch correctly for (M, N, K), else the reason. Checked
    before anything is compiled; a compiled kernel that spills is refused later."""
    cfg = p.config
    if cfg not in MMA_CONFIGS + DECODE_CONFIGS + WGMMA_CONFIGS + FUSED_CONFIGS:
        return f"{cfg} is not a config lqq ships"
    regs_ok = (cfg.threads <= 1024 and registers_cap(cfg) >= 24 if isinstance(cfg, WgmmaConfig)
               else cfg.threads <= 1024 and cfg.threads * REGS_MAX <= REGFILE)
    if not regs_ok:
        return f"{cfg.threads} threads do not fit one SM's registers"
    if isinstance(cfg, WgmmaConfig) and not register_split_fits(cfg):
        return f"setmaxnreg {cfg.REGS} needs more registers than {cfg.MINB} CTAs per SM leave"
    if registers_lower_bound(cfg) > registers_cap(cfg):
        return f"needs more than {registers_cap(cfg)} registers per thread"
    if isinstance(cfg, DecodeConfig) and p.kb_per_split > cfg.KBMAX:
        return f"K slice of {p.kb_per_split} k-blocks > KBMAX={cfg.KBMAX}"
    smem_max = SMEM_DYNAMIC_MAX if isinstance(cfg, WgmmaConfig) else SMEM_STATIC_MAX
    if smem_bytes(p) > smem_max:
        return f"{smem_bytes(p)} bytes of shared memory > {smem_max}"
    Nb = -(-N // packing.ROW_BLOCK)
    Kb = -(-K // packing.K_ALIGN) * (packing.K_ALIGN // packing.K_BLOCK)
    if isinstance(cfg, WgmmaConfig):
        tiles, Q = wgmma_units(cfg, M, N, K)
        P = p.grid[0]
        if p.grid[1:] != (1, 1) or not 1 <= P <= tiles * Q:
            return f"grid {p.grid}: the persistent grid is 1 to {tiles * Q} CTAs in x"
        if tiles * Q >= 2 ** 31:
            return f"{tiles * Q} work units overflow the producer's 32-bit unit indices"
        if cfg.KS and (Q % cfg.KS or P != tiles * cfg.KS):
            # every CTA of a cluster must hold exactly one k-slice of its tile
            return f"cluster split-K by {cfg.KS} needs {tiles * cfg.KS} CTAs and " \
                   f"{Q} k-blocks a multiple of {cfg.KS}"
        return None
    if p.splits < 1 or p.kb_per_split < 1 or not (
            (p.splits - 1) * p.kb_per_split < Kb <= p.splits * p.kb_per_split):
        return f"{p.splits} splits of {p.kb_per_split} k-blocks do not tile {Kb} k-blocks"
    if p.grid != (-(-Nb // cfg.RB), -(-M // cfg.BM), p.splits):
        return f"grid {p.grid} does not cover M={M}, N={N}"
    if max(p.grid[1:]) > GRID_YZ_MAX:
        return f"grid {p.grid} exceeds {GRID_YZ_MAX} in y or z"
    return None


def candidates(M: int, N: int, K: int, sm_count: int, wgmma: bool = False) -> list[Plan]:
    """The legal plans autotune times for one shape, the heuristic's first.
    Decode kernels for M up to their BM; the general kernel with the BM that
    covers M and the two below it; K splits from SPLITS (a decode kernel's
    minimum split is implied by KBMAX), none that leave a split under
    MIN_KB_PER_SPLIT k-blocks or grow the grid past MAX_WAVES waves. With
    ``wgmma`` (configs.wgmma_eligible) the Hopper configs whose tile is within
    a factor of four of M, on one or two waves of CTAs, one CTA per tile,
    the one wave of CTAs inside one tile each (aligned_ctas) or of whole
    tiles each (whole_tile_ctas); the sm_80
    families then only for M <= 16."""
    out, seen = [], set()

    def add(p: Plan):
        key = (p.config, p.grid) if isinstance(p.config, WgmmaConfig) else (p.config, p.splits)
        if key not in seen and why_illegal(p, M, N, K) is None:
            seen.add(key)
            out.append(p)

    add(heuristic(M, N, K, sm_count, wgmma))
    if wgmma:
        chosen = wgmma_for(M, N, K, sm_count)
        for cfg in WGMMA_CONFIGS:
            # the chosen tile on every stage count (4 and 5 for 256 tokens at any M)
            if M / 4 <= cfg.BN <= max(8, 4 * M) or (cfg.BN, cfg.C) == (chosen.BN, chosen.C):
                tiles, _ = wgmma_units(cfg, M, N, K)
                aligned = aligned_ctas(cfg, M, N, K, sm_count)
                whole = whole_tile_ctas(cfg, M, N, K, sm_count)
                for ctas in (sm_count * cfg.MINB, 2 * sm_count * cfg.MINB, tiles, aligned, whole):
                    if ctas:
                        add(plan(cfg, M, N, K, ctas=ctas))
        if M > 16:
            return out
    cover = next((b for b in MMA_BM if b >= M), MMA_BM[-1])
    family = [c for c in DECODE_CONFIGS if c.BM >= M]
    family += [c for c in MMA_CONFIGS if cover // 4 <= c.BM <= cover]
    for cfg in family:
        least = plan(cfg, M, N, K)          # the fewest splits the config allows
        add(least)
        ctas = least.grid[0] * least.grid[1] * least.splits
        for s in SPLITS:
            p = plan(cfg, M, N, K, s)
            if (p.splits > least.splits and p.kb_per_split >= MIN_KB_PER_SPLIT
                    and p.grid[0] * p.grid[1] * p.splits <= max(ctas, MAX_WAVES * sm_count)):
                add(p)
    return out


# ---------------------------------------------------------------- activations

ACT_INPUTS = ("f16", "bf16", "f32")


@dataclass(frozen=True)
class ActConfig:
    """One CTA per token. THREADS x VPT 16-byte vectors of a row are held in
    registers (read once, every load in flight: a lone row is latency-bound);
    VPT = 0 reads the row twice with fewer threads, so that many rows share
    an SM (bandwidth-bound batches)."""
    THREADS: int
    VPT: int

    def spec(self, kind: str) -> KernelSpec:
        return KernelSpec(f"lqq_quantize_activation_{kind}_t{self.THREADS}_v{self.VPT}",
                          "quantize_activation.cu.j2",
                          {"IN": kind, "THREADS": self.THREADS, "VPT": self.VPT},
                          family="quantize_activation")


# Measured on the H100 (RESULTS.md), quantization inside lqq.gemm (float input
# minus pre-quantized, PDL on). Up to 512 tokens a lone row is latency-bound:
# the wide kernel, 5.6 us at M = 64 against 31.5 for the two-pass one (which
# alone takes 6.9 us, but the GEMM after it loses 25; unexplained). Above,
# rows share SMs: two passes where the row is short (26 us against 41 for
# 512 x 8 at 4096 x 4096), held rows where it is long (4096 x 28672: 103 us
# against 212, as the second pass misses L2). Measured on fp16 rows; the rule
# is in bytes, so fp32 rows of the same size take the same shape.
ACT_WIDE = ActConfig(1024, 4)        # rows of up to 32768 fp16 / 16384 fp32 values held
ACT_NARROW = ActConfig(256, 0)
ACT_LONG = ActConfig(512, 8)
ACT_CONFIGS = (ACT_WIDE, ACT_NARROW, ACT_LONG)
ACT_WIDE_MAX_ROWS = 512
ACT_LONG_ROW_BYTES = (32768, 65536)      # rows longer than the first, that ACT_LONG holds


def activation_config(M: int, row_bytes: int) -> ActConfig:
    """The quantizer shape for M rows of row_bytes input bytes each."""
    if M <= ACT_WIDE_MAX_ROWS:
        return ACT_WIDE
    lo, hi = ACT_LONG_ROW_BYTES
    return ACT_LONG if lo < row_bytes <= hi else ACT_NARROW


@functools.lru_cache(maxsize=None)
def activation_spec(kind: str, cfg: ActConfig) -> KernelSpec:
    return cfg.spec(kind)


def all_kernels() -> list[KernelSpec]:
    """Every kernel lqq can launch (what `lqq kernels` compiles)."""
    return ([c.spec() for c in MMA_CONFIGS] + [c.spec() for c in DECODE_CONFIGS]
            + [c.spec() for c in WGMMA_CONFIGS + FUSED_CONFIGS]
            + [c.spec(k) for k in ACT_INPUTS for c in ACT_CONFIGS])
