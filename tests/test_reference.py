"""The NumPy reference GEMM and activation quantization: exact integers, the
SPEC epilogue, batch flattening, and every bad input refused."""
import numpy as np
import pytest

import lqq
from lqq import reference

M_SWEEP = [1, 2, 3, 17, 100, 257]


def independent_acc(x8, w):
    """int64 accumulation written without the reference's float64 trick."""
    return np.einsum("mk,nk->mn", x8.astype(np.int64), w.int8().astype(np.int64))


def independent_act(X):
    X = X.astype(np.float32)
    xs = np.empty(X.shape[0], np.float32)
    x8 = np.empty(X.shape, np.int8)
    for m in range(X.shape[0]):
        amax = np.float32(np.abs(X[m]).max())
        xs[m] = np.float32(1) if amax == 0 else amax / np.float32(127)
        x8[m] = np.clip(np.rint(X[m] / xs[m]), -127, 127)
    return x8, xs


@pytest.mark.parametrize("M", M_SWEEP)
@pytest.mark.parametrize("method", ["round", "search"])
def test_accumulators_exact(M, method):
    rng = np.random.default_rng()
    N, K = 96, 320
    w = lqq.quantize_weight(rng.standard_normal((N, K)), 32, method)
    X = rng.standard_normal((M, K)).astype(np.float16)
    x8, xs = lqq.quantize_activation(X)
    acc = lqq.gemm((x8, xs), w, out_dtype=np.int32)
    assert acc.dtype == np.int32
    assert np.array_equal(acc, independent_acc(x8, w))
    assert np.array_equal(lqq.gemm(X, w, out_dtype="int32"), acc)


def test_extreme_accumulators_fit_int32():
    """The largest |acc| the format allows (+-127 x -128 over K = 65536)."""
    K = 65536
    x8 = np.full((2, K), -127, np.int8)
    x8[1] = 127
    w8 = np.full((1, K), -128, np.int8)
    acc = reference.accumulate(x8, w8)
    assert acc[0, 0] == 127 * 128 * K and acc[1, 0] == -127 * 128 * K


@pytest.mark.parametrize("out_dtype", [np.float16, np.float32])
def test_epilogue_matches_spec(out_dtype):
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((64, 256)), 64)
    X = rng.standard_normal((17, 256)).astype(np.float32) * 3
    bias = rng.standard_normal(64).astype(np.float16)
    y = lqq.gemm(X, w, bias=bias, out_dtype=out_dtype)
    x8, xs = independent_act(X)
    acc = independent_acc(x8, w)
    want = np.empty((17, 64), np.float32)
    for m in range(17):
        for n in range(64):
            s = np.float32(xs[m] * w.s1[n])
            want[m, n] = np.float32(s * np.float32(acc[m, n])) + np.float32(bias[n])
    assert y.dtype == out_dtype
    assert np.array_equal(y, want.astype(out_dtype))


def rne_bfloat16_bits(y32: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even, written out here (no
    NaNs in these tests): the rounding the kernels' cvt.rn.bf16.f32 does."""
    bits = y32.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def test_bfloat16_output_is_the_float32_result_rounded_once():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((48, 256)), 64)
    X = rng.standard_normal((17, 256)).astype(np.float32) * 3
    bias = rng.standard_normal(48).astype(ml_dtypes.bfloat16)
    y32 = lqq.gemm(X, w, bias=bias.astype(np.float32), out_dtype=np.float32)
    for spelling in ("bfloat16", ml_dtypes.bfloat16, np.dtype(ml_dtypes.bfloat16)):
        y = lqq.gemm(X, w, bias=bias, out_dtype=spelling)
        assert y.dtype.name == "bfloat16"
        assert np.array_equal(y.view(np.uint16), rne_bfloat16_bits(y32))
    out = np.zeros((17, 48), ml_dtypes.bfloat16)           # its dtype is the output's
    assert lqq.gemm(X, w, out=out) is out
    assert np.array_equal(out.view(np.uint16),
                          rne_bfloat16_bits(lqq.gemm(X, w, out_dtype=np.float32)))


def test_bfloat16_output_without_ml_dtypes_says_what_to_install(monkeypatch):
    import sys
    gemm_module = sys.modules["lqq.gemm"]          # lqq.gemm is also the function's name
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)      # import fails
    monkeypatch.setattr(gemm_module, "_out_dtypes", {})
    w = lqq.quantize_weight(np.random.default_rng().standard_normal((32, 64)), 32)
    with pytest.raises(TypeError, match="pip install ml-dtypes"):
        lqq.gemm(np.zeros((2, 64), np.float32), w, out_dtype="bfloat16")


