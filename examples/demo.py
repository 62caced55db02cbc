"""Quantize a Llama-3-8B-sized linear layer to LQQ, run the W4A8 GEMM (on the
GPU when there is one, on the exact NumPy reference otherwise), and compare
with float math."""
import time

import numpy as np

import lqq
from _common import gpu_available

N, K, M = 4096, 4096, 16          # Llama-3-8B attention output projection, 16 tokens


def main():
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((N, K)) * 0.02).astype(np.float32)
    X = rng.standard_normal((M, K)).astype(np.float16)

    t = time.perf_counter()
    w = lqq.quantize_weight(W)                      # method="search", group 64
    t_q = time.perf_counter() - t
    w_err = np.linalg.norm(lqq.dequantize(w) - W) / np.linalg.norm(W)
    print(f"quantized {N}x{K} fp32 weight ({W.nbytes / 2**20:.0f} MiB) to LQQ "
          f"({w.nbytes / 2**20:.1f} MiB) in {t_q:.2f} s; weight error {w_err:.4f}")

    ref = X.astype(np.float32) @ W.T
    if gpu_available():
        import cupy as cp
        wg, xg = w.to_gpu(), cp.asarray(X)
        y = lqq.gemm(xg, wg)                        # compile + first run
        cp.cuda.Device().synchronize()
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        for _ in range(100):
            y = lqq.gemm(xg, wg)
        stop.record()
        stop.synchronize()
        dt = cp.cuda.get_elapsed_time(start, stop) / 100 * 1e-3
        y = y.get()
        name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
        where = f"GPU ({name.decode() if isinstance(name, bytes) else name})"
    else:
        print("no GPU (or no CuPy): running the exact NumPy reference instead")
        t = time.perf_counter()
        y = lqq.gemm(X, w)
        dt = time.perf_counter() - t
        where = "CPU (NumPy reference)"
    err = np.linalg.norm(y.astype(np.float32) - ref) / np.linalg.norm(ref)
    print(f"lqq.gemm on {where}: M={M} N={N} K={K}, {dt * 1e6:.1f} us per call, "
          f"relative error vs float32 math {err:.4f}")
    if not err < 0.15:               # 4-bit weights: about 8% on Gaussian weights
        raise SystemExit(f"error {err:.4f} is too large: something is wrong")


if __name__ == "__main__":
    main()
