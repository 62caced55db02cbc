"""GPU kernels against the exact NumPy reference (marker `gpu`; skipped, with
the reason, where there is no CUDA GPU). Fresh random inputs every run,
outputs poisoned before each launch, every element compared."""
import os

import numpy as np
import pytest

import lqq
from lqq import _xp, configs, reference

cp = _xp.cupy_or_none()


def _gpu_reason():
    if cp is None:
        return "CuPy is not installed"
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as e:
        return f"no usable CUDA device ({type(e).__name__})"
    return None


REASON = _gpu_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"GPU: {REASON}")]

M_SWEEP = [1, 2, 3, 8, 17, 64, 100, 257, 1024]


def make_weight(rng, N, K, G, method="round"):
    W = rng.standard_normal((N, K)).astype(np.float32)
    return lqq.quantize_weight(W, G, method)


def poisoned(shape, dtype):
    out = cp.empty(shape, dtype)
    if np.dtype(dtype) == np.int32:
        out.fill(-(2 ** 31))
    else:
        out.fill(np.nan)
    return out


def check(rng, M, w, wg, out_dtype=np.float16, bias=None):
    X = (rng.standard_normal((M, w.K)) * rng.uniform(0.1, 4)).astype(np.float16)
    x8, xs = lqq.quantize_activation(X)
    want = reference.gemm(x8, xs, w, bias, out_dtype)
    out = poisoned((M, w.N), out_dtype)
    got = lqq.gemm(cp.asarray(X), wg, bias=None if bias is None else cp.asarray(bias), out=out)
    got = cp.asnumpy(got)
    if np.dtype(out_dtype) == np.int32:
        assert np.array_equal(got, want)
    else:
        assert not np.isnan(got).any(), "unwritten outputs"
        assert np.array_equal(got, want), np.argwhere(got != want)[:5]


@pytest.mark.parametrize("M", M_SWEEP)
def test_accumulators_exact_over_m(M):
    rng = np.random.default_rng()
    w = make_weight(rng, 200, 512, 64)
    check(rng, M, w, w.to_gpu(), np.int32)
    check(rng, M, w, w.to_gpu(), np.float16)


@pytest.mark.parametrize("N,K,G,method", [
    (64, 128, 32, "round"), (100, 256, 64, "paper"), (130, 384, 128, "search"),
    (96, 512, 256, "round"), (72, 192, 192, "search"), (4096, 4096, 64, "search"),
    (257, 28672, 128, "round")])
@pytest.mark.parametrize("M", [1, 17, 100])
def test_shapes_groups_encoders(N, K, G, method, M):
    rng = np.random.default_rng()
    w = make_weight(rng, N, K, G, method)
    check(rng, M, w, w.to_gpu(), np.int32)


@pytest.mark.parametrize("out_dtype,bias_dtype", [(np.float16, None), (np.float16, np.float16),
                                                   (np.float32, np.float32), (np.float32, None)])
def test_epilogue_bit_exact(out_dtype, bias_dtype):
    rng = np.random.default_rng()
    w = make_weight(rng, 192, 256, 32)
    bias = None if bias_dtype is None else rng.standard_normal(192).astype(bias_dtype)
    for M in (1, 33):
        check(rng, M, w, w.to_gpu(), out_dtype, bias)


def _bfloat16_or_skip():
    """ml_dtypes' bfloat16 where CuPy here can make arrays of it, else skip."""
    ml_dtypes = pytest.importorskip("ml_dtypes", reason="ml_dtypes is not installed")
    try:
        cp.empty(1, ml_dtypes.bfloat16)
    except Exception as e:  # noqa: BLE001 - CuPy builds without a bfloat16 dtype
        pytest.skip(f"this CuPy cannot hold bfloat16 arrays ({type(e).__name__}: {e})")
    return np.dtype(ml_dtypes.bfloat16)


@pytest.mark.parametrize("force", [None, "mma_bm32_rb1_s1", "decode_bm8_rb1_pf4_s2",
                                   "wgmma_bn8_st8_c5", "wgmma_bn128_st6_c3"])
def test_bfloat16_in_and_out_bit_exact(monkeypatch, force):
    """bfloat16 activations, bias and outputs straight through the kernels
    (the fp16 epilogue paths, pairs and staging, do not take bf16; the
    element-wise one does): equal to the reference rounded once to bf16."""
    bf16 = _bfloat16_or_skip()
    if force and force.startswith("wgmma") and cp.cuda.Device().compute_capability != "90":
        pytest.skip("the Hopper kernels need sm_90")
    if force:
        monkeypatch.setenv("LQQ_FORCE_CONFIG", force)
    rng = np.random.default_rng()
    w = make_weight(rng, 200, 512, 64)
    wg = w.to_gpu()
    for M in (1, 17, 100):
        Xb = (rng.standard_normal((M, w.K)) * 3).astype(np.float32).astype(bf16)
        bias = rng.standard_normal(w.N).astype(np.float32).astype(bf16)
        x8, xs = lqq.quantize_activation(Xb.astype(np.float32))   # the same values, exactly
        want = reference.gemm(x8, xs, w, bias.astype(np.float32), bf16)
        out = cp.empty((M, w.N), bf16)
        out.view(cp.uint16).fill(0x7FC0)                            # NaN: unwritten shows
        xg = cp.asarray(Xb.view(np.uint16)).view(bf16)
        bg = cp.asarray(bias.view(np.uint16)).view(bf16)
        assert lqq.gemm(xg, wg, bias=bg, out=out) is out
        got = cp.asnumpy(out.view(cp.uint16))
        assert np.array_equal(got, want.view(np.uint16)), np.argwhere(got != want.view(np.uint16))[:5]


