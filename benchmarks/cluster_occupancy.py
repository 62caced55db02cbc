"""How many clusters of each split-K-in-clusters config (WgmmaConfig.KS) the
GPU holds at once (cuOccupancyMaxActiveClusters), next to the CTAs per SM of
the other Hopper configs (cuOccupancyMaxActiveBlocksPerMultiprocessor):
python benchmarks/cluster_occupancy.py [TAG ...]
TAGs (bn128_st6_wg3_ks3 ...): configs lqq does not ship, asked about instead
of the shipped ones (compiled as they are, spills or not: the answer depends
on the cluster shape, threads and shared memory, not on the code)."""
import ctypes
import sys

import cupy as cp

from lqq import configs, gpu_gemm, launch


def from_tag(tag: str) -> configs.WgmmaConfig:
    """bn128_st6_wg3_ks3 (or wgmma_...) -> its config, shipped or not."""
    try:
        cfg, splits, ctas = configs._parse_forced("wgmma_" + tag.removeprefix("wgmma_"), shipped=False)
    except (KeyError, ValueError, IndexError):
        cfg, splits, ctas = None, 1, None
    if cfg is None or (splits, ctas) != (1, None):
        raise SystemExit(f"{tag!r}: expected bn<tokens>_st<stages>[_wg<consumers>][_mb<n>][_ks<n>]")
    return cfg


cuda = ctypes.CDLL("libcuda.so.1")
sms = gpu_gemm.sm_count()
asked = [from_tag(t) for t in sys.argv[1:]]
for cfg in asked or configs.WGMMA_CONFIGS:
    if not asked and (cfg.FX or (not cfg.KS and cfg.BN not in (64, 128, 256))):
        continue
    smem = cfg.smem_bytes()
    kernel = gpu_gemm.function(cfg.spec(), smem)
    fptr = ctypes.c_void_p(kernel.kernel.ptr)
    n = ctypes.c_int(0)
    if cfg.KS:
        ks = cfg.KS
        grid = (ks * (sms // ks), 1, 1)
        conf = launch._LaunchConfig((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(cfg.threads, 1, 1),
                                    smem, cp.cuda.get_current_stream().ptr, None, 0)
        err = cuda.cuOccupancyMaxActiveClusters(ctypes.byref(n), fptr, ctypes.byref(conf))
        what = f"{n.value} clusters of {ks} ({n.value * ks} CTAs on {sms} SMs)"
    else:
        err = cuda.cuOccupancyMaxActiveBlocksPerMultiprocessor(ctypes.byref(n), fptr,
                                                               cfg.threads, ctypes.c_size_t(smem))
        what = f"{n.value} CTA(s) per SM"
    print(f"{cfg.tag}: smem {smem} B, {cfg.threads} threads: "
          + (what if err == 0 else f"CUresult {err}"), flush=True)
