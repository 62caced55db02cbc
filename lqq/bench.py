"""`lqq bench`: lqq's W4A8 GEMM next to cuBLAS FP16, INT8 and FP8 (through
PyTorch, when it is installed) on the Llama-3 linear layers of
docs/BASELINES.md, in one run on one GPU.

Method: weights rotated through more than 256 MB so L2 (50 MB on an H100,
60 MB on an H200) cannot serve them; REPS back-to-back calls captured in a
CUDA graph and timed with CUDA events around its replay; median over GROUPS
replays. After the GEMMs, the run measures the card's device-to-device copy
rate (bytes read + written), which SPEC section 6 states the decode target
against, and reports each weight stream as a share of it (a read-only stream
can exceed it: the table also names cuBLAS FP16's fastest weight stream).
"""
from __future__ import annotations

import math
import statistics

import numpy as np

from . import tune_cache
from .autotune import pinned     # the module: `lqq.autotune` is the function

SHAPES = {  # name: (N, K)
    "L3-8B o": (4096, 4096), "L3-8B qkv": (6144, 4096), "L3-8B gate_up": (28672, 4096),
    "L3-8B down": (4096, 14336), "L3-70B o": (8192, 8192), "L3-70B gate_up": (57344, 8192),
    "L3-70B down": (8192, 28672)}
M_DEFAULT = (1, 4, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
ROTATE_BYTES = 256 << 20


def copies(nbytes: int) -> int:
    return max(2, math.ceil(ROTATE_BYTES / max(nbytes, 1)))


def time_calls(calls, reps: int, groups: int) -> float:
    """Median ms per call of ``calls`` (a list of zero-argument callables,
    cycled), replayed as a CUDA graph of ``reps`` calls; falls back to plain
    back-to-back launches if capture is not possible."""
    import cupy as cp
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        for f in calls[:reps]:          # warm-up: compile, pack, allocate
            f()
        stream.synchronize()
        graph = None
        try:
            stream.begin_capture()
            for i in range(reps):
                calls[i % len(calls)]()
            graph = stream.end_capture()
        except Exception:
            if stream.is_capturing():
                stream.end_capture()
            graph = None

        def run():
            if graph is not None:
                graph.launch(stream)
            else:
                for i in range(reps):
                    calls[i % len(calls)]()
        run()
        times = []
        for _ in range(groups):
            a, b = cp.cuda.Event(), cp.cuda.Event()
            a.record(stream)
            run()
            b.record(stream)
            b.synchronize()
            times.append(cp.cuda.get_elapsed_time(a, b) / reps)
    return statistics.median(times)


COPY_BYTES = 1 << 30


def copy_bandwidth(nbytes: int = COPY_BYTES, reps: int = 10, groups: int = 9) -> float:
    """TB/s of a device-to-device copy of ``nbytes`` (counting bytes read plus
    bytes written; cudaMemcpyAsync), timed like the GEMMs: the rate SPEC
    section 6 states the decode target against. A read-only stream goes
    faster (an H200: 2.71 TB/s copying by cudaMemcpyAsync, torch and CuPy
    alike, while cuBLAS FP16 read its weights at 4.45), so the table also
    reports the fastest FP16 weight stream of the run."""
    import cupy as cp
    src = cp.ones(nbytes, cp.uint8)
    dst = cp.empty_like(src)
    d2d = cp.cuda.runtime.memcpyDeviceToDevice

    def copy():
        stream = cp.cuda.get_current_stream()
        cp.cuda.runtime.memcpyAsync(dst.data.ptr, src.data.ptr, nbytes, d2d, stream.ptr)
    ms = time_calls([copy], reps, groups)
    src = dst = None
    cp.get_default_memory_pool().free_all_blocks()
    return 2 * nbytes / ms * 1e-9


def time_torch_calls(calls, reps: int, groups: int) -> float:
    """time_calls for PyTorch ops (and lqq calls on torch tensors): captured
    with torch.cuda.graph, so torch's allocator knows about the capture, on the
    stream that ran the warm-up, so lqq's per-stream scratch already exists."""
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for f in calls[:reps]:
            f()
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=s):
        for i in range(reps):
            calls[i % len(calls)]()
    graph.replay()
    times = []
    for _ in range(groups):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / reps)
    return statistics.median(times)


def rotated_weights(w):
    """``w`` plus enough independent GPU copies to exceed ROTATE_BYTES, each
    already packed for the kernels."""
    from lqq import gpu_gemm
    from lqq.format import _ARRAYS, LQQWeight
    ws = [w] + [LQQWeight(*(getattr(w, a).copy() for a in _ARRAYS), shape=w.shape,
                          group_size=w.group_size) for _ in range(copies(w.nbytes) - 1)]
    for v in ws:
        gpu_gemm.packed(v)
    return ws


def _lqq_calls(N, K, M, rng, with_quant: bool):
    import cupy as cp

    import lqq
    w = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    ws = rotated_weights(w)
    x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
    xq, xs = lqq.quantize_activation(x)
    out = cp.empty((M, N), cp.float16)
    arg = x if with_quant else (xq, xs)
    return [lambda v=v: lqq.gemm(arg, v, out=out, check_finite=False) for v in ws], w.nbytes