def forced_name(cfg, splits):
    if isinstance(cfg, configs.DecodeConfig):
        return f"decode_bm{cfg.BM}_rb{cfg.RB}_pf{cfg.PF}_s{splits}"
    return f"mma_bm{cfg.BM}_rb{cfg.RB}_s{splits}"


@pytest.mark.parametrize("cfg", configs.MMA_CONFIGS + configs.DECODE_CONFIGS,
                         ids=lambda c: c.name)
@pytest.mark.parametrize("splits", [1, 3])
def test_every_config_and_split(monkeypatch, cfg, splits):
    rng = np.random.default_rng()
    monkeypatch.setenv("LQQ_FORCE_CONFIG", forced_name(cfg, splits))
    w = make_weight(rng, 200, 1024, 64)
    wg = w.to_gpu()
    for M in (1, cfg.BM - 1, cfg.BM + 3):
        check(rng, M, w, wg, np.int32)


def test_repeatable_with_split_k():
    rng = np.random.default_rng()
    w = make_weight(rng, 4096, 4096, 64).to_gpu()
    x = cp.asarray(rng.standard_normal((3, 4096)).astype(np.float16))
    first = lqq.gemm(x, w, out_dtype=np.int32)
    for _ in range(20):
        assert cp.array_equal(lqq.gemm(x, w, out_dtype=np.int32), first)


@pytest.mark.parametrize("M,K", [(37, 1000), (3, 1001), (1, 28672), (5, 4100), (2, 40000),
                                 (configs.ACT_WIDE_MAX_ROWS + 88, 1000),
                                 (configs.ACT_WIDE_MAX_ROWS + 8, 20000),
                                 (configs.ACT_WIDE_MAX_ROWS + 8, 12000),
                                 (configs.ACT_WIDE_MAX_ROWS + 8, 33000)])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("misaligned", [None, "x", "out"])
