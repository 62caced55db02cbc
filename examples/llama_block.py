"""One Llama-3-8B decoder layer's linear layers (q, k, v, o, gate, up, down;
random weights with realistic scale) run three ways: PyTorch FP16, lqq W4A8,
and the exact NumPy reference on a slice. Reports the output error against
FP16 and the time per token for decode (batch 1, 8, 32) and prefill (512 and
2048 tokens). Timing: each forward (the seven GEMMs) captured in a CUDA graph,
CUDA events, median of replays. With no GPU it runs the reference on the
slice only, and says so.

    python examples/llama_block.py [--tokens 1,8,32,512,2048]
"""
import argparse
import numpy as np

import lqq
from _common import gpu_available
from lqq.bench import time_torch_calls

HIDDEN, KV, FFN = 4096, 1024, 14336
LAYERS = {"q": (HIDDEN, HIDDEN), "k": (KV, HIDDEN), "v": (KV, HIDDEN), "o": (HIDDEN, HIDDEN),
          "gate": (FFN, HIDDEN), "up": (FFN, HIDDEN), "down": (HIDDEN, FFN)}
SLICE = 128            # output rows the NumPy reference recomputes per layer


def make_weights(rng, rows=None):
    """Normal weights at Llama-like scale (std 0.02), a few stronger input
    channels; only the first ``rows`` output rows when given."""
    out = {}
    for name, (N, K) in LAYERS.items():
        W = rng.standard_normal((rows or N, K), dtype=np.float32) * 0.02
        W[:, rng.choice(K, 4, replace=False)] *= 4
        out[name] = W
    return out


def activations(rng, M, K):
    X = rng.standard_normal((M, K), dtype=np.float32)
    X[:, rng.choice(K, 4, replace=False)] *= 10        # activation outlier channels
    return X.astype(np.float16)


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def cpu_only(rng):
    print("no GPU (or no CuPy): NumPy reference on a slice of each layer only")
    Ws = make_weights(rng, rows=SLICE)
    lqw = {n: lqq.quantize_weight(W) for n, W in Ws.items()}
    X = {K: activations(rng, 8, K) for K in (HIDDEN, FFN)}
    print(f"| layer | rel. error vs float32 (first {SLICE} rows, 8 tokens) |\n|---|---|")
    for name, (N, K) in LAYERS.items():
        ref = X[K].astype(np.float32) @ Ws[name].T
        y = lqq.gemm(X[K], lqw[name]).astype(np.float32)
        print(f"| {name} | {rel(y, ref):.4f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", default="1,8,32,512,2048")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    if not gpu_available():
        cpu_only(rng)
        return
    Ws = make_weights(rng)

    import cupy as cp
    import torch
    dev = "cuda"
    wt = {n: torch.from_numpy(W).to(dev, torch.float16) for n, W in Ws.items()}
    wq = {n: lqq.quantize_weight(cp.asarray(W)) for n, W in Ws.items()}     # GPU encoder
    print("| tokens | FP16 ms | lqq ms | FP16 us/token | lqq us/token | speedup | "
          "rel. err vs FP16 | reference slice bit-equal |")
    print("|---|---|---|---|---|---|---|---|")
    for M in [int(t) for t in args.tokens.split(",")]:
        X = {K: torch.from_numpy(activations(rng, M, K)).to(dev) for K in (HIDDEN, FFN)}
        y16 = {n: torch.empty(M, N, device=dev, dtype=torch.float16) for n, (N, K) in LAYERS.items()}
        yq = {n: torch.empty(M, N, device=dev, dtype=torch.float16) for n, (N, K) in LAYERS.items()}

        def fp16():
            for n, (N, K) in LAYERS.items():
                torch.matmul(X[K], wt[n].t(), out=y16[n])

        def w4a8():
            for n, (N, K) in LAYERS.items():
                lqq.gemm(X[K], wq[n], out=yq[n], check_finite=False)

        t16, tq = (time_torch_calls([f], reps=5, groups=7) for f in (fp16, w4a8))
        fp16()
        w4a8()
        torch.cuda.synchronize()
        err = rel(np.concatenate([yq[n].cpu().numpy().ravel() for n in LAYERS]),
                  np.concatenate([y16[n].cpu().numpy().ravel() for n in LAYERS]))
        same = True
        for n, (N, K) in LAYERS.items():          # the exact reference on a slice
            w_slice = lqq.quantize_weight(Ws[n][:SLICE])   # same rows, same encoder
            x = X[K][:min(M, 8)].cpu().numpy()
            ref = lqq.gemm(x, w_slice)
            same &= np.array_equal(ref, yq[n][:min(M, 8), :SLICE].cpu().numpy())
        print(f"| {M} | {t16:.4f} | {tq:.4f} | {t16 / M * 1e3:.2f} | {tq / M * 1e3:.2f} | "
              f"{t16 / tq:.2f}x | {err:.4f} | {same} |")
        del X, y16, yq
        cp.get_default_memory_pool().free_all_blocks()


if __name__ == "__main__":
    main()
