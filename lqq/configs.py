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
class Plan:
    """A config plus its launch shape for one (M, N, K)."""
    config: MmaConfig
    splits: int
    kb_per_split: int
    grid: tuple


def plan_mma(config: MmaConfig, M: int, N: int, K: int, splits: int = 1) -> Plan:
    Nb = -(-N // packing.ROW_BLOCK)
    Kb = -(-K // packing.K_ALIGN) * (packing.K_ALIGN // packing.K_BLOCK)
    kb_per_split = -(-Kb // max(1, splits))
    splits = -(-Kb // kb_per_split)           # no empty split
    return Plan(config, splits, kb_per_split, (-(-Nb // config.RB), -(-M // config.BM), splits))


def heuristic_mma(M: int, N: int, K: int, sm_count: int) -> Plan:
    """Tokens per CTA: the smallest BM that covers M (at most 128). Two slabs per
    CTA once the grid has enough CTAs anyway. Split K until about two CTAs per
    SM stream weights, keeping at least 4 k-blocks (256 k) per split."""
    BM = next((b for b in MMA_BM if b >= M), MMA_BM[-1])
    Nb = -(-N // packing.ROW_BLOCK)
    tiles_m = -(-M // BM)
    RB = 2 if Nb * tiles_m >= 4 * sm_count else 1
    cfg = MmaConfig(BM, RB)
    Kb = -(-K // packing.K_ALIGN) * 2
    ctas = -(-Nb // RB) * tiles_m
    splits = max(1, min(-(-2 * sm_count // ctas), Kb // 4)) if ctas < sm_count else 1
    return plan_mma(cfg, M, N, K, splits)


def forced_mma(M: int, N: int, K: int):
    """LQQ_FORCE_CONFIG, as "bm32_rb1" or "bm32_rb1_s4" (s = K splits), or None."""
    text = knobs.force_config()
    if not text:
        return None
    try:
        parts = dict((p[:2] if p[:2] in ("bm", "rb") else p[:1], int(p[2:] if p[:2] in ("bm", "rb")
                      else p[1:])) for p in text.lower().split("_"))
        cfg = MmaConfig(parts["bm"], parts["rb"])
    except (KeyError, ValueError):
        raise ValueError(f"LQQ_FORCE_CONFIG={text!r} is not a config; write e.g. bm32_rb1 "
                         f"or bm8_rb1_s4") from None
    if cfg not in MMA_CONFIGS:
        raise ValueError(f"LQQ_FORCE_CONFIG={text!r}: BM must be one of {MMA_BM} and RB 1 or 2")
    return plan_mma(cfg, M, N, K, parts.get("s", 1))


# ---------------------------------------------------------------- activations

ACT_INPUTS = ("f16", "bf16", "f32")
ACT_THREADS = 256


def activation_spec(kind: str) -> KernelSpec:
    return KernelSpec(f"lqq_quantize_activation_{kind}", "quantize_activation.cu.j2",
                      {"IN": kind, "THREADS": ACT_THREADS}, family="quantize_activation")


def all_kernels() -> list[KernelSpec]:
    """Every kernel lqq can launch (what `lqq kernels` compiles)."""
    return [c.spec() for c in MMA_CONFIGS] + [activation_spec(k) for k in ACT_INPUTS]