def test_activation_quantization_matches_reference(M, K, dtype, misaligned):
    """Rows go 16 bytes per access when K and the pointers allow it (K = 1000,
    28672; 4100 only for float32), one element at a time otherwise (K = 1001,
    x or the codes starting off a 16-byte boundary): the same codes either way.
    Few rows (M <= 512) go to the wide kernel, which holds a row in registers
    when it fits and reads it twice when not (K = 40000, float32 K = 28672);
    many rows to the two-pass one (K = 1000, 33000; float32 K = 20000) or, for
    rows of 32-64 KB, the long-row one (float16 K = 20000, float32 12000)."""
    rng = np.random.default_rng()
    X = (rng.standard_normal((M, K)) * 3).astype(dtype)
    X[M // 2] = 0
    xg = cp.asarray(X)
    if misaligned == "x":                          # a view 1 element past an aligned base
        flat = cp.empty(M * K + 1, dtype)
        xg = flat[1:].reshape(M, K)
        xg[...] = cp.asarray(X)
    out = None
    if misaligned == "out":
        out = (cp.full(M * K + 1, 99, cp.int8)[1:].reshape(M, K), cp.full(M, np.nan, cp.float32))
    xq, xs = lqq.quantize_activation(xg, out=out)
    rq, rs = lqq.quantize_activation(X)
    assert np.array_equal(cp.asnumpy(xq), rq) and np.array_equal(cp.asnumpy(xs), rs)


def _format_values(kind: str, top: float) -> np.ndarray:
    """Every finite non-negative value of f16 / bf16 up to top, as float32."""
    if kind == "f16":
        v = np.arange(0x7c00, dtype=np.uint16).view(np.float16).astype(np.float32)
    else:
        v = (np.arange(0x7f80, dtype=np.uint32) << 16).view(np.float32)
    return v[v <= top]


def _multiply_alone_wrong(X: np.ndarray) -> int:
    """How many of X's codes a quantizer that only multiplies by the rounded
    reciprocal of the row's scale would get wrong (what the division fixes)."""
    s = np.abs(X).max(axis=1, keepdims=True) / np.float32(127)
    inv = np.float32(1) / s
    return int((np.rint(X * inv) != np.rint(X / s)).sum())


def _hard_rows(kind: str, rng, rows: int, K: int) -> np.ndarray:
    """rows x K float32 values exact in `kind` whose quotients by their row's
    scale are half-integers (ties) or lie next to them, where the quantizers'
    reciprocal shortcut hands over to the division. Row 0 has the scale 2^-5
    (its max 127/32), so its ties are exact; the others a max drawn from
    [1, 4) (a scale no power of two), redrawn until multiplying alone by the
    reciprocal gets some of their codes wrong. 16-bit kinds: the format's
    values up to the max, drawn at random; f32: quotients k + 0.5 and the
    two floats either side of each."""
    X = np.empty((rows, K), np.float32)
    if kind != "f32":
        values = _format_values(kind, 4)
    for r in range(rows):
        for _ in range(1000):
            if kind == "f32":
                top = np.float32(127 / 32) if r == 0 else np.float32(rng.uniform(1, 4))
                s = np.float64(top / np.float32(127))
                mid = ((rng.integers(0, 127, K) + 0.5) * s).astype(np.float32)
                step = rng.integers(-2, 3, K)
                for _ in range(2):
                    mid = np.where(step > 0, np.nextafter(mid, np.float32(np.inf)), mid)
                    mid = np.where(step < 0, np.nextafter(mid, np.float32(0)), mid)
                    step = step - np.sign(step)
                row = np.minimum(mid, top)
            else:
                top = np.float32(127 / 32) if r == 0 else rng.choice(values[values >= 1])
                row = rng.choice(values[values <= top], K)
            row = row * rng.choice(np.float32([-1, 1]), K)
            row[0] = top
            if r == 0 or _multiply_alone_wrong(row[None]) > 0:
                break
        X[r] = row
    return X


def _seeded():
    seed = int(np.random.default_rng().integers(2**32))
    return seed, np.random.default_rng(seed)


@pytest.mark.parametrize("kind", ["f16", "bf16", "f32"])
def test_activation_quantization_near_half_integers(kind):
    """Codes of values whose quotients sit on and beside half-integers (the
    quantizer multiplies by the reciprocal and divides only there): equal to
    the reference's IEEE quotients, rounded, in both the vector and the
    element-wise paths; multiplying alone would get some of them wrong."""
    seed, rng = _seeded()
    for K in (4096, 1001):
        X = np.concatenate([_hard_rows(kind, rng, 4, K), np.zeros((1, K), np.float32)])
        q = np.abs(X[0] * 32)
        assert (q - np.floor(q) == 0.5).any(), f"exact ties in the input (seed {seed})"
        assert _multiply_alone_wrong(X[1:4]) > 0, f"the division's cases in the input (seed {seed})"
        if kind == "bf16":
            xg = cp.asarray(X.view(np.uint32) >> 16).astype(cp.uint16).view(_bfloat16_or_skip())
        else:
            xg = cp.asarray(X.astype(np.float16 if kind == "f16" else np.float32))
        xq, xs = lqq.quantize_activation(xg)
        rq, rs = lqq.quantize_activation(X)         # the 16-bit values are exact in float32
        assert np.array_equal(cp.asnumpy(xs), rs), f"seed {seed}"
        assert np.array_equal(cp.asnumpy(xq), rq), (f"seed {seed}", np.argwhere(cp.asnumpy(xq) != rq)[:5])


@pytest.mark.parametrize("method", ["round", "paper", "search"])
def test_quantize_weight_on_gpu_is_bit_identical(method):
    rng = np.random.default_rng()
    W = rng.standard_normal((130, 512)).astype(np.float32)
    a, b = lqq.quantize_weight(W, 64, method), lqq.quantize_weight(cp.asarray(W), 64, method)
    assert b.on_gpu
    for name in ("codes", "s2", "z", "s1"):
        assert np.array_equal(getattr(a, name), cp.asnumpy(getattr(b, name))), name


def test_gpu_rejects_mixed_sides_and_nan():
    rng = np.random.default_rng()
    w = make_weight(rng, 64, 128, 64)
    with pytest.raises(TypeError, match="to_gpu"):
        lqq.gemm(cp.zeros((2, 128), cp.float16), w)
    x = cp.zeros((2, 128), cp.float16)
    x[1, 3] = np.nan
    out = cp.full((2, 64), 7, cp.float16)
    with pytest.raises(ValueError, match="NaN"):
        lqq.gemm(x, w.to_gpu(), out=out)
    assert bool((out == 7).all()), "nothing written on failure"


def test_torch_interop_no_copy_on_current_stream():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng()
    w = make_weight(rng, 256, 512, 64)
    wg = w.to_gpu()
    X = rng.standard_normal((5, 512)).astype(np.float16)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xt = torch.from_numpy(X).cuda()
        out = torch.full((5, 256), float("nan"), dtype=torch.float16, device="cuda")
        y = lqq.gemm(xt, wg, out=out)
        assert y is out
        y2 = lqq.gemm(xt, wg)
    s.synchronize()
    assert isinstance(y2, torch.Tensor) and y2.is_cuda and y2.dtype == torch.float16
    x8, xs = lqq.quantize_activation(X)
    want = reference.gemm(x8, xs, w)
    assert np.array_equal(out.cpu().numpy(), want) and np.array_equal(y2.cpu().numpy(), want)
    # the CuPy view shares torch's memory
    assert cp.from_dlpack(out).data.ptr == out.data_ptr()


def test_env_force_config_rejects_nonsense(monkeypatch):
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "bm7_rb1")
    w = make_weight(np.random.default_rng(), 64, 128, 64).to_gpu()
    with pytest.raises(ValueError, match="LQQ_FORCE_CONFIG"):
        lqq.gemm(cp.zeros((1, 128), cp.float16), w)
    assert os.environ["LQQ_FORCE_CONFIG"] == "bm7_rb1"


def _captured_gemm(rng, M):
    """A 4096 x 1024 weight and lqq.gemm of a float16 [M, 1024] input into a
    poisoned output, warmed up and captured in a CUDA graph on a new stream:
    (w, its GPU copy, x, out, stream, graph)."""
    w = make_weight(rng, 4096, 1024, 64)
    wg = w.to_gpu()
    x = cp.empty((M, 1024), cp.float16)
    out = poisoned((M, 4096), np.float16)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        x[...] = cp.asarray(rng.standard_normal((M, 1024)).astype(np.float16))
        lqq.gemm(x, wg, out=out)
        stream.synchronize()
        stream.begin_capture()
        lqq.gemm(x, wg, out=out)
        graph = stream.end_capture()
    return w, wg, x, out, stream, graph


