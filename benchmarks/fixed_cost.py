"""Where a Hopper GEMM's fixed cost goes, timed like `lqq bench` (a CUDA
graph of 20 calls, weights rotated past L2): for each shape, its plan (the
heuristic's, or the one given) four ways,
  launch  an empty kernel on the plan's grid, threads and shared memory,
          launched like lqq's (programmatic dependent launch): the floor of
          a launch in the chain;
  short   the same config and grid at the shortest K that keeps the
          plan's reduction (one 128-wide k-block per CTA where CTAs share
          tiles; two per tile where tiles outnumber CTAs, so that CTAs still
          straddle tiles): the launch plus the first stage's latency, the
          reduction and the epilogue;
  tile    one CTA per tile at K = 128 on the same config without split-K in
          clusters: one k-block, no reduction (the floor under `short`,
          where the tiles fit one wave of CTAs);
  full    the GEMM itself;
and full - short, the cost of streaming the rest of K. cuBLAS FP16 and FP8
(torch, the peers of `lqq bench`) are timed at the short K and the full K
beside it: their fixed cost against lqq's.
  python benchmarks/fixed_cost.py M,N,K[:config] ...
Motivation: fitted over the seven Llama-3 layers, lqq's time at M = 64 is
about 8 us + weights x rate, cuBLAS FP16's 6.6 us + ... (RESULTS.md,
session 15)."""
import dataclasses
import sys

import numpy as np

EMPTY = r"""
extern "C" __global__ void lqq_empty(int unused) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
}
"""


def time_empty(grid, threads, smem):
    import cupy as cp

    from lqq import bench, launch
    kernel = cp.RawKernel(EMPTY, "lqq_empty")
    kernel.max_dynamic_shared_size_bytes = smem        # one CTA per SM, as the GEMM's
    args = (np.int32(0),)
    return bench.time_calls([lambda: launch.launch(kernel, grid, (threads,), args, smem, pdl=True)],
                            20, 7)


def time_gemm(cfg, ctas, M, N, K, rng):
    """`cfg` on `ctas` CTAs at this shape, pinned as the autotuner pins a plan."""
    from lqq import autotune, bench, configs
    with autotune.pinned(configs.plan(cfg, M, N, K, ctas=ctas)):
        calls, _ = bench._lqq_calls(N, K, M, rng, with_quant=False)   # group size 64
        return bench.time_calls(calls, 20, 7)


def time_peer(kind, M, N, K):
    """cuBLAS through torch, as `lqq bench` times it; nan where torch (or the
    kind) is missing."""
    from lqq import bench
    try:
        calls = bench._torch_calls(kind, N, K, M)
    except ImportError:
        return float("nan")
    return bench.time_torch_calls(calls, 20, 7) if calls else float("nan")


def main(args):
    from lqq import configs, gpu_gemm, tune_cache
    rng = np.random.default_rng(0)
    print("| M, N, K | plan | launch us | tile us | short K | short us | full us | full - short us "
          "| fp16 short / full us | fp8 short / full us |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for arg in args:
        shape, _, force = arg.partition(":")
        M, N, K = map(int, shape.split(","))
        # the plan given, as LQQ_FORCE_CONFIG reads it, else lqq's choice
        plan = configs.forced(M, N, K, force) if force else gpu_gemm.choose(M, N, K, 64)
        cfg = plan.config
        if not isinstance(cfg, configs.WgmmaConfig):
            print(f"| {M}, {N}, {K} | {tune_cache.plan_text(plan)} | not a Hopper plan | | | | | | | |")
            continue
        text = tune_cache.plan_text(plan)
        tiles, _ = configs.wgmma_units(cfg, M, N, K)
        # as many 128-wide k-blocks per tile as CTAs per tile (one each); two
        # where tiles outnumber CTAs, so that CTAs still straddle tiles
        k_short = 128 * max(2 if tiles > plan.grid[0] else 1, -(-plan.grid[0] // tiles))
        k_short = min(k_short, K)
        launch_us = time_empty(plan.grid, cfg.threads, cfg.smem_bytes()) * 1e3
        whole = dataclasses.replace(cfg, KS=0)
        tile_us = float("nan")
        if whole in configs.WGMMA_CONFIGS:         # (every KS config has its KS = 0 twin)
            tile_us = time_gemm(whole, tiles, M, N, 128, rng) * 1e3
        short_us = time_gemm(cfg, plan.grid[0], M, N, k_short, rng) * 1e3
        full_us = time_gemm(cfg, plan.grid[0], M, N, K, rng) * 1e3
        peers = {kind: [time_peer(kind, M, N, k) * 1e3 for k in (k_short, K)] for kind in ("fp16", "fp8")}
        print(f"| {M}, {N}, {K} | {text} | {launch_us:.1f} | {tile_us:.1f} | {k_short} | {short_us:.1f} | "
              f"{full_us:.1f} | {full_us - short_us:.1f} | "
              + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in peers.values()) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