def _torch_calls(kind, N, K, M):
    import torch
    dev = "cuda"
    if kind == "fp16":
        W = torch.randn(N, K, device=dev, dtype=torch.float16)
        X = torch.randn(M, K, device=dev, dtype=torch.float16)
        ws = [W] + [W.clone() for _ in range(copies(W.numel() * 2) - 1)]
        return [lambda w=w: X @ w.t() for w in ws]
    if kind == "int8":
        if M <= 16:
            return None                 # cuBLASLt int8 refuses M <= 16
        W = torch.randint(-127, 128, (N, K), device=dev, dtype=torch.int8)
        X = torch.randint(-127, 128, (M, K), device=dev, dtype=torch.int8)
        ws = [W] + [W.clone() for _ in range(copies(W.numel()) - 1)]
        return [lambda w=w: torch._int_mm(X, w.t()) for w in ws]
    if kind == "fp8":
        if not hasattr(torch, "float8_e4m3fn"):
            return None
        W = torch.randn(N, K, device=dev).to(torch.float8_e4m3fn)
        X = torch.randn(M, K, device=dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev)
        ws = [W] + [W.clone() for _ in range(copies(W.numel()) - 1)]
        return [lambda w=w: torch._scaled_mm(X, w.t(), scale_a=one, scale_b=one,
                                             out_dtype=torch.float16) for w in ws]
    raise ValueError(kind)


def portable_plan(M: int, N: int, K: int):
    """The sm_80 (mma.sync) heuristic's plan, to time that path next to the
    Hopper kernel; None where it is what runs anyway."""
    import cupy as cp

    from lqq import configs, gpu_gemm
    if cp.cuda.Device().compute_capability != "90":
        return None
    return configs.heuristic(M, N, K, gpu_gemm.sm_count(), wgmma=False)


def run(shapes=None, ms=M_DEFAULT, reps=20, groups=9, peers=("fp16", "int8", "fp8"),
        progress=None):
    """List of result dicts, one per (shape, M): lqq (GEMM alone, and with the
    activation quantization), the mma.sync path on a Hopper GPU, and peers."""
    import cupy as cp
    rng = np.random.default_rng(0)
    try:
        import torch
        torch.cuda.init()
    except Exception:
        peers = ()
    shapes = shapes or list(SHAPES)
    rows, total = [], len(shapes) * len(ms)
    for name in shapes:
        N, K = SHAPES[name] if isinstance(name, str) else name
        for M in ms:
            row = {"layer": name if isinstance(name, str) else f"{N}x{K}", "N": N, "K": K, "M": M}
            calls, wbytes = _lqq_calls(N, K, M, rng, with_quant=False)
            row["lqq"] = time_calls(calls, reps, groups)
            portable = portable_plan(M, N, K)
            if portable:
                row["mma_config"] = tune_cache.plan_text(portable)
                with pinned(portable):
                    row["mma"] = time_calls(calls, reps, groups)
            calls, _ = _lqq_calls(N, K, M, rng, with_quant=True)
            row["lqq_q"] = time_calls(calls, reps, groups)
            del calls
            row["weight_bytes"] = wbytes
            for peer in peers:
                try:
                    calls = _torch_calls(peer, N, K, M)
                    row[peer] = None if calls is None else time_torch_calls(calls, reps, groups)
                except Exception as e:           # a peer this torch/cuBLAS cannot run
                    row[peer] = None
                    row[f"{peer}_error"] = f"{type(e).__name__}: {e}"[:120]
                calls = None
            cp.get_default_memory_pool().free_all_blocks()
            try:
                import torch
                torch.cuda.empty_cache()
            except Exception:
                pass
            ops = 2.0 * M * N * K
            row["lqq_TOPs"] = ops / row["lqq"] * 1e-9
            row["lqq_TBps"] = wbytes / row["lqq"] * 1e-9
            if row.get("fp16"):
                row["fp16_TBps"] = 2.0 * N * K / row["fp16"] * 1e-9     # fp16 weight bytes
            for peer in tuple(peers) + ("mma",):
                if row.get(peer):
                    row[f"x_{peer}"] = row[peer] / row["lqq"]
            rows.append(row)
            if progress:
                progress(len(rows), total, f"{row['layer']} M={M}")
    try:                        # after the GEMMs: the card is warm; 2 GiB may not be free
        copy_TBps = copy_bandwidth()
    except Exception as e:
        for row in rows:
            row["copy_error"] = f"{type(e).__name__}: {e}"[:120]
        return rows
    for row in rows:
        row["copy_TBps"] = copy_TBps
        row["pct_copy"] = 100 * row["lqq_TBps"] / copy_TBps
    return rows


def table(rows, peers=("fp16", "int8", "fp8")) -> str:
    if any(r.get("mma") for r in rows):
        peers = tuple(peers) + ("mma",)
    copy = next((r["copy_TBps"] for r in rows if r.get("copy_TBps")), None)
    head = ("| layer | M | lqq ms | lqq+quant ms | TOP/s | weight TB/s | % of copy | "
            + " | ".join(f"{p} ms | vs {p}" for p in peers) + " |")
    lines = [head, "|" + "---|" * (7 + 2 * len(peers))]
    for r in rows:
        pct = r.get("pct_copy")
        cells = [r["layer"], str(r["M"]), f"{r['lqq']:.4f}", f"{r['lqq_q']:.4f}",
                 f"{r['lqq_TOPs']:.0f}", f"{r['lqq_TBps']:.2f}", f"{pct:.0f}%" if pct else "-"]
        for p in peers:
            v = r.get(p)
            cells += [f"{v:.4f}" if v else "-", f"{r[f'x_{p}']:.2f}x" if v else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    if copy:
        lines.append(f"\ndevice-to-device copy: {copy:.2f} TB/s (bytes read + written), "
                     "the rate of '% of copy'")
    fp16 = max((r["fp16_TBps"] for r in rows if r.get("fp16_TBps")), default=None)
    if fp16:
        lines.append(f"fastest weight stream of cuBLAS FP16 in this run: {fp16:.2f} TB/s (read only)")
    return "\n".join(lines)
