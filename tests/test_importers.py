"""Checkpoint importers (lqq.importers): small checkpoints in each format are
built here by packers written from the formats' published packing rules (the
inverse of the importers' unpackers, written independently), then imported.
CPU only."""
import json
import struct
import sys

import numpy as np
import pytest

import lqq
from lqq import importers as I

try:
    import safetensors.numpy as stnp
except ImportError:
    stnp = None
needs_st = pytest.mark.skipif(stnp is None, reason="safetensors is not installed (pip install "
                              "safetensors): .safetensors file round trips skipped")

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]   # AutoAWQ: nibble i of a word holds column ORDER[i]
MAX_REL_ERR = 0.1


# ----------------------------------------------------------- source weights

def rtn_source(rng, N, K, G, zero_lo=0, zero_hi=15):
    """A realistic source layer: normal weights rounded to nearest by min-max
    asymmetric 4-bit groups of G along K. Returns the integers q [K, N] (0..15),
    zeros [ng, N], fp16 scales [ng, N] (the GPTQ/AWQ orientation)."""
    W = rng.standard_normal((K, N)).astype(np.float32)
    ng = K // G
    g = W.reshape(ng, G, N)
    mn, mx = g.min(axis=1), g.max(axis=1)
    scales = ((mx - mn) / 15).astype(np.float16)
    zeros = np.clip(np.rint(-mn / scales.astype(np.float32)), zero_lo, zero_hi).astype(np.int64)
    q = np.clip(np.rint(g / scales.astype(np.float32)[:, None, :]) + zeros[:, None, :], 0, 15)
    return q.reshape(K, N).astype(np.int64), zeros, scales


def reference(q_kn, zeros_gn, scales_gn, g_idx):
    """The formats' shared rule in float64, as [N, K]: (q - zero[g]) * scale[g]."""
    s = scales_gn.astype(np.float64)[g_idx]           # [K, N]
    W = (q_kn - zeros_gn[g_idx]) * s
    return W.T.astype(np.float32)


