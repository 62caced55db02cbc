"""PyTorch integration (optional: imported only as ``lqq.torch``).

    import lqq.torch
    layer = lqq.torch.LQQLinear.from_linear(linear)       # one layer
    lqq.torch.quantize_model(model)                        # every eligible nn.Linear, in place

The LQQ arrays are module buffers, so ``.to()``, ``.cuda()`` and
``state_dict()`` work as for any module. CUDA inputs run lqq's kernels on
torch's current stream with no copies; CPU inputs run the exact NumPy
reference.
"""
from __future__ import annotations

import torch

from . import _xp
from .checks import K_MULTIPLE
from .format import LQQWeight, quantize_weight
from .gemm import gemm

_OUT = {torch.float16: torch.float16, torch.float32: torch.float32,
        torch.bfloat16: torch.float16}       # bf16 runs as fp16 (no bf16 on the CuPy side)


def _version(t: torch.Tensor):
    """torch's in-place version counter of t; None for inference tensors,
    which keep none."""
    try:
        return t._version
    except RuntimeError:
        return None


class LQQLinear(torch.nn.Module):
    """A drop-in ``torch.nn.Linear`` replacement with LQQ 4-bit weights and
    per-token INT8 activations. Output dtype follows the input (float16 or
    float32; bfloat16 inputs are computed as float16 and cast back)."""

    def __init__(self, weight: LQQWeight, bias: torch.Tensor | None = None):
        super().__init__()
        self.in_features, self.out_features = weight.K, weight.N
        self.group_size, self.method = weight.group_size, weight.method
        for name in ("codes", "s2", "z", "s1"):
            self.register_buffer(name, torch.as_tensor(_xp.to_numpy(getattr(weight, name))))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self._view = None           # ((data pointer, version) per buffer, LQQWeight over them)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, group_size: int = 64, method: str = "search"):
        W = linear.weight.detach()
        w = quantize_weight(W.float() if W.is_cuda else W.float().numpy(), group_size, method)
        layer = cls(w, linear.bias)
        return layer.to(W.device)

    def lqq_weight(self) -> LQQWeight:
        """An LQQWeight viewing this module's buffers (no copy); rebuilt only when
        the buffers move (``.to()``) or change in place (``load_state_dict``
        copies into them: torch's version counter moves), so its packed GPU
        layout is cached and never stale. Inference tensors (made under
        ``torch.inference_mode``) count no versions: after changing those in
        place, call ``drop_cached_weight()``."""
        bufs = (self.codes, self.s2, self.z, self.s1)
        key = tuple((b.data_ptr(), _version(b)) for b in bufs)
        if self._view is None or self._view[0] != key:
            arrays = [_xp.as_array(b)[0] for b in bufs]
            self._view = (key, LQQWeight(*arrays, shape=(self.out_features, self.in_features),
                                         group_size=self.group_size, method=self.method))
        return self._view[1]

    def drop_cached_weight(self) -> None:
        """Forget the cached weight view and its packed GPU copy (rebuilt on
        the next call)."""
        self._view = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in _OUT:
            raise TypeError(f"LQQLinear takes float16, bfloat16 or float32 input, got {x.dtype}")
        xin = x.to(torch.float16) if x.dtype == torch.bfloat16 else x
        if not xin.is_contiguous():
            xin = xin.contiguous()
        bias = self.bias
        if bias is not None and not xin.is_cuda and bias.dtype == torch.bfloat16:
            bias = bias.float()
        y = gemm(xin, self.lqq_weight(), bias=bias, out_dtype=_OUT[x.dtype])
        return y.to(x.dtype) if x.dtype == torch.bfloat16 else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, group_size={self.group_size}, method={self.method}")


def quantize_model(model: torch.nn.Module, group_size: int = 64, method: str = "search",
                   skip=None) -> list[str]:
    """Replace, in place, every ``nn.Linear`` of ``model`` whose in_features is
    a multiple of the group size and of 32 with an LQQLinear. ``skip(name,
    module)`` returning True keeps a layer (e.g. the LM head). Returns the
    names of the replaced layers."""
    replaced = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not torch.nn.Linear or (skip and skip(name, child)):
                continue
            K = child.in_features
            if K % K_MULTIPLE or K % group_size:
                continue
            setattr(parent, child_name, LQQLinear.from_linear(child, group_size, method))
            replaced.append(name)
    return replaced


__all__ = ["LQQLinear", "quantize_model"]
