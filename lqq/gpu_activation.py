"""Per-token INT8 activation quantization on the GPU: one kernel launch."""
from __future__ import annotations

import numpy as np

from . import checks, configs, launch

_IN_KIND = {"float16": "f16", "bfloat16": "bf16", "float32": "f32"}


def quantize_rows_gpu(X2, stream=None, out=None):
    """CuPy [M, K] float16/bfloat16/float32 -> (int8 [M, K], float32 [M]), equal
    to lqq.activation.quantize_rows bit for bit. float64 is cast to float32."""
    import cupy as cp
    name = checks.dtype_name(X2)
    if name == "float64":
        X2, name = X2.astype(cp.float32), "float32"
    X2 = cp.ascontiguousarray(X2)
    M, K = X2.shape
    x8, xs = out if out is not None else (cp.empty((M, K), cp.int8), cp.empty(M, cp.float32))
    if M:
        cfg = configs.activation_config(M, K * X2.itemsize)
        kernel = configs.activation_spec(_IN_KIND[name], cfg).function()
        launch.launch(kernel, (M,), (cfg.THREADS,), (X2, x8, xs, np.int32(K)),
                      stream=stream, pdl=True)
    return x8, xs
