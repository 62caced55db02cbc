"""The LQQ format: encoders against SPEC, the overflow invariant, packing and
the kernel's bit-level dequantization, save/load."""
import os
import zipfile

import numpy as np
import pytest

import lqq
from lqq import encoders, packing
from lqq.format import LQQWeight

METHODS = ["round", "paper", "search"]


def all_pairs():
    lo, hi = np.meshgrid(np.arange(1, 256), np.arange(1, 256), indexing="ij")
    keep = lo <= hi
    return lo[keep], hi[keep]


def assert_every_code_fits(s2, z):
    s2 = np.asarray(s2, np.int64).reshape(-1, 1)
    z = np.asarray(z, np.int64).reshape(-1, 1)
    u = np.arange(16)[None, :] * s2 + z          # every 4-bit code of every group
    assert u.min() >= 0 and u.max() <= 255
    assert s2.min() >= 1 and s2.max() <= 17


@pytest.mark.parametrize("params", [encoders.round_params, encoders.paper_params])
def test_invariant_exhaustive_round_paper(params):
    lo, hi = all_pairs()
    s2, z = params(np, lo, hi)
    assert_every_code_fits(s2, z)
    # the chosen step covers the group: the top value is reachable within s2 / 2
    top = np.minimum(np.rint((hi - z) / s2), 15) * s2 + z
    assert np.all(np.abs(top - hi) <= np.maximum(s2 / 2, hi - (z + 15 * s2)))


@pytest.mark.parametrize("method", METHODS)
def test_invariant_exhaustive_through_encoder(method):
    """Every (lo, hi) pair of level-1 values in [1, 255] as a real group: an
    anchor group pins s1 = 1 (the row holds +-127), the second group spans
    [lo, hi] with random values between."""
    rng = np.random.default_rng()
    lo, hi = all_pairs()
    R = len(lo)
    anchor = np.tile(np.r_[127.0, -127.0, np.zeros(30)], (R, 1))
    inner = lo[:, None] + rng.random((R, 32)) * (hi - lo)[:, None]
    inner[:, 0], inner[:, 1] = lo, hi
    W = np.concatenate([anchor, inner - 128], axis=1).astype(np.float32)
    w = lqq.quantize_weight(W, group_size=32, method=method)
    assert_every_code_fits(w.s2, w.z)
    assert np.array_equal(w.int8()[:, :32].astype(np.float32) * w.s1[:, None],
                          w.s1[:, None] * w.int8()[:, :32])  # finite, no wrap
    W8 = w.int8().astype(np.int64)
    assert W8.min() >= -128 and W8.max() <= 127


