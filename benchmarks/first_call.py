"""First-call cost of a new kernel config: a cold compile (empty cache) and a
load from the disk cache in a fresh process. SPEC targets: <= 2 s, <= 50 ms.
Usage: python benchmarks/first_call.py   (needs a GPU; uses a temporary cache)"""
import os
import subprocess
import sys
import tempfile

PROBE = r"""
import time, cupy as cp
cp.zeros(1); cp.cuda.Device().synchronize()      # CUDA context outside the timing
t0 = time.perf_counter()
from lqq import configs, jit
spec = configs.DecodeConfig(8, 1, 4).spec()
t1 = time.perf_counter()
compiled = jit.compile(spec.render(), spec.name)
kernel = jit.load(compiled, spec.name)
cp.cuda.Device().synchronize()
t2 = time.perf_counter()
print(f"{'hit' if compiled.cached else 'cold'} {t2 - t1:.4f} import {t1 - t0:.3f}")
"""

with tempfile.TemporaryDirectory() as cache:
    env = dict(os.environ, LQQ_CACHE_DIR=cache)
    for label in ("cold compile", "fresh process, disk cache"):
        out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        print(f"{label:<28} {float(out[1]) * 1e3:8.1f} ms  ({out[0]}; import lqq {out[3]} s)")
