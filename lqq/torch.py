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
from .progress import as_callback

_INPUTS = (torch.float16, torch.bfloat16, torch.float32)
_gpu_bf16 = None             # CuPy here holds bfloat16 arrays (checked once)


def _gpu_holds_bf16(device) -> bool:
    """Whether bfloat16 tensors pass to CuPy and back (CuPy 14 with ml_dtypes;
    CuPy 13 makes bf16 arrays but refuses them through DLPack): then bf16
    activations, bias and outputs go to the kernels as they are. Probed with
    empty arrays, which allocate nothing (so a graph capture may be running)."""
    global _gpu_bf16
    if _gpu_bf16 is None:
        try:
            from .checks import bfloat16_dtype
            cp = _xp.cupy_or_none()
            cp.from_dlpack(torch.empty(0, dtype=torch.bfloat16, device=device))
            back = torch.from_dlpack(cp.empty(0, bfloat16_dtype()))
            _gpu_bf16 = back.dtype == torch.bfloat16
        except Exception:  # noqa: BLE001 - no ml_dtypes, or a CuPy without bf16
            _gpu_bf16 = False
    return _gpu_bf16


def _version(t: torch.Tensor):
    """torch's in-place version counter of t; None for inference tensors,
    which keep none."""
    try:
        return t._version
    except RuntimeError:
        return None


class LQQLinear(torch.nn.Module):
    """A drop-in ``torch.nn.Linear`` replacement with LQQ 4-bit weights and
    per-token INT8 activations. Output dtype follows the input (float16,
    bfloat16 or float32). bfloat16 runs as it is on the GPU where CuPy holds
    bfloat16 (with ml_dtypes); elsewhere as float32 (exact: bf16 -> f32 loses
    nothing, and the one rounding to bf16 is the kernels' own)."""

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

    def _apply(self, fn, *args, **kwargs):
        # .half(), .to(torch.bfloat16) and the like cast every floating buffer;
        # the channel scales s1 are part of the LQQ format (float32): they
        # follow moves between devices, never a dtype cast
        s1 = self.s1
        super()._apply(fn, *args, **kwargs)
        if self.s1.dtype != s1.dtype:
            self.s1 = s1.to(self.s1.device)
        return self

    def drop_cached_weight(self) -> None:
        """Forget the cached weight view and its packed GPU copy (rebuilt on
        the next call)."""
        self._view = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in _INPUTS:
            raise TypeError(f"LQQLinear takes float16, bfloat16 or float32 input, got {x.dtype}")
        gpu_bf16 = x.is_cuda and _gpu_holds_bf16(x.device)
        native = x.dtype != torch.bfloat16 or gpu_bf16
        xin = x if native else x.float()
        if not xin.is_contiguous():
            xin = xin.contiguous()
        bias = self.bias
        if bias is not None and bias.dtype == torch.bfloat16 and not gpu_bf16:
            bias = bias.float()              # exact (a .to(torch.bfloat16) model's bias)
        y = gemm(xin, self.lqq_weight(), bias=bias, out_dtype=xin.dtype)
        return y if native else y.to(torch.bfloat16)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, group_size={self.group_size}, method={self.method}")


def quantize_model(model: torch.nn.Module, group_size: int = 64, method: str = "search",
                   skip=None, progress=True) -> list[str]:
    """Replace, in place, every ``nn.Linear`` of ``model`` whose in_features is
    a multiple of the group size and of 32 with an LQQLinear. ``skip(name,
    module)`` returning True keeps a layer (e.g. the LM head). ``progress``:
    a bar on stderr when it is a terminal (True), nothing (False), or a
    callable ``(done, total, layer name)``. Returns the names of the replaced
    layers."""
    todo = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is not torch.nn.Linear or (skip and skip(name, child)):
                continue
            K = child.in_features
            if K % K_MULTIPLE or K % group_size:
                continue
            todo.append((parent, child_name, child, name))
    report = as_callback(progress)
    for done, (parent, child_name, child, name) in enumerate(todo, 1):
        setattr(parent, child_name, LQQLinear.from_linear(child, group_size, method))
        report(done, len(todo), name)
    return [name for *_, name in todo]


__all__ = ["LQQLinear", "quantize_model"]
