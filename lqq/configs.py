"""Kernel configurations: every kernel lqq can launch, named by arch, dtype and
operation, and the deterministic heuristic that picks one per shape (kept
apart from the JIT runtime, which only renders, compiles and loads)."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import knobs, packing


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
        return f"lqq_w4a8_gemm_mma_sm80_bm{self.BM}_rb{self.RB}"

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
        return f"lqq_w4a8_gemm_mma_sm80_decode_bm{self.BM}_rb{self.RB}_pf{self.PF}"

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
class Plan:
    """A config plus its launch shape for one (M, N, K)."""
    config: object
    splits: int
    kb_per_split: int
    grid: tuple


def plan(config, M: int, N: int, K: int, splits: int = 1) -> Plan:
    Nb = -(-N // packing.ROW_BLOCK)
    Kb = -(-K // packing.K_ALIGN) * (packing.K_ALIGN // packing.K_BLOCK)
    splits = max(1, splits)
    if isinstance(config, DecodeConfig):
        splits = max(splits, -(-Kb // config.KBMAX))
    kb_per_split = -(-Kb // splits)
    splits = -(-Kb // kb_per_split)           # no empty split
    return Plan(config, splits, kb_per_split, (-(-Nb // config.RB), -(-M // config.BM), splits))


def heuristic(M: int, N: int, K: int, sm_count: int) -> Plan:
    """Few tokens (M <= 16): the decode kernel; K is split so that a CTA streams
    at most 32 k-blocks (2048 k) and there are at least four CTAs per SM (a sweep
    on the H100, benchmarks/tune_decode.py, RESULTS.md). Otherwise the general
    kernel: the smallest BM that covers M (at most 128), two slabs per CTA once
    the grid is large anyway, split K to reach two CTAs per SM."""
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


def _parse_forced(text: str):
    """"bm32_rb1", "mma_bm32_rb2_s4" or "decode_bm8_rb1_pf4_s8" -> (config, splits)."""
    parts = text.lower().split("_")
    family = parts.pop(0) if parts and parts[0] in ("mma", "decode") else "mma"
    fields = {}
    for part in parts:
        key = part.rstrip("0123456789")
        fields[key] = int(part[len(key):])
    splits = fields.pop("s", 1)
    if family == "decode":
        cfg = DecodeConfig(fields.pop("bm"), fields.pop("rb"), fields.pop("pf"))
        legal = DECODE_CONFIGS
    else:
        cfg = MmaConfig(fields.pop("bm"), fields.pop("rb"))
        legal = MMA_CONFIGS
    if fields or cfg not in legal:
        raise KeyError(cfg)
    return cfg, splits


def forced(M: int, N: int, K: int):
    """The plan LQQ_FORCE_CONFIG pins, or None."""
    text = knobs.force_config()
    if not text:
        return None
    try:
        cfg, splits = _parse_forced(text)
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"LQQ_FORCE_CONFIG={text!r} is not a config lqq has; write e.g. "
                         f"mma_bm32_rb1, mma_bm8_rb2_s4 or decode_bm8_rb1_pf4_s8 (`lqq kernels` "
                         f"lists them)") from None
    return plan(cfg, M, N, K, splits)


# ---------------------------------------------------------------- activations

ACT_INPUTS = ("f16", "bf16", "f32")
ACT_THREADS = 256


def activation_spec(kind: str) -> KernelSpec:
    return KernelSpec(f"lqq_quantize_activation_{kind}", "quantize_activation.cu.j2",
                      {"IN": kind, "THREADS": ACT_THREADS}, family="quantize_activation")


def all_kernels() -> list[KernelSpec]:
    """Every kernel lqq can launch (what `lqq kernels` compiles)."""
    return ([c.spec() for c in MMA_CONFIGS] + [c.spec() for c in DECODE_CONFIGS]
            + [activation_spec(k) for k in ACT_INPUTS])