def test_bfloat16_inputs_with_nan_or_inf_are_refused():
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    w = lqq.quantize_weight(np.random.default_rng().standard_normal((32, 64)), 32)
    for bad in (np.nan, np.inf, -np.inf):
        X = np.ones((3, 64), np.float32)
        X[1, 5] = bad
        with pytest.raises(ValueError, match="1 NaN or Inf"):
            lqq.gemm(X.astype(ml_dtypes.bfloat16), w)
    assert lqq.gemm(np.full((3, 64), 1e30, np.float32).astype(ml_dtypes.bfloat16), w,
                    out_dtype=np.float32).shape == (3, 32)


def test_quantize_activation_matches_spec():
    rng = np.random.default_rng()
    X = rng.standard_normal((9, 128)).astype(np.float16)
    X[4] = 0
    x8, xs = lqq.quantize_activation(X)
    r8, rs = independent_act(X)
    assert np.array_equal(x8, r8) and np.array_equal(xs, rs)
    assert xs[4] == 1 and not x8[4].any()
    assert np.abs(x8).max() == 127


def test_batch_dims_flatten_and_pair_path():
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((40, 64)), 32)
    X = rng.standard_normal((2, 3, 64)).astype(np.float32)
    y = lqq.gemm(X, w)
    assert y.shape == (2, 3, 40) and y.dtype == np.float16
    xq, xs = lqq.quantize_activation(X)
    assert xq.shape == (2, 3, 64) and xs.shape == (2, 3)
    assert np.array_equal(lqq.gemm((xq, xs), w), y)
    assert np.array_equal(lqq.gemm(X.reshape(6, 64), w), y.reshape(6, 40))


def test_out_argument_is_written():
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((32, 64)), 64)
    X = rng.standard_normal((5, 64)).astype(np.float32)
    out = np.full((5, 32), np.nan, np.float32)
    y = lqq.gemm(X, w, out=out)
    assert y is out and np.array_equal(out, lqq.gemm(X, w, out_dtype=np.float32))


def test_output_close_to_float_math():
    rng = np.random.default_rng()
    W = rng.standard_normal((256, 1024)).astype(np.float32)
    X = rng.standard_normal((33, 1024)).astype(np.float32)
    y = lqq.gemm(X, lqq.quantize_weight(W)).astype(np.float32)
    ref = X @ W.T
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.1


# ------------------------------------------------------------ bad inputs

@pytest.fixture(scope="module")
def w64():
    return lqq.quantize_weight(np.random.default_rng().standard_normal((32, 64)), 32)


@pytest.mark.parametrize("W,kw,exc,match", [
    (np.full((4, 64), np.nan), {}, ValueError, "NaN or Inf"),
    (np.r_[np.zeros((3, 64)), np.full((1, 64), np.inf)], {}, ValueError, "NaN or Inf"),
    (np.zeros(64), {}, ValueError, "2-D"),
    (np.zeros((4, 64), np.int32), {}, TypeError, "float"),
    (np.zeros((4, 96)), {"group_size": 64}, ValueError, "not divisible"),
    (np.zeros((4, 64)), {"group_size": 48}, ValueError, "not supported"),
    (np.zeros((4, 64)), {"group_size": 64.0}, TypeError, "int"),
    (np.zeros((4, 40)), {"group_size": 40}, ValueError, "multiple of 32"),
    (np.zeros((4, 64)), {"method": "best"}, ValueError, "method"),
    (np.zeros((0, 64)), {}, ValueError, "non-empty"),
])
def test_quantize_weight_rejects(W, kw, exc, match):
    with pytest.raises(exc, match=match):
        lqq.quantize_weight(W, **kw)


def test_per_channel_group_is_k():
    w = lqq.quantize_weight(np.random.default_rng().standard_normal((8, 96)), 96)
    assert w.s2.shape == (8, 1)


