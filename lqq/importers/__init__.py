"""Importers from the 4-bit checkpoint formats people already have: AWQ (GEMM
packing), GPTQ (v1 and v2 zero conventions, with or without act-order g_idx)
and compressed-tensors `pack-quantized`. Each dequantizes the source exactly by
its own rules and requantizes it to LQQ; see docs/importers.md.

    from lqq.importers import import_safetensors, list_layers
    for prefix in list_layers("model.safetensors", "gptq"):
        w, report = import_safetensors("model.safetensors", prefix, "gptq")
"""
from .awq import dequantize_awq, unpack_awq
from .compressed_tensors import dequantize_compressed_tensors, unpack_compressed_tensors
from .convert import (FORMATS, dequantize_source, import_layer, import_safetensors,
                      list_layers, rel_error)
from .gptq import dequantize_gptq, unpack_gptq
from .safetensors_io import read_tensors, tensor_names

__all__ = ["FORMATS", "import_layer", "import_safetensors", "list_layers", "dequantize_source",
           "dequantize_awq", "dequantize_gptq", "dequantize_compressed_tensors", "unpack_awq",
           "unpack_gptq", "unpack_compressed_tensors", "read_tensors", "tensor_names",
           "rel_error"]
