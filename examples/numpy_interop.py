"""NumPy in, NumPy out: quantize a NumPy weight, run the W4A8 GEMM on the GPU
(explicit host -> device -> host transfers) and on the exact CPU reference,
and compare both with float math. On a machine with no GPU only the CPU half
runs, and says so."""
import time

import numpy as np

import lqq
from _common import gpu_available

N, K, M = 2048, 4096, 8


def rel(a, b):
    return float(np.linalg.norm(a.astype(np.float32) - b) / np.linalg.norm(b))


def main():
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((N, K)) * 0.02).astype(np.float32)
    X = rng.standard_normal((M, K)).astype(np.float16)
    ref = X.astype(np.float32) @ W.T
    w = lqq.quantize_weight(W)                            # NumPy weight, NumPy encoder
    rows = []
    t = time.perf_counter()
    y_cpu = lqq.gemm(X, w)                                # NumPy inputs: exact reference
    rows.append(("CPU reference", time.perf_counter() - t, rel(y_cpu, ref), "-"))
    if gpu_available():
        import cupy as cp
        wg, xg = w.to_gpu(), cp.asarray(X)                # host -> device
        lqq.gemm(xg, wg)                                  # first call compiles (or loads) kernels
        cp.cuda.Device().synchronize()
        t = time.perf_counter()
        y_gpu = cp.asnumpy(lqq.gemm(xg, wg))              # device -> host
        dt = time.perf_counter() - t
        rows.append(("GPU kernels", dt, rel(y_gpu, ref), str(np.array_equal(y_gpu, y_cpu))))
    else:
        print("no GPU (or no CuPy): only the CPU half runs")
    print(f"W4A8 GEMM, M={M} N={N} K={K}, relative error against float32 math")
    print(f"{'path':<14} {'time ms':>9} {'rel err':>8} {'bit-equal to CPU':>17}")
    for name, dt, err, same in rows:
        print(f"{name:<14} {dt * 1e3:9.2f} {err:8.4f} {same:>17}")
    if any(r[3] == "False" for r in rows):
        raise SystemExit("GPU and CPU results differ")


if __name__ == "__main__":
    main()
