"""lqq.torch: the nn.Linear replacement on the CPU (the GPU half is in
test_gpu.py). Skipped, with the reason, where PyTorch is not installed."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (optional dependency)")

import lqq  # noqa: E402
import lqq.torch as lt  # noqa: E402
from lqq import reference  # noqa: E402


def linear(K=128, N=48, bias=True):
    torch.manual_seed(np.random.default_rng().integers(1 << 31))
    return torch.nn.Linear(K, N, bias=bias)


def expected(layer, X, out_dtype=np.float16):
    x8, xs = lqq.quantize_activation(X.reshape(-1, X.shape[-1]))
    b = None if layer.bias is None else layer.bias.detach().float().numpy()   # exact
    y = reference.gemm(x8, xs, layer.lqq_weight(), b, out_dtype)
    return y.reshape(*X.shape[:-1], -1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
def test_from_linear_matches_reference(dtype, bias):
    lin = linear(bias=bias)
    layer = lt.LQQLinear.from_linear(lin, group_size=32)
    x = torch.randn(2, 5, 128).to(dtype)
    y = layer(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 5, 48) and y.dtype == dtype
    want = expected(layer, x.numpy(), np.float16 if dtype == torch.float16 else np.float32)
    assert np.array_equal(y.numpy(), want)
    ref = lin(x.float()).detach()
    assert torch.linalg.norm(y.float() - ref) / torch.linalg.norm(ref) < 0.15


@pytest.mark.parametrize("cast", ["half", "bfloat16", "double"])
def test_dtype_casts_keep_the_float32_scales(cast):
    """model.half() / .to(torch.bfloat16) cast floating buffers; the LQQ
    channel scales stay float32 and bit-identical (the bias follows the cast,
    as nn.Linear's does)."""
    layer = lt.LQQLinear.from_linear(linear())
    s1 = layer.s1.clone()
    cast_layer = getattr(layer, cast)() if cast != "bfloat16" else layer.to(torch.bfloat16)
    assert cast_layer is layer
    assert layer.s1.dtype == torch.float32 and torch.equal(layer.s1, s1)
    assert layer.bias.dtype == {"half": torch.float16, "bfloat16": torch.bfloat16,
                                "double": torch.float64}[cast]
    assert layer.codes.dtype == torch.uint8
    for dtype in (torch.float16, torch.bfloat16, torch.float32):    # and it still runs
        x = torch.randn(3, 128).to(dtype)
        # the float32 result rounded once to the input's dtype (x.float() is exact)
        want = torch.from_numpy(expected(layer, x.float().numpy(), np.float32)).to(dtype)
        y = layer(x)
        assert y.dtype == dtype and torch.equal(y, want)


def test_gemm_takes_and_gives_bfloat16_cpu_tensors():
    """torch CPU bfloat16 in, out= and out_dtype (NumPy has no bfloat16: its
    bits travel as ml_dtypes' bfloat16)."""
    pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    w = lqq.quantize_weight(np.random.default_rng().standard_normal((48, 128)), 64)
    x = torch.randn(2, 3, 128, dtype=torch.bfloat16)
    x8, xs = lqq.quantize_activation(x.float().numpy().reshape(-1, 128))
    want = torch.from_numpy(reference.gemm(x8, xs, w, None, np.float32)).to(torch.bfloat16)
    y = lqq.gemm(x, w, out_dtype=torch.bfloat16)
    assert y.dtype == torch.bfloat16 and torch.equal(y.reshape(-1, 48), want)
    out = torch.full((2, 3, 48), float("nan"), dtype=torch.bfloat16)
    assert lqq.gemm(x, w, out=out) is out and torch.equal(out.reshape(-1, 48), want)


@pytest.mark.parametrize("bias", [False, True])
def test_bfloat16_input_comes_back_bfloat16_rounded_once(bias):
    """bf16 runs as float32 here (exact), its output rounded once to bf16: the
    bits a bf16 epilogue writes (torch rounds to nearest even, as cvt.rn)."""
    layer = lt.LQQLinear.from_linear(linear(bias=bias)).to(torch.bfloat16)
    x = torch.randn(3, 128, dtype=torch.bfloat16) * 3
    y = layer(x)
    assert y.dtype == torch.bfloat16 and y.shape == (3, 48)
    want = expected(layer, x.float().numpy(), np.float32)
    assert torch.equal(y, torch.from_numpy(want).to(torch.bfloat16))


def test_rejects_bad_input():
    layer = lt.LQQLinear.from_linear(linear())
    with pytest.raises(TypeError, match="float16"):
        layer(torch.zeros(2, 128, dtype=torch.int32))
    with pytest.raises(ValueError, match="K=128"):
        layer(torch.zeros(2, 64))


def test_state_dict_round_trip_and_repr():
    layer = lt.LQQLinear.from_linear(linear(), group_size=64, method="round")
    other = lt.LQQLinear(lqq.quantize_weight(np.zeros((48, 128), np.float32), 64), torch.zeros(48))
    other.load_state_dict(layer.state_dict())
    x = torch.randn(4, 128)
    assert torch.equal(layer(x), other(x))
    assert "group_size=64" in repr(layer)


def test_loading_new_weights_in_place_drops_the_cached_view():
    """load_state_dict copies into the buffers (same data pointers): the
    LQQWeight view, which carries the packed GPU copy, must be rebuilt, or a
    GPU forward would run the old weights."""
    layer = lt.LQQLinear.from_linear(linear(), group_size=64, method="round")
    other = lt.LQQLinear.from_linear(linear(), group_size=64, method="round")
    view = layer.lqq_weight()
    view._device_cache["packed"] = "stale"
    assert layer.lqq_weight() is view, "unchanged buffers keep the view"
    ptrs = [b.data_ptr() for b in (layer.codes, layer.s1)]
    layer.load_state_dict(other.state_dict())
    assert [b.data_ptr() for b in (layer.codes, layer.s1)] == ptrs, "copied in place"
    fresh = layer.lqq_weight()
    assert fresh is not view and fresh._device_cache == {}
    x = torch.randn(4, 128)
    assert torch.equal(layer(x), other(x))


def test_inference_mode_buffers():
    """Under torch.inference_mode the buffers are inference tensors, which
    count no versions: the view is keyed on addresses alone, and
    drop_cached_weight() forgets it."""
    with torch.inference_mode():
        layer = lt.LQQLinear.from_linear(linear(), group_size=64, method="round")
        x = torch.randn(3, 128)
        y = layer(x)
        assert y.shape == (3, 48) and layer.lqq_weight() is layer.lqq_weight()
        view = layer.lqq_weight()
        layer.drop_cached_weight()
        assert layer.lqq_weight() is not view and torch.equal(layer(x), y)


def test_replace_does_not_share_the_device_cache():
    import dataclasses
    w = lqq.quantize_weight(np.random.default_rng(0).standard_normal((8, 64)).astype(np.float32), 32)
    w._device_cache["packed"] = "for w's arrays"
    v = dataclasses.replace(w, codes=w.codes.copy())
    assert v._device_cache == {} and w._device_cache == {"packed": "for w's arrays"}


def test_quantize_model_reports_progress_on_a_terminal_only(monkeypatch, capsys):
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(3)])
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    lt.quantize_model(model, group_size=32)
    assert capsys.readouterr().err == ""             # not a terminal: no bar
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(3)])
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert lt.quantize_model(model, group_size=32) == ["0", "1", "2"]
    err = capsys.readouterr().err
    assert "3/3" in err and err.endswith("\n")
    model = torch.nn.Sequential(torch.nn.Linear(64, 64))
    lt.quantize_model(model, group_size=32, progress=False)
    assert capsys.readouterr().err == ""


def test_quantize_model_replaces_eligible_linears():
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(),
                                torch.nn.Sequential(torch.nn.Linear(96, 40), torch.nn.Linear(40, 8)),
                                torch.nn.Linear(8, 4))
    x = torch.randn(3, 64)
    before = model(x)
    seen = []
    names = lt.quantize_model(model, group_size=32, skip=lambda n, m: n == "2.0",
                              progress=lambda *a: seen.append(a))
    assert names == ["0"], names          # 2.0 skipped; K = 40 and 8 are not multiples of 32
    assert seen == [(1, 1, "0")]          # one report per replaced layer, of the eligible total
    assert isinstance(model[0], lt.LQQLinear) and type(model[2][0]) is torch.nn.Linear
    after = model(x)
    assert after.shape == before.shape
    assert torch.linalg.norm(after - before) / torch.linalg.norm(before) < 0.2