def _replay_is_exact(rng, w, x, out, stream, graph):
    """New inputs into the captured x, a poisoned out, one replay: exact."""
    with stream:
        X = rng.standard_normal(x.shape).astype(np.float16)
        x[...] = cp.asarray(X)
        out.fill(np.nan)
        graph.launch(stream)
        stream.synchronize()
    x8, xs = lqq.quantize_activation(X)
    assert np.array_equal(cp.asnumpy(out), reference.gemm(x8, xs, w))


@pytest.mark.parametrize("M", [1, 16, 100])
def test_cuda_graph_capture_and_replay(M):
    """After a warm-up on the capturing stream, lqq.gemm (float input, so
    activation quantization too; split-K scratch) allocates and synchronizes
    nothing, so it can be captured; replays with new inputs are exact."""
    rng = np.random.default_rng()
    w, wg, x, out, stream, graph = _captured_gemm(rng, M)
    for _ in range(2):
        _replay_is_exact(rng, w, x, out, stream, graph)


def test_graph_survives_scratch_growth():
    """A graph captured at a small shape still replays exactly after a larger
    shape on the same stream grew the scratch (the old buffers stay alive)."""
    rng = np.random.default_rng()
    w, wg, x, out, stream, graph = _captured_gemm(rng, 3)
    with stream:
        big = cp.asarray(rng.standard_normal((700, 1024)).astype(np.float16))
        lqq.gemm(big, wg)                              # grows x8, xs, partial scratch
        cp.zeros(64 << 20, cp.uint8)                   # and the pool may hand memory out again
    _replay_is_exact(rng, w, x, out, stream, graph)


@pytest.mark.parametrize("M", [1, 16, 40, 257])
@pytest.mark.parametrize("pdl", ["1", "0"])
def test_dependent_launches_see_the_previous_kernels_output(monkeypatch, M, pdl):
    """With programmatic dependent launch (sm_90) a kernel may start while the
    previous one ends. The second GEMM quantizes the first one's output, which
    was poisoned just before, with no synchronization in between: it must see
    the finished values, eagerly and replayed from a CUDA graph. (M = 1, 40
    and 257 run the Hopper GEMM, launched with PDL; 16 is forced onto the
    mma.sync decode kernel, which autotune may still pick on Hopper, so a
    chain mixes it with PDL launches.)"""
    from lqq import launch
    monkeypatch.setenv("LQQ_PDL", pdl)
    if M == 16:
        monkeypatch.setenv("LQQ_FORCE_CONFIG", "decode_bm16_rb1_pf4_s8")
    assert launch.pdl_active() == (pdl == "1" and _is_sm90()), "PDL is what this test is about"
    rng = np.random.default_rng()
    K1, N1, N2 = 4096, 2048, 1024
    w1, w2 = make_weight(rng, N1, K1, 64), make_weight(rng, N2, N1, 64)
    g1, g2 = w1.to_gpu(), w2.to_gpu()
    x = cp.empty((M, K1), cp.float16)
    y1, y2 = cp.empty((M, N1), cp.float16), cp.empty((M, N2), cp.float16)

    def chain():
        y1.fill(60000)                                  # a stale read would change y2
        y2.fill(np.nan)
        lqq.gemm(x, g1, out=y1, check_finite=False)
        lqq.gemm(y1, g2, out=y2, check_finite=False)

    def expect(X):
        x8, xs = lqq.quantize_activation(X)
        y8, ys = lqq.quantize_activation(reference.gemm(x8, xs, w1))
        return reference.gemm(y8, ys, w2)

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        X = (rng.standard_normal((M, K1)) * 0.05).astype(np.float16)
        x[...] = cp.asarray(X)
        chain()
        assert np.array_equal(cp.asnumpy(y2), expect(X))
        stream.begin_capture()
        chain()
        graph = stream.end_capture()
        for _ in range(2):
            X = (rng.standard_normal((M, K1)) * 0.05).astype(np.float16)
            x[...] = cp.asarray(X)
            graph.launch(stream)
            assert np.array_equal(cp.asnumpy(y2), expect(X))


def _spin(stream, cycles=10 ** 9):
    """Queue about half a second (10^9 SM cycles) of one thread spinning on
    `stream`: work queued behind it there is still pending when the host
    goes on."""
    kernel = cp.RawKernel(r"""
extern "C" __global__ void lqq_test_spin(long long cycles) {
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) { }
}""", "lqq_test_spin")
    with stream:
        kernel((1,), (1,), (np.int64(cycles),))


def _packed_behind_spin(rng, M):
    """A 4096 x 2048 weight packed on a stream of its own behind _spin (its
    packing kernels queued after half a second of work); made before that: an
    [M, 2048] float16 input X, on the GPU as x and quantized as (xq, xs) (and
    on the host as x8, x8s), and two poisoned outputs. Returns a namespace
    with those, the weight w, its GPU copy wg and the packing stream."""
    import types

    from lqq import gpu_gemm
    c = types.SimpleNamespace(w=make_weight(rng, 4096, 2048, 64))
    c.wg = c.w.to_gpu()
    c.X = rng.standard_normal((M, 2048)).astype(np.float16)
    c.x8, c.x8s = lqq.quantize_activation(c.X)
    c.x, c.xq, c.xs = cp.asarray(c.X), cp.asarray(c.x8), cp.asarray(c.x8s)
    c.out, c.out2 = poisoned((M, 4096), np.float16), poisoned((M, 4096), np.float16)
    cp.cuda.Device().synchronize()
    c.packer = cp.cuda.Stream(non_blocking=True)
    _spin(c.packer)
    with c.packer:
        gpu_gemm.packed(c.wg)
    return c


