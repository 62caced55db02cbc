"""Linear-layer shapes of common models, for ``lqq autotune --model``.

Each layer is an (N, K) = (out features, in features) GEMM; q/k/v are fused
into one "qkv" GEMM and gate/up into one "gate_up" GEMM, as serving stacks run
them. Mixtral's gate_up and down are one expert's (every expert has the same
shape; each sees about top_k / n_experts of the tokens).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    source: str = ""

    def layers(self) -> dict[str, tuple[int, int]]:
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"qkv": (q + 2 * kv, self.hidden), "o": (self.hidden, q),
                "gate_up": (2 * self.intermediate, self.hidden),
                "down": (self.hidden, self.intermediate)}


MODELS = {
    "Llama-3-8B": Model(4096, 32, 8, 128, 14336, "meta-llama/Meta-Llama-3-8B config.json"),
    "Llama-3-70B": Model(8192, 64, 8, 128, 28672, "meta-llama/Meta-Llama-3-70B config.json"),
    "Qwen2.5-7B": Model(3584, 28, 4, 128, 18944, "Qwen/Qwen2.5-7B config.json"),
    "Mixtral-8x7B": Model(4096, 32, 8, 128, 14336, "mistralai/Mixtral-8x7B-v0.1 config.json"),
}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def get(name: str) -> Model:
    """The preset called ``name`` (case, '-', '.' and '_' are ignored)."""
    for key, model in MODELS.items():
        if _norm(key) == _norm(name):
            return model
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")


def shapes(name: str) -> list[tuple[int, int]]:
    """Distinct (N, K) of a preset's linear layers, in layer order."""
    return list(dict.fromkeys(get(name).layers().values()))
