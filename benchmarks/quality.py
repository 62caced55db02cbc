"""Quantization quality: relative Frobenius error of the reconstructed weight
and of the GEMM output against float32 math, for LQQ's three encoders and for
plain round-to-nearest asymmetric INT4 with float scales (the usual "RTN"
baseline; its GEMM uses the same per-token INT8 activations).

    python benchmarks/quality.py [--n 1024 --k 4096 --m 64] [--json]
"""
import argparse
import json
import time

import numpy as np

import lqq
from lqq.encoders import exhaustive_group_error, rtn_int4_float


KINDS = ("normal", "student_t5", "student_t3", "structured", "structured_x8")


def weights(kind, rng, N, K):
    if kind == "normal":
        return rng.standard_normal((N, K))
    if kind.startswith("student_t"):
        return rng.standard_t(int(kind[-1]), size=(N, K))
    # structured: row/column scale spread, 8 outlier input channels (x4, or x8
    # for the extreme variant), a low-rank part
    W = rng.standard_normal((N, K)) * rng.lognormal(0, 0.5, (N, 1)) * rng.lognormal(0, 0.3, (1, K))
    W[:, rng.choice(K, 8, replace=False)] *= 8 if kind.endswith("x8") else 4
    return W + 0.5 * rng.standard_normal((N, 4)) @ rng.standard_normal((4, K))


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--k", type=int, default=4096)
    ap.add_argument("--m", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    rows = []
    for kind in KINDS:
        W = weights(kind, rng, a.n, a.k).astype(np.float32)
        X = rng.standard_normal((a.m, a.k)).astype(np.float32)
        Y = X @ W.T
        xq, xs = lqq.quantize_activation(X)
        Xd = xq.astype(np.float32) * xs[:, None]
        for G in (64, 128):
            rtn = rtn_int4_float(W, G)
            r = {"weights": kind, "group": G, "rtn_w": rel(rtn, W), "rtn_y": rel(Xd @ rtn.T, Y)}
            for method in ("search", "round", "paper"):
                t = time.perf_counter()
                w = lqq.quantize_weight(W, G, method)
                r[f"{method}_s"] = time.perf_counter() - t
                r[f"{method}_w"] = rel(lqq.dequantize(w), W)
                r[f"{method}_y"] = rel(lqq.gemm(X, w, out_dtype=np.float32), Y)
            r["search_over_rtn"] = r["search_w"] / r["rtn_w"]
            # the best any (s2, z) choice could do, on the first 32 rows
            S = W[:32]
            bound = np.sqrt(exhaustive_group_error(S, G).sum()) / np.linalg.norm(S)
            r["bound_over_rtn"] = bound / rel(rtn_int4_float(S, G), S)
            rows.append(r)
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"W [{a.n} x {a.k}], X [{a.m} x {a.k}]; relative Frobenius error of the weight (w) "
          f"and of the GEMM output (y); bound = exhaustive best (s2, z) per group")
    print("| weights | G | search w | round w | paper w | RTN-INT4 w | search/RTN | bound/RTN | "
          "search y | round y | paper y | RTN-INT4 y | search time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weights']} | {r['group']} | {r['search_w']:.4f} | {r['round_w']:.4f} | "
              f"{r['paper_w']:.4f} | {r['rtn_w']:.4f} | {r['search_over_rtn']:.3f} | "
              f"{r['bound_over_rtn']:.3f} | "
              f"{r['search_y']:.4f} | {r['round_y']:.4f} | {r['paper_y']:.4f} | {r['rtn_y']:.4f} | "
              f"{r['search_s']:.2f} s |")


if __name__ == "__main__":
    main()