@pytest.mark.parametrize("M", [1, 40])
def test_gemm_on_another_stream_after_the_packing(monkeypatch, M):
    """lqq packs a weight on its first GEMM, on the stream current then, and
    the host waits for it there: a GEMM on another stream (another thread's,
    or stream=) right after, the Hopper kernel's first launch with PDL (it
    reads weights before its grid wait) included, reads finished arrays. On
    Hopper, M = 1 is forced onto a grid of five CTAs of the Hopper kernel."""
    if M == 1 and _is_sm90():
        monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn8_st8_c5")
    c = _packed_behind_spin(np.random.default_rng(), M)
    assert c.packer.done, "packed() returned before its packing kernels ran"
    user = cp.cuda.Stream(non_blocking=True)
    lqq.gemm(c.x, c.wg, out=c.out, stream=user, check_finite=False)
    lqq.gemm(c.x, c.wg, out=c.out2, stream=user, check_finite=False)
    user.synchronize()
    want = reference.gemm(c.x8, c.x8s, c.w)
    assert np.array_equal(cp.asnumpy(c.out), want) and np.array_equal(cp.asnumpy(c.out2), want)


def test_capture_on_a_stream_that_never_ran_the_weight(monkeypatch):
    """A GEMM captured on a stream that never ran this weight, right after it
    was packed elsewhere, replays exactly. The launch is set up on another
    stream first and the plan needs no scratch (quantized input, one CTA per
    tile), so the capture allocates nothing."""
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn64_st4_s1" if _is_sm90() else "mma_bm32_rb1")
    c = _packed_behind_spin(np.random.default_rng(), 40)
    other, capturing = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    lqq.gemm((c.xq, c.xs), c.wg, out=c.out2, stream=other, check_finite=False)
    with capturing:
        capturing.begin_capture()
        lqq.gemm((c.xq, c.xs), c.wg, out=c.out, stream=capturing, check_finite=False)
        graph = capturing.end_capture()
    graph.launch(capturing)
    capturing.synchronize()
    other.synchronize()
    want = reference.gemm(c.x8, c.x8s, c.w)
    assert np.array_equal(cp.asnumpy(c.out), want) and np.array_equal(cp.asnumpy(c.out2), want)


def test_launch_setup_follows_forced_config_and_streams(monkeypatch):
    """The per-shape launch setup is memoized on the weight: switching
    LQQ_FORCE_CONFIG between calls, or the stream, must still run the plan
    asked for, exactly (stream-K partial sums come from the stream's scratch)."""
    rng = np.random.default_rng()
    w = make_weight(rng, 300, 2048, 64)
    wg = w.to_gpu()
    plans = ["mma_bm32_rb1_s3", "decode_bm8_rb1_pf4_s2", None]
    if _is_sm90():
        plans += ["wgmma_bn64_st4_c5", "wgmma_bn128_st6_s1", "wgmma_bn64_st4_c7"]
    for force in plans + plans[::-1]:
        if force is None:
            monkeypatch.delenv("LQQ_FORCE_CONFIG", raising=False)
        else:
            monkeypatch.setenv("LQQ_FORCE_CONFIG", force)
        for stream in (cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)):
            with stream:
                check(rng, 33, w, wg, np.int32)
    from lqq import gpu_gemm
    memo = gpu_gemm.packed(wg).launches
    assert len(memo) >= len(set(plans)), "one launch record per plan"


def test_bfloat16_activations_quantize_like_their_float32_values():
    """The bf16 input path (vectorized and element-wise) gives the codes of the
    same values in float32, which the test above holds to the reference."""
    torch = pytest.importorskip("torch")
    try:
        cp.from_dlpack(torch.zeros(1, device="cuda", dtype=torch.bfloat16))
    except Exception as e:  # noqa: BLE001 - CuPy builds without a bfloat16 dtype
        pytest.skip(f"this CuPy cannot hold bfloat16 arrays ({type(e).__name__}: {e})")
    for M, K in ((5, 4096), (3, 1001)):
        xb = (torch.randn(M, K, device="cuda") * 3).to(torch.bfloat16)
        qb, sb = lqq.quantize_activation(xb)
        qf, sf = lqq.quantize_activation(xb.float())
        assert torch.equal(qb, qf) and torch.equal(sb, sf)


@pytest.mark.parametrize("bias", [False, True])
def test_torch_bfloat16_layer_on_the_gpu_equals_the_cpu(bias):
    """LQQLinear in bfloat16 (a .to(torch.bfloat16) model): the GPU path (bf16
    straight through where CuPy holds bf16, else float32) gives the CPU
    path's bits; float16 input through the same layer too."""
    torch = pytest.importorskip("torch")
    import lqq.torch as lt
    lin = torch.nn.Linear(256, 200, bias=bias)
    layer = lt.LQQLinear.from_linear(lin, group_size=64).to(torch.bfloat16)
    gpu = lt.LQQLinear.from_linear(lin, group_size=64).to("cuda", torch.bfloat16)
    for dtype in (torch.bfloat16, torch.float16):
        x = (torch.randn(2, 9, 256) * 3).to(dtype)
        want = layer(x)
        got = gpu(x.cuda())
        assert got.dtype == dtype and torch.equal(got.cpu(), want)


