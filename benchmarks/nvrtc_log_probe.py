"""Why does ptxas -v print nothing through NVRTC on some machine? (The H200
machine's NVRTC 13.0 returned an empty program log: NVRTC 12.9+ caches ptxas
results where a driver is present and a hit has no log; lqq.jit passes
--no-cache.) Compiles lqq's self-test kernel with several spellings of the
verbose flag, prints each log's size and head, the NVRTC build, the libraries
mapped into this process, and the environment variables that could steer NVRTC.

    PYTHONPATH=. python3 benchmarks/nvrtc_log_probe.py
"""
from __future__ import annotations

import os
import time

from lqq import jit, nvrtc

SRC = jit.render("_selftest.cu.j2", scale="1.0f")
ARCH = "--gpu-architecture=sm_90a"
SPELLINGS = [["--ptxas-options=-v"], ["-Xptxas", "-v"], ["-Xptxas=-v"],
             ["--ptxas-options=--verbose"], ["--ptxas-options=-v", "--ptxas-options=--warn-on-spills"],
             ["--ptxas-options=-v", "-lineinfo"], ["--ptxas-options=-v", "--no-cache"], []]


def main() -> None:
    print("library:", nvrtc.library_path(), "version:", nvrtc.version())
    real = os.path.realpath(nvrtc.library_path())
    print("realpath:", real, os.path.getsize(real), "bytes")
    for opts in SPELLINGS:
        t = time.perf_counter()
        try:
            r = nvrtc.compile(SRC, "lqq_selftest", [ARCH, "-std=c++17", *opts])
            print(f"{' '.join(opts) or '(none)':60s} {time.perf_counter() - t:6.3f} s log {len(r.log):5d} "
                  f"chars cubin {len(r.cubin)} B: {r.log[:160]!r}")
        except Exception as e:  # noqa: BLE001 - a probe reports everything
            print(f"{' '.join(opts):60s} failed: {str(e)[:300]}")
    with open("/proc/self/maps") as f:
        libs = sorted({line.split()[-1] for line in f if "nvrtc" in line or "ptxas" in line
                       or "nvJitLink" in line})
    print("mapped:", libs)
    print("env:", {k: v for k, v in os.environ.items()
                   if any(s in k for s in ("NVRTC", "CUDA", "PTX", "NV_", "JIT", "LD_"))})


if __name__ == "__main__":
    main()