@pytest.mark.parametrize("make_args,exc,match", [
    (lambda w: (np.zeros((3, 65), np.float32), w), ValueError, "K=64"),
    (lambda w: (np.full((3, 64), np.inf, np.float32), w), ValueError, "NaN or Inf"),
    (lambda w: (np.zeros((3, 64), np.int32), w), TypeError, "float16"),
    (lambda w: ((np.zeros((3, 64), np.int16), np.ones(3, np.float32)), w), TypeError, "int8"),
    (lambda w: ((np.zeros((3, 64), np.int8), np.ones(3, np.float64)), w), TypeError, "float32"),
    (lambda w: ((np.zeros((3, 64), np.int8), np.ones(4, np.float32)), w), ValueError, "one scale"),
    (lambda w: ((np.zeros((3, 64), np.int8), np.full(3, np.nan, np.float32)), w), ValueError, "NaN"),
    (lambda w: ((np.zeros((3, 64), np.int8),), w), TypeError, "pair"),
    (lambda w: (np.zeros((3, 64), np.float32), "weights"), TypeError, "LQQWeight"),
])
def test_gemm_rejects(w64, make_args, exc, match):
    x, w = make_args(w64)
    with pytest.raises(exc, match=match):
        lqq.gemm(x, w)


def test_gemm_rejects_bad_bias_out_dtype(w64):
    x = np.zeros((3, 64), np.float32)
    with pytest.raises(ValueError, match="bias"):
        lqq.gemm(x, w64, bias=np.zeros(31, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        lqq.gemm(x, w64, bias=np.full(32, np.nan, np.float32))
    with pytest.raises(TypeError, match="out_dtype"):
        lqq.gemm(x, w64, out_dtype=np.float64)
    out = np.full((3, 31), 7, np.float16)
    with pytest.raises(ValueError, match="out is"):
        lqq.gemm(x, w64, out=out)
    assert np.all(out == 7), "nothing written on failure"


def test_activation_rejects():
    with pytest.raises(TypeError, match="float"):
        lqq.quantize_activation(np.zeros((2, 8), np.int8))
    with pytest.raises(ValueError, match="NaN"):
        lqq.quantize_activation(np.array([[1.0, np.nan]], np.float32))


def test_quantize_activation_out_argument():
    rng = np.random.default_rng()
    X = rng.standard_normal((2, 3, 64)).astype(np.float16)
    q, s = np.zeros((2, 3, 64), np.int8), np.zeros((2, 3), np.float32)
    res = lqq.quantize_activation(X, out=(q, s))
    assert res[0] is q and res[1] is s
    rq, rs = lqq.quantize_activation(X)
    assert np.array_equal(q, rq) and np.array_equal(s, rs)
    with pytest.raises(ValueError, match="xs"):
        lqq.quantize_activation(X, out=(q, np.zeros(6, np.float32)))
    with pytest.raises(TypeError, match="pair"):
        lqq.quantize_activation(X, out=q)


def test_the_quantizers_reciprocal_rule_gives_the_reference_codes():
    """act_quant.j2's rule, in NumPy float32 (no -ftz, as NVRTC compiles it):
    multiply by rn(1/s), keep rint where the product lies at least 0.001 from
    a half-integer, else divide; the codes equal rint(fl(x / s)) clamped, for
    every finite fp16 x up to 200 row maxima (normal and subnormal, a power
    of two among them), every bf16 x up to 20, and NaN / inf; the margin is
    needed (with none, a multiply alone is wrong)."""
    f32 = np.float32
    rng = np.random.default_rng(7)

    def rule(x, s, margin):
        with np.errstate(all="ignore"):
            y = x * (f32(1) / s)
            n = np.rint(y)
            q = np.where(np.abs(y - n) < f32(0.5 - margin), n, x / s)
            return np.clip(np.nan_to_num(np.rint(q), nan=0.0), -127, 127)

    def reference(x, s):
        with np.errstate(all="ignore"):
            return np.clip(np.nan_to_num(np.rint(x / s), nan=0.0), -127, 127)

    halves = np.arange(0x7c00, dtype=np.uint16).view(np.float16).astype(f32)
    bhalves = (np.arange(0x7f80, dtype=np.uint32) << 16).view(f32)
    wrong_without_margin = 0
    for values, count in ((halves, 200), (bhalves, 20)):
        tops = np.concatenate([rng.choice(values[1:], count - 1), [f32(127 / 32)]])
        for top in tops:
            x = values[values <= top]
            x = np.concatenate([x, -x, [np.nan, np.inf, -np.inf]]).astype(f32)
            s = f32(top) / f32(127)
            assert np.array_equal(rule(x, s, f32(0.001)), reference(x, s)), top
            wrong_without_margin += int((rule(x, s, f32(0)) != reference(x, s)).sum())
    assert wrong_without_margin > 0