def test_torch_cuda_graph_capture():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng()
    w = make_weight(rng, 512, 256, 64)
    wg = w.to_gpu()
    x = torch.empty((3, 256), dtype=torch.float16, device="cuda")
    out = torch.empty((3, 512), dtype=torch.float16, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        x.copy_(torch.randn(3, 256))
        lqq.gemm(x, wg, out=out)
    s.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        lqq.gemm(x, wg, out=out)
    X = rng.standard_normal((3, 256)).astype(np.float16)
    x.copy_(torch.from_numpy(X))
    out.fill_(float("nan"))
    g.replay()
    torch.cuda.synchronize()
    x8, xs = lqq.quantize_activation(X)
    assert np.array_equal(out.cpu().numpy(), reference.gemm(x8, xs, w))


def test_torch_linear_wrapper_on_gpu():
    torch = pytest.importorskip("torch")
    import lqq.torch as lt
    lin = torch.nn.Linear(256, 200).cuda().half()
    layer = lt.LQQLinear.from_linear(lin, group_size=64)
    assert layer.codes.is_cuda
    x = torch.randn(7, 256, device="cuda", dtype=torch.float16)
    y = layer(x)
    assert y.is_cuda and y.dtype == torch.float16 and y.shape == (7, 200)
    w = layer.lqq_weight().to_cpu()
    x8, xs = lqq.quantize_activation(x.cpu().numpy())
    want = reference.gemm(x8, xs, w, layer.bias.cpu().numpy())
    assert np.array_equal(y.cpu().numpy(), want)
    cpu = layer.to("cpu")                 # buffers move; the weight view follows
    assert np.array_equal(cpu(x.cpu()).numpy(), want)


def _is_sm90():
    return REASON is None and cp.cuda.Device().compute_capability == "90"


STREAM_K_CONFIGS = [c for c in configs.WGMMA_CONFIGS if not c.KS]
CLUSTER_CONFIGS = [c for c in configs.WGMMA_CONFIGS if c.KS]


@pytest.mark.skipif(REASON is not None or not _is_sm90(), reason="needs an sm_90 (Hopper) GPU")
@pytest.mark.parametrize("cfg", STREAM_K_CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("N,K,G,grid", [(200, 512, 64, "s1"), (130, 192, 32, "c5"),
                                        (4096, 1024, 128, "s3"), (256, 768, 256, "c1"),
                                        (192, 512, 512, "c100000"), (300, 2048, 64, "c7"),
                                        (100, 64, 64, "s1")])
def test_wgmma_kernel_exact(monkeypatch, cfg, N, K, G, grid):
    """Every Hopper config on one CTA per tile, K split per tile (s3), and
    stream-K grids from one CTA for everything (c1) to one unit per CTA."""
    rng = np.random.default_rng()
    monkeypatch.setenv("LQQ_FORCE_CONFIG", f"wgmma_{cfg.tag}_{grid}")
    w = make_weight(rng, N, K, G, "search")
    wg = w.to_gpu()
    # BN + 37 and 2 BN + 5: a last token tile that starts before its own
    # first token (lqq_token0), its overlap stored by two tiles
    for M in (1, 17, cfg.BN, cfg.BN + 37, 2 * cfg.BN + 5):
        check(rng, M, w, wg, np.int32)
    check(rng, 100, w, wg, np.float16)


@pytest.mark.skipif(REASON is not None or not _is_sm90(), reason="needs an sm_90 (Hopper) GPU")
@pytest.mark.parametrize("cfg", CLUSTER_CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("N,K,G", [(200, 512, 64), (130, 1024, 32), (4096, 1024, 128),
                                   (300, 2048, 64), (192, 4096, 256), (64, 4096, 4096)])
def test_wgmma_cluster_split_exact(monkeypatch, cfg, N, K, G):
    """Split-K inside clusters (KS CTAs per tile, partial sums through
    distributed shared memory, each CTA storing its share): exact int32 and
    fp16 on ragged M and N, and the same bits on a second run."""
    rng = np.random.default_rng()
    monkeypatch.setenv("LQQ_FORCE_CONFIG", f"wgmma_{cfg.tag}")
    w = make_weight(rng, N, K, G, "search")
    wg = w.to_gpu()
    for M in (1, 17, cfg.BN, cfg.BN + 37, 2 * cfg.BN + 5):
        check(rng, M, w, wg, np.int32)
    check(rng, 100, w, wg, np.float16)
    X = rng.standard_normal((cfg.BN + 3, K)).astype(np.float16)
    first = cp.asnumpy(lqq.gemm(cp.asarray(X), wg, out_dtype=np.int32))
    for _ in range(3):
        assert np.array_equal(cp.asnumpy(lqq.gemm(cp.asarray(X), wg, out_dtype=np.int32)), first)


@pytest.mark.skipif(REASON is not None or not _is_sm90(), reason="needs an sm_90 (Hopper) GPU")
@pytest.mark.parametrize("cfg", configs.WGMMA_CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("N", [200, 196])
def test_wgmma_epilogue_paths(monkeypatch, cfg, N):
    """fp16 outputs with and without bias through each epilogue path: the
    staging buffer (N a multiple of 8, 16-byte aligned output), the paired
    4-byte stores (N = 196, or an output 4 but not 16 bytes aligned), ragged M."""
    rng = np.random.default_rng()
    monkeypatch.setenv("LQQ_FORCE_CONFIG", f"wgmma_{cfg.tag}_c3")
    w = make_weight(rng, N, 512 if cfg.KS else 384, 64, "search")    # KS: k-blocks split evenly
    wg = w.to_gpu()
    bias = rng.standard_normal(N).astype(np.float16)
    for M in (3, cfg.BN + 37):
        check(rng, M, w, wg, np.float16)
        check(rng, M, w, wg, np.float16, bias)
        X = rng.standard_normal((M, w.K)).astype(np.float16)
        x8, xs = lqq.quantize_activation(X)
        flat = cp.full(M * N + 2, np.nan, np.float16)
        out = flat[2:].reshape(M, N)                  # 4-byte, not 16-byte, aligned
        lqq.gemm(cp.asarray(X), wg, bias=cp.asarray(bias), out=out)
        assert np.array_equal(cp.asnumpy(out), reference.gemm(x8, xs, w, bias, np.float16))
        assert cp.isnan(flat[:2]).all()


@pytest.mark.skipif(REASON is not None or not _is_sm90(), reason="needs an sm_90 (Hopper) GPU")
@pytest.mark.parametrize("kind", ["f16", "bf16"])
@pytest.mark.parametrize("M,N,K,ref", [(1, 4096, 4096, True), (5, 4096, 4160, True),
                                       (12, 16384, 2048, True), (8, 28672, 4096, False),
                                       (16, 57344, 2048, False)])
def test_fused_decode_quantization_bit_exact(monkeypatch, kind, M, N, K, ref):
    """fp16/bf16 decode input quantized inside the Hopper kernel (each fused
    tile: bn8, bn16, two CTAs of three, one CTA of four; K past the last
    128-wide block; a zero row): the int32 accumulators and the fp16 outputs
    equal the unfused path's (a quantizer kernel first) and, where NumPy can
    afford it, the reference; identical over repeated launches."""
    if cp.cuda.Device().compute_capability != "90":
        pytest.skip("the Hopper kernels need sm_90")
    from lqq import gpu_gemm
    monkeypatch.delenv("LQQ_FORCE_CONFIG", raising=False)
    monkeypatch.setenv("LQQ_FUSED_QUANT", "1")
    rng = np.random.default_rng()
    X = (rng.standard_normal((M, K)) * rng.uniform(0.1, 4)).astype(np.float32)
    if M > 1:
        X[M - 1] = 0                                # an all-zero row: scale 1
    if kind == "bf16":
        bf16 = _bfloat16_or_skip()
        Xh = X.astype(bf16)
        xg = cp.asarray(Xh.view(np.uint16)).view(bf16)
    else:
        Xh = X.astype(np.float16)
        xg = cp.asarray(Xh)
    wg = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    plan = gpu_gemm.fused_plan(xg, gpu_gemm.choose(M, N, K, 64))
    assert plan is not None and plan.config.FX == kind, "the fused path is what runs"
    got = {}
    for fused in ("1", "1", "0"):
        monkeypatch.setenv("LQQ_FUSED_QUANT", fused)
        for dt in (np.int32, np.float16):
            out = poisoned((M, N), dt)
            y = cp.asnumpy(lqq.gemm(xg, wg, out=out))
            assert not (dt == np.float16 and np.isnan(y).any()), "unwritten outputs"
            if (fused, dt) in got:
                assert np.array_equal(y, got[fused, dt]), "a change between runs"
            got[fused, dt] = y
    for dt in (np.int32, np.float16):
        assert np.array_equal(got["1", dt], got["0", dt]), np.argwhere(got["1", dt] != got["0", dt])[:5]
    if ref:
        x8, xs = lqq.quantize_activation(Xh.astype(np.float32))    # the same values, exactly
        w = wg.to_cpu()
        assert np.array_equal(got["1", np.int32], reference.gemm(x8, xs, w, None, np.int32))
        assert np.array_equal(got["1", np.float16], reference.gemm(x8, xs, w, None, np.float16))


@pytest.mark.skipif(REASON is not None or not _is_sm90(), reason="needs an sm_90 (Hopper) GPU")
@pytest.mark.parametrize("kind", ["f16", "bf16"])
def test_fused_decode_near_half_integers(monkeypatch, kind):
    """The fused path's codes for quotients on and beside half-integers (where
    its converters divide; M x K = 24576, on the plain decode tile's fused
    variant): the reference's int32 accumulators, exactly."""
    from lqq import gpu_gemm
    monkeypatch.delenv("LQQ_FORCE_CONFIG", raising=False)
    monkeypatch.setenv("LQQ_FUSED_QUANT", "1")
    seed, rng = _seeded()
    M, N, K = 3, 4096, 8192
    X = _hard_rows(kind, rng, M, K)
    assert _multiply_alone_wrong(X[1:]) > 0, f"the division's cases in the input (seed {seed})"
    if kind == "bf16":
        xg = cp.asarray(X.view(np.uint32) >> 16).astype(cp.uint16).view(_bfloat16_or_skip())
    else:
        xg = cp.asarray(X.astype(np.float16))
    wg = lqq.quantize_weight(cp.asarray(rng.standard_normal((N, K), dtype=np.float32)), 64, "round")
    plan = gpu_gemm.fused_plan(xg, gpu_gemm.choose(M, N, K, 64))
    assert plan is not None and plan.config.FX == kind, "the fused path is what runs"
    got = cp.asnumpy(lqq.gemm(xg, wg, out=poisoned((M, N), np.int32)))
    x8, xs = lqq.quantize_activation(X)
    assert np.array_equal(got, reference.gemm(x8, xs, wg.to_cpu(), None, np.int32)), f"seed {seed}"


def test_fused_decode_with_out_in_the_input_s_bytes(monkeypatch):
    """out may share x's memory (lqq.gemm(x, w, out=view of x)): the fused path
    then steps aside, and the result is the reference's."""
    if cp.cuda.Device().compute_capability != "90":
        pytest.skip("the Hopper kernels need sm_90")
    monkeypatch.delenv("LQQ_FORCE_CONFIG", raising=False)
    monkeypatch.setenv("LQQ_FUSED_QUANT", "1")
    rng = np.random.default_rng()
    M, N, K = 2, 4096, 4096
    X = rng.standard_normal((M, K)).astype(np.float16)
    w = make_weight(rng, N, K, 64)
    x8, xs = lqq.quantize_activation(X)
    from lqq import gpu_gemm
    ran = []
    real = gpu_gemm._launch
    monkeypatch.setattr(gpu_gemm, "_launch", lambda w_, p, plan, *a: ran.append(plan) or real(w_, p, plan, *a))
    buf = cp.asarray(X)
    assert gpu_gemm.fused_plan(buf, gpu_gemm.choose(M, N, K, 64)) is not None, "fusable but for out"
    out = buf.reshape(-1)[:M * N].reshape(M, N)           # the same bytes as x
    lqq.gemm(buf, w.to_gpu(), out=out)
    assert np.array_equal(cp.asnumpy(out), reference.gemm(x8, xs, w, None, np.float16))
    assert ran and not ran[-1].config.FX, "the fused path stepped aside"


@pytest.mark.parametrize("M,N,K,G", [(1, 8192, 28672, 64), (16, 4096, 14336, 128),
                                     (300, 1024, 28672, 32), (1024, 6144, 4096, 64)])
def test_wgmma_heuristic_large_k_and_repeatable(M, N, K, G):
    """The default Hopper plans on long K (stream-K across tiles), bit-exact
    and identical over repeated launches (a change between runs is a race)."""
    _heuristic_exact_and_repeatable(M, N, K, G)


@pytest.mark.skipif(REASON is not None or not _is_sm90(), reason="needs an sm_90 (Hopper) GPU")
@pytest.mark.parametrize("M,N,K,G,tag", [
    (1, 512, 2048, 64, "bn8_st8"), (3, 4608, 3584, 64, "bn8_st8"), (16, 2048, 2048, 64, "bn64_st8_ks2"),
    (9, 3584, 3584, 128, "bn64_st8_ks2"), (40, 4096, 1024, 64, "bn64_st8_ks2"),
    (64, 512, 1792, 32, "bn64_st8_ks2"), (17, 2000, 2048, 64, "bn64_st8_ks2"),
    (16, 512, 3584, 64, "bn64_st4_ks4_c16"), (40, 1000, 4096, 128, "bn64_st4_ks4_c32"),
    (100, 512, 2048, 64, "bn64_st4_ks4_c32"), (129, 1024, 1024, 64, "bn64_st4_ks2_c48"),
    (257, 1024, 1024, 32, "bn128_st4_ks2_c48"), (200, 2048, 512, 64, "bn64_st4_c64"),
    (3, 4096, 1024, 64, "bn8_st8_c32"), (16, 14336, 1024, 64, "bn16_st8_c112"),
    (1, 16384, 2048, 64, "bn8_st8_c128"), (5, 28672, 4096, 64, "bn8_st8_wg4_c112"),
    (1, 12288, 4096, 128, "bn8_st8_wg4_c132"),
    (256, 28672, 4096, 64, "bn256_st4_c112")])
def test_wgmma_heuristic_small_layers_exact(M, N, K, G, tag):
    """The default plans of small layers (decode on the Hopper kernel,
    64-token tiles split between clusters of two or four on a few SMs, whole
    tiles at K <= 1024), of decode with one tile an SM or one CTA of four
    consumers an SM, and of 256-token tiles two a CTA: the plan is the one
    meant, bit-exact and repeatable."""
    sms = cp.cuda.Device().attributes["MultiProcessorCount"]
    p = configs.heuristic(M, N, K, sms, wgmma=True)
    tile, _, ctas = tag.partition("_c")
    assert p.config.tag == tile
    if ctas and sms == 132:
        assert p.grid[0] == int(ctas), "the grid meant"
    _heuristic_exact_and_repeatable(M, N, K, G)


def _heuristic_exact_and_repeatable(M, N, K, G):
    rng = np.random.default_rng()
    W = rng.standard_normal((N, K)).astype(np.float32)
    w = lqq.quantize_weight(W, G, "round")
    wg = w.to_gpu()
    X = rng.standard_normal((M, K)).astype(np.float16)
    x8, xs = lqq.quantize_activation(X)
    want = reference.gemm(x8, xs, w, None, np.int32)
    xg = cp.asarray(X)
    first = None
    for _ in range(3):
        out = poisoned((M, N), np.int32)
        got = cp.asnumpy(lqq.gemm(xg, wg, out=out))
        assert np.array_equal(got, want)
        first = got if first is None else first
        assert np.array_equal(got, first)