def transcribe_round(W, G, level=127, paper=False):
    """SPEC section 1 written out row by row, group by group (float32 ops)."""
    W = W.astype(np.float32)
    N, K = W.shape
    s1 = np.empty(N, np.float32)
    s2 = np.empty((N, K // G), np.int64)
    z = np.empty((N, K // G), np.int64)
    Q = np.empty((N, K), np.int64)
    for n in range(N):
        amax = np.float32(np.max(np.abs(W[n])))
        s1[n] = np.float32(1) if amax == 0 else amax / np.float32(level)
        W8 = np.clip(np.rint(W[n] / s1[n]), -level, level)
        U = W8.astype(np.int64) + 128
        for g in range(K // G):
            u = U[g * G:(g + 1) * G]
            lo, hi = int(u.min()), int(u.max())
            st = max(1, -(-(hi - lo) // 15))
            if paper:
                st = min(st, 16)
            zz = min(lo, 255 - 15 * st)
            s2[n, g], z[n, g] = st, zz
            Q[n, g * G:(g + 1) * G] = np.clip(np.rint((u - zz) / st), 0, 15)
    return s1, s2, z, Q


@pytest.mark.parametrize("method,level", [("round", 127), ("paper", 119)])
@pytest.mark.parametrize("G", [32, 64, 128])
def test_round_paper_equal_spec_transcription(method, level, G):
    rng = np.random.default_rng()
    W = rng.standard_normal((7, 256)) * rng.uniform(0.01, 3, (7, 1))
    W[3] = 0                                        # a zero row: s1 = 1, all-zero codes
    W[5, :G] = 0                                    # a zero group
    w = lqq.quantize_weight(W, group_size=G, method=method)
    s1, s2, z, Q = transcribe_round(W, G, level, paper=(method == "paper"))
    assert np.array_equal(w.s1, s1)
    assert np.array_equal(w.s2, s2)
    assert np.array_equal(w.z, z)
    assert np.array_equal(w.unpacked_codes(), Q)
    assert np.all(w.unpacked_codes()[3] == 0) and w.s1[3] == 1
    assert np.all(w.int8()[3] == 0)


def heavy_tailed(rng, shape):
    return rng.standard_t(5, size=shape)


def structured(rng, shape):
    """Transformer-like: per-row and per-column scale spread, a few 4x outlier
    input channels, a low-rank component."""
    N, K = shape
    base = rng.standard_normal(shape) * rng.lognormal(0, 0.5, (N, 1)) * rng.lognormal(0, 0.3, (1, K))
    base[:, rng.choice(K, 8, replace=False)] *= 4
    return base + 0.5 * rng.standard_normal((N, 4)) @ rng.standard_normal((4, K))


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("make", [lambda r, s: r.standard_normal(s), heavy_tailed, structured],
                         ids=["normal", "student_t5", "structured"])
@pytest.mark.parametrize("G", [64, 128])
def test_search_beats_float_rtn_int4(make, G):
    """SPEC section 7's 0.95x target is about the error one expects on such
    weights, so the errors are pooled over four fresh matrices: on a single
    128 x 4096 "structured" draw the ratio is 0.927 +- 0.005 and about one draw
    in 200 lands above 0.95 (a matrix-wide effect: which columns are outliers)."""
    rng = np.random.default_rng()
    Ws = [make(rng, (128, 4096)).astype(np.float32) for _ in range(4)]
    def pooled(encode):
        return float(np.sqrt(sum(np.linalg.norm(encode(W) - W) ** 2 for W in Ws)
                             / sum(np.linalg.norm(W) ** 2 for W in Ws)))
    errs = {m: pooled(lambda W: lqq.dequantize(lqq.quantize_weight(W, G, m))) for m in METHODS}
    rtn = pooled(lambda W: encoders.rtn_int4_float(W, G))
    assert errs["search"] <= 0.95 * rtn, (errs, rtn)
    assert errs["search"] < errs["round"] and errs["search"] < errs["paper"]


@pytest.mark.parametrize("df", [3, 5])
def test_search_reaches_the_format_optimum(df):
    """Against every legal (s2, z) of every group: the search loses under 1%
    of error to the exhaustive optimum (so where it misses the RTN target, as on
    Student-t with 3 degrees of freedom, no LQQ encoder with s1 = max|W|/127
    could meet it)."""
    seed = int(np.random.SeedSequence().entropy % 2**32)    # printed on failure: reproducible
    rng = np.random.default_rng(seed)
    W = rng.standard_t(df, size=(16, 2048)).astype(np.float32)
    best = np.sqrt(encoders.exhaustive_group_error(W, 64).sum())
    got = np.linalg.norm(lqq.dequantize(lqq.quantize_weight(W, 64)) - W)
    assert best <= got <= 1.01 * best, f"seed {seed}: search {got!r}, optimum {best!r}, ratio {got / best!r}"


def test_search_covers_a_lone_outlier_group():
    """Seed 1339 (Student-t, 3 degrees of freedom) holds a group of values
    near 0 and one far out: its optimum (s2 = 14, z = 44: levels on 128 and
    254) lies outside the z-window search; the zero-point candidates reach it
    (the whole matrix went from 1.018x the optimum to within 1%)."""
    W = np.random.default_rng(1339).standard_t(3, size=(16, 2048)).astype(np.float32)
    w = lqq.quantize_weight(W, 64)
    assert (int(w.s2[1, 2]), int(w.z[1, 2])) == (14, 44)
    best = np.sqrt(encoders.exhaustive_group_error(W, 64).sum())
    assert np.linalg.norm(lqq.dequantize(w) - W) <= 1.01 * best


def test_search_is_deterministic_and_chunking_invariant():
    rng = np.random.default_rng()
    W = rng.standard_normal((67, 256)).astype(np.float32)
    a = encoders.encode_search(np, W, 64)
    b = encoders.encode_search(np, W, 64, rows_per_chunk=5)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


# ------------------------------------------------------------ packing + dequant

def test_dequant_emulation_adversarial_exhaustive():
    """Every legal (s2, z), every code in every lane, next to lanes holding
    other codes: the one 32-bit IMAD + XOR gives Q * s2 + z - 128 per lane, with
    no carry between lanes."""
    s2s, zs = [], []
    for s2 in range(1, 18):
        for z in range(0, 256 - 15 * s2):
            s2s.append(s2)
            zs.append(z)
    s2 = np.array(s2s, np.uint32)[:, None]
    z = np.array(zs, np.uint32)[:, None]
    lanes = np.array([[q, 15, 0, q] for q in range(16)] + [[15, 15, 15, 15], [0, 15, 0, 15],
                                                             [15, 0, 15, 0], [7, 8, 9, 10]],
                     np.uint32)
    q4 = (lanes[:, 0] | lanes[:, 1] << 8 | lanes[:, 2] << 16 | lanes[:, 3] << 24)[None, :]
    got = packing.word_lanes_int8(packing.dequant_word_emulated(q4, s2, z))
    want = lanes[None, :, :].astype(np.int64) * s2[..., None] + z[..., None] - 128
    assert np.array_equal(got, want)


def test_dequant_emulation_random_words():
    rng = np.random.default_rng()
    words = rng.integers(0, 2**32, 100000, dtype=np.uint64).astype(np.uint32)
    s2 = rng.integers(1, 18, words.shape)
    z = np.array([rng.integers(0, 256 - 15 * s) for s in s2])
    for shift in (0, 4):
        q4 = (words >> shift) & 0x0F0F0F0F
        got = packing.word_lanes_int8(packing.dequant_word_emulated(q4, s2, z))
        codes = packing.word_lanes_int8(q4).astype(np.int64)
        assert np.array_equal(got, codes * s2[:, None] + z[:, None] - 128)


@pytest.mark.parametrize("N,K,G", [(64, 128, 64), (100, 96, 32), (130, 192, 192), (64, 512, 256)])
def test_packed_layout_dequantizes_to_w8(N, K, G):
    """Emulate every thread of every block: its four words, split by the one AND
    and the shift + AND, dequantized with its rows' (s2, z), land exactly on
    W8' at the positions the layout promises (HOPPER.md fragment layout)."""
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((N, K)), G, "round")
    p = packing.pack(w)
    assert np.array_equal(packing.unpack_codes(p), w.unpacked_codes())
    W8 = np.zeros((p.n_pad, p.k_pad), np.int64)
    W8[:N, :K] = w.int8()
    meta = p.meta.transpose(0, 2, 1).reshape(p.n_pad, -1)
    t = np.arange(128)
    wp, g, c = t // 32, (t % 32) // 4, t % 4
    for nb in range(p.n_pad // 64):
        for kb in range(p.k_pad // 64):
            words = packing.thread_words(p, nb, kb)
            for word in range(4):
                ks, h = divmod(word, 2)
                row = 64 * nb + 16 * wp + g + 8 * h
                for half in (0, 1):
                    k0 = 64 * kb + 32 * ks + 16 * half + 4 * c
                    m = meta[row, k0 // G].astype(np.uint32)
                    q4 = (words[:, word] >> (4 * half)) & 0x0F0F0F0F
                    got = packing.word_lanes_int8(packing.dequant_word_emulated(q4, m & 0xFF, m >> 8))
                    want = W8[row[:, None], k0[:, None] + np.arange(4)[None, :]]
                    assert np.array_equal(got, want), (nb, kb, word, half)


# ------------------------------------------------------------ save / load

def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((96, 256)), 128, "paper")
    path = tmp_path / "w.lqq"
    w.save(path)
    v = lqq.load(path)
    for name in ("codes", "s2", "z", "s1"):
        assert np.array_equal(getattr(v, name), getattr(w, name))
    assert (v.shape, v.group_size, v.method) == (w.shape, w.group_size, w.method)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def _rewrite(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            zout.writestr(item, edit(item, data))


def test_load_refuses_corrupt_or_foreign_files(tmp_path):
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((64, 128)), 64, "round")
    good = tmp_path / "good.lqq"
    w.save(good)
    cases = {
        "flipped": lambda n, d: d[:-1] + bytes([d[-1] ^ 1]) if n == "codes.npy" else d,
        "version": lambda n, d: d.replace(b'"format_version": 1', b'"format_version": 9')
        if n == "meta.json" else d,
        "foreign": lambda n, d: d.replace(b'"lqq-weight"', b'"other"') if n == "meta.json" else d,
        "header": lambda n, d: b"{not json" if n == "meta.json" else d,
    }
    messages = {"flipped": "checksum", "version": "version 9", "foreign": "not an LQQ",
                "header": "header"}
    for case, edit in cases.items():
        bad = tmp_path / f"{case}.lqq"
        _rewrite(good, bad, edit)
        with pytest.raises(ValueError, match=messages[case]):
            lqq.load(bad)
    trunc = tmp_path / "trunc.lqq"
    trunc.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ValueError):
        lqq.load(trunc)
    junk = tmp_path / "junk.lqq"
    junk.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not an LQQ"):
        lqq.load(junk)


def test_load_refuses_invariant_violation_with_valid_checksums(tmp_path):
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((64, 128)), 64, "round")
    w.z[0, 0], w.s2[0, 0] = 250, 17
    with pytest.raises(ValueError, match="invariant"):
        w.save(tmp_path / "x.lqq")
    assert not list(tmp_path.iterdir()), "nothing written on failure"


def test_dequantize_matches_formula():
    rng = np.random.default_rng()
    W = rng.standard_normal((64, 128)).astype(np.float32)
    w = lqq.quantize_weight(W, 32)
    Q = w.unpacked_codes().astype(np.int64).reshape(64, 4, 32)
    want = w.s1[:, None] * (Q * w.s2[..., None] + w.z[..., None] - 128).reshape(64, 128).astype(np.float32)
    assert np.array_equal(lqq.dequantize(w), want.astype(np.float32))
    assert isinstance(w, LQQWeight) and w.int8().dtype == np.int8
