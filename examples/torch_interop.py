"""PyTorch in, PyTorch out: torch tensors go through lqq with no copy (DLPack)
on torch's current stream, inside a torch.cuda.graph capture, and as a
drop-in nn.Linear. With no GPU, the nn.Linear half runs on the CPU reference."""
import torch

import lqq
import lqq.torch as lt
from _common import gpu_available


@torch.inference_mode()
def main():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4096, 11008), torch.nn.SiLU(),
                                torch.nn.Linear(11008, 4096))
    x = torch.randn(4, 4096)
    if not gpu_available():
        print("no GPU (or no CuPy): the nn.Linear replacement on the CPU reference only")
        ref = model(x)
        print("replaced:", lt.quantize_model(model))
        y = model(x)
        print(f"relative error vs float32 model: {float((y - ref).norm() / ref.norm()):.4f}")
        return

    dev, half = "cuda", torch.float16
    model = model.to(dev, half)
    x = x.to(dev, half)
    ref = model(x).float()

    # 1. tensors in and out, no copy, on torch's current stream
    w = lqq.quantize_weight(model[0].weight)               # CUDA tensor in: GPU encoder
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        y = lqq.gemm(x, w, bias=model[0].bias)             # a torch tensor back
    stream.synchronize()
    print(f"lqq.gemm on torch tensors: {type(y).__name__} {tuple(y.shape)} {y.dtype}")

    # 2. inside torch.cuda.graph: warm up on the capturing stream, then capture with out=
    out = torch.empty(4, 11008, device=dev, dtype=half)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        lqq.gemm(x, w, bias=model[0].bias, out=out)
    s.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        lqq.gemm(x, w, bias=model[0].bias, out=out)
    out.zero_()
    g.replay()
    torch.cuda.synchronize()
    print(f"graph replay equals the eager call: {torch.equal(out, y)}")

    # 3. the whole model, converted in one line
    print("replaced:", lt.quantize_model(model))
    yq = model(x).float()
    err = float((yq - ref).norm() / ref.norm())
    print(f"converted model: relative error vs fp16 model {err:.4f}")
    if not torch.equal(out, y) or not err < 0.15:
        raise SystemExit("unexpected result")


if __name__ == "__main__":
    main()