def words(fields, axis):
    """Pack 4-bit fields (ints 0..15) eight per int32, low bits first, along `axis`."""
    f = np.moveaxis(np.asarray(fields, dtype=np.uint64), axis, -1)
    pad = (-f.shape[-1]) % 8
    f = np.concatenate([f, np.zeros(f.shape[:-1] + (pad,), np.uint64)], axis=-1)
    f = f.reshape(f.shape[:-1] + (f.shape[-1] // 8, 8))
    w = np.zeros(f.shape[:-1], np.uint64)
    for j in range(8):
        w += f[..., j] << np.uint64(4 * j)
    return np.moveaxis(w.astype(np.uint32).view(np.int32), -1, axis)


# ----------------------------------------------------------- packers per format

def pack_awq(q, zeros, scales, prefix="layer"):
    K, N = q.shape
    qw = np.zeros((K, N // 8), np.uint32)
    qz = np.zeros((zeros.shape[0], N // 8), np.uint32)
    for i, col in enumerate(AWQ_ORDER):          # nibble i <- column 8c + ORDER[i]
        qw |= q[:, col::8].astype(np.uint32) << np.uint32(4 * i)
        qz |= zeros[:, col::8].astype(np.uint32) << np.uint32(4 * i)
    return {f"{prefix}.qweight": qw.view(np.int32), f"{prefix}.qzeros": qz.view(np.int32),
            f"{prefix}.scales": scales}


def pack_gptq(q, zeros, scales, g_idx=None, v2=False, prefix="layer"):
    stored = zeros if v2 else (zeros - 1) & 0xF     # v1 stores zero - 1
    t = {f"{prefix}.qweight": words(q, axis=0), f"{prefix}.qzeros": words(stored, axis=1),
         f"{prefix}.scales": scales}
    if g_idx is not None:
        t[f"{prefix}.g_idx"] = np.asarray(g_idx, np.int32)
    return t


def pack_ct(q_signed, scale, zp=None, g_idx=None, prefix="layer", zp_packed=True):
    """compressed-tensors pack-quantized from signed q [N, K] in -8..7."""
    N, K = q_signed.shape
    t = {f"{prefix}.weight_packed": words(q_signed + 8, axis=1),
         f"{prefix}.weight_scale": scale,
         f"{prefix}.weight_shape": np.array([N, K], np.int64)}
    if zp is not None:
        t[f"{prefix}.weight_zero_point"] = words(zp + 8, axis=0) if zp_packed else \
            zp.astype(np.int8)
    if g_idx is not None:
        t[f"{prefix}.weight_g_idx"] = np.asarray(g_idx, np.int32)
    return t


def ct_source(rng, N, K, G, symmetric):
    """A compressed-tensors layer in its own convention: signed q = clamp(
    round(W / s) + zp, -8, 7), W' = (q - zp) * s, scale [N, K/G]."""
    W = rng.standard_normal((N, K)).astype(np.float32)
    g = W.reshape(N, K // G, G)
    if symmetric:
        s = (np.abs(g).max(axis=2) / 7.5).astype(np.float16)
        zp = np.zeros(s.shape, np.int64)
    else:
        mn, mx = g.min(axis=2), g.max(axis=2)
        s = ((mx - mn) / 15).astype(np.float16)
        zp = np.clip(-8 - np.rint(mn / s.astype(np.float32)), -8, 7).astype(np.int64)
    q = np.clip(np.rint(g / s.astype(np.float32)[..., None]) + zp[..., None], -8, 7)
    return q.reshape(N, K).astype(np.int64), zp, s


def save(tmp_path, tensors, name="model.safetensors"):
    path = tmp_path / name
    stnp.save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


def check_import(tensors, fmt, want, prefix="layer", **meta):
    W = I.dequantize_source(tensors, prefix, fmt, **{k: v for k, v in meta.items()
                                                    if k != "group_size"})
    assert W.dtype == np.float32 and W.shape == want.shape
    assert np.array_equal(W, want), "source dequantization differs from the packing rule"
    w, rep = I.import_layer(tensors, prefix, fmt, **meta)
    lqq.format.validate(w)
    assert rep["source_format"] == I.convert._canonical(fmt)
    assert rep["shape"] == want.shape and w.shape == want.shape
    assert rep["rel_error_vs_source"] == pytest.approx(I.rel_error(lqq.dequantize(w), want))
    assert rep["rel_error_vs_source"] < MAX_REL_ERR
    print(f"\n{fmt}: {rep}")
    return w, rep


# ----------------------------------------------------------- AWQ

@pytest.mark.parametrize("G", [64, 128])
def test_awq_round_trip(G):
    rng = np.random.default_rng(G)
    N, K = 96, 256
    q, z, s = rtn_source(rng, N, K, G)
    t = pack_awq(q, z, s)
    want = reference(q, z, s, np.arange(K) // G)
    w, rep = check_import(t, "awq", want)
    assert rep["lqq_group_size"] == G and rep["source_group_size"] == G


def test_awq_nibble_order_is_interleaved():
    """One word per row, columns 0..7 with values 0..7: the word must read
    0x75316420 (nibble i holds column ORDER[i])."""
    q = np.tile(np.arange(8), (32, 1))
    t = pack_awq(q, np.zeros((1, 8), np.int64), np.ones((1, 8), np.float16))
    assert t["layer.qweight"][0, 0] == 0x75316420
    W = I.dequantize_awq(t, "layer")
    assert np.array_equal(W[:, 0], np.arange(8, dtype=np.float32))


# ----------------------------------------------------------- GPTQ

@pytest.mark.parametrize("G", [32, 128])
@pytest.mark.parametrize("fmt", ["gptq", "gptq_v2"])
def test_gptq_round_trip(fmt, G):
    rng = np.random.default_rng(G + len(fmt))
    N, K = 96, 256
    q, z, s = rtn_source(rng, N, K, G, zero_lo=1)
    g_idx = np.arange(K) // G
    t = pack_gptq(q, z, s, g_idx=g_idx, v2=fmt == "gptq_v2")
    w, rep = check_import(t, fmt, reference(q, z, s, g_idx))
    assert rep["lqq_group_size"] == G and not rep["act_order"]


def test_gptq_v1_and_v2_agree():
    rng = np.random.default_rng(1)
    q, z, s = rtn_source(rng, 64, 128, 64, zero_lo=1)   # v1 and v2 both hold zeros 1..15
    v1 = pack_gptq(q, z, s, v2=False)
    v2 = pack_gptq(q, z, s, v2=True)
    assert not np.array_equal(v1["layer.qzeros"], v2["layer.qzeros"])
    a, b = I.dequantize_gptq(v1, "layer"), I.dequantize_gptq(v2, "layer",
                                                             checkpoint_format="gptq_v2")
    assert np.array_equal(a, b)
    assert np.array_equal(a, I.dequantize_source(v2, "layer", "gptq",
                                                 checkpoint_format="gptq_v2"))
    with pytest.raises(ValueError, match="conflicts"):
        I.dequantize_source(v2, "layer", "gptq_v2", checkpoint_format="gptq")


def test_gptq_v1_nibble_15_is_zero_16():
    """v1 kernels add 1 to each stored nibble on its own: 0xF reads as zero 16."""
    q = np.full((32, 8), 15)
    z = np.full((1, 8), 16)
    t = pack_gptq(q, z, np.ones((1, 8), np.float16))
    assert (t["layer.qzeros"].view(np.uint32) == 0xFFFFFFFF).all()
    assert (I.dequantize_gptq(t, "layer") == -1).all()


def test_gptq_act_order():
    """A desc_act checkpoint: rows keep their order, g_idx names each row's
    (permuted) group. It must equal the contiguous checkpoint holding the same
    groups, up to that column permutation."""
    rng = np.random.default_rng(7)
    N, K, G = 64, 256, 64
    q, z, s = rtn_source(rng, N, K, G, zero_lo=1)
    contiguous = pack_gptq(q, z, s, g_idx=np.arange(K) // G)
    p = rng.permutation(K)                  # act-order row k holds contiguous row p[k]
    g_idx = p // G
    permuted = pack_gptq(q[p], z, s, g_idx=g_idx)
    Wc = I.dequantize_gptq(contiguous, "layer")
    Wp = I.dequantize_gptq(permuted, "layer")
    assert np.array_equal(Wp, Wc[:, p])
    w, rep = check_import(permuted, "gptq", reference(q[p], z, s, g_idx))
    assert rep["act_order"] and rep["source_group_size"] == G and rep["lqq_group_size"] == G
    assert w.group_size == G


def test_gptq_per_channel_and_missing_g_idx():
    rng = np.random.default_rng(3)
    N, K = 32, 512
    q, z, s = rtn_source(rng, N, K, K, zero_lo=1)
    t = pack_gptq(q, z, s)                   # no g_idx: groups from the scales' shape
    w, rep = check_import(t, "gptq", reference(q, z, s, np.zeros(K, np.int64)))
    assert rep["source_group_size"] == K and rep["lqq_group_size"] == K
    w, rep = I.import_layer(t, "layer", "gptq", group_size=64, source_group_size=-1)
    assert rep["lqq_group_size"] == 64


# ----------------------------------------------------------- compressed-tensors

@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("G", [32, 128])
def test_ct_round_trip(G, symmetric):
    rng = np.random.default_rng(G + symmetric)
    N, K = 100, 256                          # N not a multiple of 8: zero points padded
    q, zp, s = ct_source(rng, N, K, G, symmetric)
    t = pack_ct(q, s, None if symmetric else zp)
    want = reference(q.T, zp.T, s.T, np.arange(K) // G)
    w, rep = check_import(t, "compressed-tensors", want, symmetric=symmetric)
    assert rep["lqq_group_size"] == G


def test_ct_unpacked_zero_point_channel_and_g_idx():
    rng = np.random.default_rng(5)
    N, K, G = 48, 256, 64
    q, zp, s = ct_source(rng, N, K, G, symmetric=False)
    want = reference(q.T, zp.T, s.T, np.arange(K) // G)
    W = I.dequantize_compressed_tensors(pack_ct(q, s, zp, zp_packed=False), "layer")
    assert np.array_equal(W, want)
    # activation ordering: permuted columns with weight_g_idx
    p = rng.permutation(K)
    Wp = I.dequantize_compressed_tensors(pack_ct(q[:, p], s, zp, g_idx=p // G), "layer")
    assert np.array_equal(Wp, want[:, p])
    # channel strategy: one scale per row
    qc, zc, sc = ct_source(rng, N, K, K, symmetric=True)
    t = pack_ct(qc, sc)
    w, rep = check_import(t, "compressed_tensors", reference(qc.T, zc.T, sc.T,
                                                             np.zeros(K, np.int64)))
    assert rep["source_group_size"] == K


# ----------------------------------------------------------- .safetensors files

@needs_st
def test_safetensors_files(tmp_path):
    rng = np.random.default_rng(11)
    N, K, G = 64, 128, 64
    t = {}
    for i in (0, 2, 10):
        q, z, s = rtn_source(rng, N, K, G, zero_lo=1)
        t.update(pack_gptq(q, z, s, g_idx=np.arange(K) // G,
                           prefix=f"model.layers.{i}.mlp.down_proj"))
        if i == 10:
            want = reference(q, z, s, np.arange(K) // G)
    t["model.embed_tokens.weight"] = np.zeros((4, 4), np.float16)
    path = save(tmp_path, t)
    assert I.list_layers(path, "gptq") == [f"model.layers.{i}.mlp.down_proj" for i in (0, 2, 10)]
    assert I.list_layers(path, "compressed-tensors") == []
    w, rep = I.import_safetensors(path, "model.layers.10.mlp.down_proj.", "gptq")
    assert rep["path"] == str(path) and rep["rel_error_vs_source"] < MAX_REL_ERR
    w2, _ = I.import_layer(t, "model.layers.10.mlp.down_proj", "gptq")
    assert np.array_equal(w.codes, w2.codes) and np.array_equal(w.s1, w2.s1)
    assert np.array_equal(I.dequantize_gptq(I.read_tensors(path, "model.layers.10.mlp.down_proj"),
                                            "model.layers.10.mlp.down_proj"), want)
    with pytest.raises(ValueError, match="no tensors under prefix"):
        I.import_safetensors(path, "model.layers.3.mlp.down_proj", "gptq")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable .safetensors"):
        I.list_layers(bad, "gptq")


@needs_st
@pytest.mark.parametrize("fmt", ["awq", "compressed-tensors"])
def test_safetensors_round_trip_other_formats(tmp_path, fmt):
    rng = np.random.default_rng(2)
    N, K, G = 64, 256, 128
    if fmt == "awq":
        q, z, s = rtn_source(rng, N, K, G)
        t, want = pack_awq(q, z, s, prefix="m.q_proj"), reference(q, z, s, np.arange(K) // G)
    else:
        q, zp, s = ct_source(rng, N, K, G, symmetric=False)
        t, want = pack_ct(q, s, zp, prefix="m.q_proj"), \
            reference(q.T, zp.T, s.T, np.arange(K) // G)
    path = save(tmp_path, t)
    assert I.list_layers(path, fmt) == ["m.q_proj"]
    w, rep = I.import_safetensors(path, "m.q_proj", fmt)
    assert np.array_equal(I.dequantize_source(I.read_tensors(path, "m.q_proj"), "m.q_proj", fmt),
                          want)
    assert rep["rel_error_vs_source"] < MAX_REL_ERR
    print(f"\n{fmt} (file): {rep}")


def write_safetensors_by_hand(path, arrays):
    """A .safetensors file written from the format's layout (8-byte length,
    JSON header, raw data), so that BF16 (which NumPy lacks) can be stored:
    arrays maps name -> (dtype tag, shape, raw bytes)."""
    header, blobs, off = {}, [], 0
    for name, (tag, shape, raw) in arrays.items():
        header[name] = {"dtype": tag, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


@needs_st
def test_bfloat16_scales(tmp_path):
    rng = np.random.default_rng(4)
    N, K, G = 32, 128, 32
    q, zp, _ = ct_source(rng, N, K, G, symmetric=True)
    s32 = (rng.random((N, K // G)) * 0.1 + 0.01).astype(np.float32)
    bf16 = (s32.view(np.uint32) >> 16).astype(np.uint16)       # truncate to bfloat16
    s = (bf16.astype(np.uint32) << 16).view(np.float32)          # its exact value
    t = pack_ct(q, s, prefix="x")
    arrays = {k: ("I32" if v.dtype == np.int32 else "I64", v.shape, v.tobytes())
              for k, v in t.items() if k != "x.weight_scale"}
    arrays["x.weight_scale"] = ("BF16", bf16.shape, bf16.tobytes())
    path = tmp_path / "bf16.safetensors"
    write_safetensors_by_hand(path, arrays)
    got = I.read_tensors(path, "x")
    assert got["x.weight_scale"].dtype == np.float32 and np.array_equal(got["x.weight_scale"], s)
    w, rep = I.import_safetensors(path, "x", "compressed-tensors")
    assert np.array_equal(I.dequantize_compressed_tensors(got, "x"),
                          reference(q.T, zp.T, s.T, np.arange(K) // G))
    assert rep["rel_error_vs_source"] < MAX_REL_ERR


def test_missing_safetensors_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "safetensors", None)   # import now fails
    with pytest.raises(ImportError, match="pip install safetensors"):
        I.import_safetensors(tmp_path / "x.safetensors", "layer", "gptq")


# ----------------------------------------------------------- refusals

@pytest.fixture
def good():
    rng = np.random.default_rng(9)
    q, z, s = rtn_source(rng, 32, 128, 64, zero_lo=1)
    return {"awq": pack_awq(q, z, s), "gptq": pack_gptq(q, z, s, g_idx=np.arange(128) // 64),
            "ct": pack_ct(q.T - 8, s.T.copy(), z.T - 8)}


def edited(t, **changes):
    t = dict(t)
    for k, v in changes.items():
        if v is None:
            del t["layer." + k]
        else:
            t["layer." + k] = v
    return t


@pytest.mark.parametrize("fmt, tensors, meta, match", [
    ("awq", lambda g: edited(g["awq"], qzeros=None), {}, r"'layer.qzeros' is missing.*qweight"),
    ("gptq", lambda g: edited(g["gptq"], scales=None), {}, r"'layer.scales' is missing"),
    ("compressed-tensors", lambda g: edited(g["ct"], weight_shape=None), {}, "weight_shape"),
    ("gptq", lambda g: edited(g["gptq"], qweight=g["gptq"]["layer.qweight"].astype(np.int64)),
     {}, r"qweight has dtype int64, expected one of \['int32', 'uint32'\]"),
    ("awq", lambda g: edited(g["awq"], scales=g["awq"]["layer.scales"].astype(np.int32)), {},
     "scales has dtype int32"),
    ("gptq", lambda g: edited(g["gptq"], scales=g["gptq"]["layer.scales"][:, :16]), {},
     r"qweight has shape \(16, 32\), expected \(16, 16\)"),
    ("awq", lambda g: edited(g["awq"], qzeros=g["awq"]["layer.qzeros"][:1]), {},
     r"qzeros has shape \(1, 4\), expected \(2, 4\)"),
    ("gptq", lambda g: edited(g["gptq"], g_idx=np.arange(64, dtype=np.int32)), {},
     "g_idx has shape"),
    ("gptq", lambda g: edited(g["gptq"], g_idx=np.full(128, 5, np.int32)), {},
     r"group indices in \[5, 5\], expected \[0, 1\]"),
    ("gptq", lambda g: g["gptq"], {"bits": 8}, "8-bit weights are not supported"),
    ("compressed-tensors", lambda g: g["ct"], {"num_bits": 3}, "3-bit"),
    ("awq", lambda g: edited(g["awq"], qweight=np.zeros((128, 8), np.int32),
                             qzeros=np.zeros((2, 8), np.int32)), {},
     "another bit width"),
    ("compressed-tensors", lambda g: edited(g["ct"], weight_packed=np.zeros((32, 32), np.int32)),
     {}, "another bit width"),
    ("compressed-tensors", lambda g: edited(g["ct"], weight_packed=np.zeros((32, 64), np.uint8)),
     {}, "nvfp4"),
    ("awq", lambda g: g["awq"], {"version": "gemv"}, "only the GEMM packing"),
    ("gptq", lambda g: g["gptq"], {"desc_act": True}, r"unknown option\(s\) \['desc_act'\]"),
    ("gptq", lambda g: g["gptq"], {"source_group_size": 32}, "gives 4 groups"),
    ("compressed-tensors", lambda g: g["ct"], {"symmetric": True}, "nonzero"),
    ("compressed-tensors", lambda g: edited(g["ct"], weight_zero_point=None),
     {"symmetric": False}, "weight_zero_point is missing"),
    ("gptq4", lambda g: g["gptq"], {}, "unknown checkpoint format 'gptq4'"),
    ("gptq", lambda g: g["gptq"], {"checkpoint_format": "v3"}, "checkpoint_format='v3'"),
    ("gptq", lambda g: g["gptq"], {"group_size": 48}, "group_size=48 is not supported"),
    ("gptq", lambda g: g["gptq"], {"method": "best"}, "method='best' is not known"),
])
def test_refusals(good, fmt, tensors, meta, match):
    with pytest.raises(ValueError, match=match):
        I.import_layer(tensors(good), "layer", fmt, **meta)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scales(good, bad):
    for fmt, name in (("awq", "scales"), ("gptq", "scales"), ("ct", "weight_scale")):
        s = good[fmt]["layer." + name].copy()
        s[0, 1] = bad
        with pytest.raises(ValueError, match="NaN or Inf"):
            I.dequantize_source(edited(good[fmt], **{name: s}), "layer",
                                "compressed-tensors" if fmt == "ct" else fmt)


def test_k_not_multiple_of_32():
    rng = np.random.default_rng(0)
    q, z, s = rtn_source(rng, 16, 48, 16, zero_lo=1)
    t = pack_gptq(q, z, s)
    assert I.dequantize_gptq(t, "layer").shape == (16, 48)     # the source reads fine
    with pytest.raises(ValueError, match=r"gptq layer 'layer': K=48 .* multiple of 32"):
        I.import_layer(t, "layer", "gptq")


def test_bad_prefix_lists_what_is_there(good):
    with pytest.raises(ValueError, match="no tensors under that prefix"):
        I.import_layer(good["gptq"], "model.layer", "gptq")
    with pytest.raises(TypeError, match="mapping"):
        I.import_layer([1, 2], "layer", "gptq")


def test_ambiguous_group_size_needs_a_hint():
    """K=96 in 2 groups is 48 + 48 or 64 + 32: without g_idx the importer asks."""
    rng = np.random.default_rng(0)
    K, N = 96, 8
    q = rng.integers(0, 16, (K, N))
    z = rng.integers(1, 16, (2, N))
    s = np.ones((2, N), np.float16)
    t = pack_gptq(q, z, s)
    with pytest.raises(ValueError, match="pass group_size"):
        I.dequantize_gptq(t, "layer")
    W = I.dequantize_gptq(t, "layer", group_size=64)
    assert np.array_equal(W, reference(q, z, s, np.arange(K) // 64))
