"""lqq: W4A8 GEMM for Hopper GPUs with LiquidQuant (LQQ) 4-bit weights.

    import lqq
    w = lqq.quantize_weight(W)          # [N, K] float -> LQQWeight
    y = lqq.gemm(x, w)                  # x [..., K] -> y [..., N] fp16

NumPy inputs run the exact reference; CuPy arrays and CUDA torch tensors run
the CUDA kernels. See README.md and docs/.
"""
from ._version import __version__
from .activation import quantize_activation
from .autotune import autotune
from .format import LQQWeight, dequantize, load, quantize_weight, save
from .gemm import gemm

__all__ = ["__version__", "LQQWeight", "quantize_weight", "dequantize", "quantize_activation",
           "gemm", "load", "save", "autotune"]
