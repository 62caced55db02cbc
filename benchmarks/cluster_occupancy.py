"""How many clusters of each split-K-in-clusters config (WgmmaConfig.KS) the
GPU holds at once (cuOccupancyMaxActiveClusters), next to the CTAs per SM of
the other Hopper configs (cuOccupancyMaxActiveBlocksPerMultiprocessor):
python benchmarks/cluster_occupancy.py"""
import ctypes

import cupy as cp

from lqq import configs, gpu_gemm, launch

cuda = ctypes.CDLL("libcuda.so.1")
sms = gpu_gemm.sm_count()
for cfg in configs.WGMMA_CONFIGS:
    if cfg.FX or (not cfg.KS and cfg.BN not in (64, 128, 256)):
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
