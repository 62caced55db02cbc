"""The autotuner without a GPU: config legality and candidates, the cache key,
M buckets, the cache file (atomic, concurrent, corrupt/foreign files), the
search loop with a stand-in timer and runner, lqq.gemm's config order, model
presets and the command line. The real timing runs on a GPU (`lqq autotune`)."""
import contextlib
import importlib
import json
import multiprocessing
import os
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest

import lqq
from lqq import cli, configs, gpu_gemm, models, nvrtc, packing, reference, tune_cache

at = importlib.import_module("lqq.autotune")       # the module (lqq.autotune is the function)
ROOT = Path(__file__).resolve().parents[1]

FAKE = {"gpu": "Fake GPU 80GB", "sm_count": 132, "compute_capability": "9.0", "driver": 12040,
        "nvrtc": "12.9", "lqq": lqq.__version__, "template_hash": "ab" * 32}


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LQQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LQQ_FORCE_CONFIG", raising=False)
    tune_cache.invalidate()
    yield tmp_path / "cache"
    tune_cache.invalidate()


# ---------------------------------------------------------------- configs

SHAPES = [(1, 64, 64), (3, 100, 96), (8, 4096, 4096), (16, 57344, 8192), (17, 4096, 4096),
          (100, 130, 384), (128, 6144, 4096), (257, 28672, 4096), (1024, 8192, 28672),
          (8192, 57344, 8192), (1, 1, 32), (9, 63, 65536), (1, 8192, 28672), (4, 3584, 18944)]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("sms", [1, 78, 132])
def test_every_candidate_is_legal_and_the_heuristic_is_first(M, N, K, sms):
    cands = configs.candidates(M, N, K, sms)
    assert cands[0] == configs.heuristic(M, N, K, sms)
    assert len({(p.config, p.splits) for p in cands}) == len(cands), "no duplicates"
    Kb = -(-K // packing.K_ALIGN) * 2
    for p in cands:
        assert configs.why_illegal(p, M, N, K) is None, p
        assert p.config in configs.MMA_CONFIGS + configs.DECODE_CONFIGS
        assert (p.splits - 1) * p.kb_per_split < Kb <= p.splits * p.kb_per_split
        assert configs.smem_bytes(p) <= configs.SMEM_STATIC_MAX
        if isinstance(p.config, configs.DecodeConfig):
            assert p.kb_per_split <= p.config.KBMAX and M <= p.config.BM
    assert any(isinstance(p.config, configs.MmaConfig) for p in cands)


def test_why_illegal_names_each_constraint(monkeypatch):
    M, N, K = 4, 4096, 8192                        # Kb = 128
    d = configs.DecodeConfig(8, 1, 4)              # KBMAX 64
    assert configs.why_illegal(configs.plan(d, M, N, K), M, N, K) is None
    too_long = configs.Plan(d, 1, 128, (64, 1, 1))
    assert "KBMAX" in configs.why_illegal(too_long, M, N, K)
    big = configs.plan(configs.MmaConfig(128, 1), 128, N, K)      # 2 x 128 x 80 B = 20 KB
    assert configs.why_illegal(big, 128, N, K) is None
    monkeypatch.setattr(configs, "SMEM_STATIC_MAX", 16 * 1024)
    assert "shared memory" in configs.why_illegal(big, 128, N, K)
    monkeypatch.undo()
    m = configs.MmaConfig(32, 1)
    assert "tile" in configs.why_illegal(configs.Plan(m, 3, 32, (64, 1, 3)), M, N, K)  # short
    assert "tile" in configs.why_illegal(configs.Plan(m, 3, 64, (64, 1, 3)), M, N, K)  # empty
    assert "grid" in configs.why_illegal(configs.Plan(m, 1, 128, (32, 1, 1)), M, N, K)
    wide = configs.plan(configs.MmaConfig(8, 16), M, N, K)       # 2048 threads
    assert "ships" in configs.why_illegal(wide, M, N, K)
    monkeypatch.setattr(configs, "MMA_CONFIGS", configs.MMA_CONFIGS + (wide.config,))
    assert "registers" in configs.why_illegal(wide, M, N, K)
    assert configs.why_illegal(configs.plan(d, M, N, K), M, N, K) is None
    monkeypatch.setattr(configs, "REGS_MAX", configs.registers_lower_bound(d) - 1)
    assert "registers" in configs.why_illegal(configs.plan(d, M, N, K), M, N, K)


# ---------------------------------------------------------------- key and buckets

def test_m_buckets():
    assert tune_cache.M_BUCKETS == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
    got = {M: tune_cache.m_bucket(M) for M in (1, 2, 3, 4, 5, 8, 9, 16, 17, 100, 4097, 8192,
                                                8193, 10 ** 6)}
    assert got == {1: 1, 2: 2, 3: 4, 4: 4, 5: 8, 8: 8, 9: 16, 16: 16, 17: 32, 100: 128,
                   4097: 8192, 8192: 8192, 8193: 8192, 10 ** 6: 8192}
    for M in range(1, 8193):
        b = tune_cache.m_bucket(M)
        assert b in tune_cache.M_BUCKETS and b // 2 < M <= b
    with pytest.raises(ValueError):
        tune_cache.m_bucket(0)


def test_cache_key_changes_with_each_field():
    paths = {tune_cache.path_for(FAKE)}
    for field, value in [("gpu", "Other GPU"), ("sm_count", 114), ("compute_capability", "8.0"),
                         ("driver", 12020), ("nvrtc", "12.4"), ("lqq", "0.0.1"),
                         ("template_hash", "cd" * 32)]:
        paths.add(tune_cache.path_for({**FAKE, field: value}))
    assert len(paths) == 8
    assert all(p.parent == tune_cache.cache_dir() for p in paths)
    keys = {tune_cache.entry_key(*k) for k in [(4096, 4096, 64, 16), (4096, 4096, 64, 32),
                                               (4096, 4096, 128, 16), (4096, 8192, 64, 16),
                                               (8192, 4096, 64, 16)]}
    assert len(keys) == 5


# ---------------------------------------------------------------- the file

def entry(N=4096, K=4096, G=64, M=16, winner="mma_bm16_rb1_s2", ms=0.01):
    return {tune_cache.entry_key(N, K, G, M): {
        "N": N, "K": K, "group_size": G, "m_bucket": M, "winner": winner, "winner_ms": ms,
        "candidates": [{"config": winner, "ms": ms}]}}


def test_store_then_lookup_without_file_reads(monkeypatch):
    assert tune_cache.lookup(16, 4096, 4096, 64, device=FAKE) is None
    path = tune_cache.store(entry(), FAKE)
    doc = json.loads(path.read_text())
    assert doc["format"] == "lqq-autotune" and doc["device"] == FAKE
    p = tune_cache.lookup(9, 4096, 4096, 64, device=FAKE)            # 9 is in bucket 16
    assert p == configs.plan(configs.MmaConfig(16, 1), 9, 4096, 4096, 2)
    assert tune_cache.lookup(8, 4096, 4096, 64, device=FAKE) is None   # bucket 8
    assert tune_cache.lookup(16, 4096, 4096, 128, device=FAKE) is None
    assert tune_cache.lookup(16, 4096, 4096, None, device=FAKE) == configs.plan(
        configs.MmaConfig(16, 1), 16, 4096, 4096, 2)

    def no_reads(*a, **k):
        raise AssertionError("the hot path read the file")
    monkeypatch.setattr(tune_cache, "read", no_reads)
    monkeypatch.setattr(tune_cache, "RECHECK_S", 1e9)
    for M in (9, 10, 16, 12):
        assert tune_cache.lookup(M, 4096, 4096, 64, device=FAKE) is not None


def test_another_writer_is_seen_after_the_file_changes(monkeypatch):
    monkeypatch.setattr(tune_cache, "RECHECK_S", 0.0)
    tune_cache.store(entry(), FAKE)
    assert tune_cache.lookup(16, 4096, 4096, 64, device=FAKE).config == configs.MmaConfig(16, 1)
    # rewrite the file behind the in-process index, as another process would
    path = tune_cache.path_for(FAKE)
    doc = json.loads(path.read_text())
    doc["entries"].update(entry(winner="decode_bm16_rb2_pf8_s4"))
    path.write_text(json.dumps(doc))
    os.utime(path, ns=(1, 1))
    p = tune_cache.lookup(16, 4096, 4096, 64, device=FAKE)
    assert p.config == configs.DecodeConfig(16, 2, 8)


def _torn(path):
    path.write_text(path.read_text()[:40])


def _garbage(path):
    path.write_bytes(b"\x00\xff not json")


def _foreign(path):
    path.write_text(json.dumps({"format": "something-else", "entries": {}}))


def _other_gpu(path):
    doc = json.loads(path.read_text())
    doc["device"]["gpu"] = "Other GPU"
    path.write_text(json.dumps(doc))


def _other_version(path):
    doc = json.loads(path.read_text())
    doc["device"]["lqq"] = "0.0.0"
    path.write_text(json.dumps(doc))


def _bad_entry(path):
    doc = json.loads(path.read_text())
    next(iter(doc["entries"].values()))["winner"] = "mma_bm7_rb9"
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize("spoil", [_torn, _garbage, _foreign, _other_gpu, _other_version,
                                   _bad_entry])
def test_bad_files_are_ignored_with_a_warning_and_rewritten(spoil):
    path = tune_cache.store(entry(), FAKE)
    spoil(path)
    tune_cache.invalidate()
    with pytest.warns(RuntimeWarning, match="ignoring"):
        assert tune_cache.lookup(16, 4096, 4096, 64, device=FAKE) is None
    with pytest.warns(RuntimeWarning, match="ignoring"):
        tune_cache.store(entry(M=32), FAKE)
    doc = json.loads(path.read_text())
    assert doc["device"] == FAKE and list(doc["entries"]) == ["4096x4096/g64/m32"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tune_cache.lookup(32, 4096, 4096, 64, device=FAKE) is not None


def test_an_entry_for_another_device_is_never_used():
    tune_cache.store(entry(), {**FAKE, "sm_count": 114})
    assert tune_cache.lookup(16, 4096, 4096, 64, device=FAKE) is None
    tune_cache.store(entry(), {**FAKE, "lqq": "9.9.9"})
    assert tune_cache.lookup(16, 4096, 4096, 64, device=FAKE) is None


def _writer(cache_dir, i, start, locked):
    os.environ["LQQ_CACHE_DIR"] = cache_dir
    if not locked:                              # atomic replace alone, as without flock
        tune_cache._locked = lambda path: contextlib.nullcontext()
    start.wait()
    for j in range(5):
        tune_cache.store(entry(N=64 * (5 * i + j + 1), ms=float(j)), FAKE)


@pytest.mark.parametrize("locked", [True, False])
def test_concurrent_writers_leave_a_valid_file(cache, locked):
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(str(cache), i, start, locked)) for i in range(4)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no torn or partial file, ever
        entries = tune_cache.read(tune_cache.path_for(FAKE), FAKE)
    assert entries
    if locked and sys.platform != "win32":      # flock: every merge kept
        assert len(entries) == 20
    assert not [p for p in cache.rglob("*.tmp")], "no temp files left behind"


# ---------------------------------------------------------------- the search

def cost(p, case):
    """A deterministic stand-in for a timing: some plan is clearly cheapest."""
    c = p.config
    return 1.0 + 0.013 * p.splits + 0.001 * c.BM + 0.02 * c.RB + 0.004 * getattr(c, "PF", 3)


def exact(p, case):
    return reference.gemm(case.xq, case.xs, case.w)


def test_search_picks_the_cheapest_and_stores_every_timing():
    rows = lqq.autotune([(256, 512)], ms=[1, 3, 100], timer=cost, runner=exact, device=FAKE)
    assert [r["m_bucket"] for r in rows] == [1, 4, 128]
    doc = json.loads(tune_cache.path_for(FAKE).read_text())
    for r in rows:
        cands = configs.candidates(r["m_bucket"], 256, 512, FAKE["sm_count"],
                                   wgmma=True)          # FAKE is an sm_90 device
        best = min(cands, key=lambda p: cost(p, None))
        assert r["winner"] == tune_cache.plan_text(best) and not r["cached"]
        assert r["winner_ms"] == pytest.approx(cost(best, None))
        assert r["heuristic"] == tune_cache.plan_text(cands[0])
        stored = doc["entries"][tune_cache.entry_key(256, 512, 64, r["m_bucket"])]
        assert [c["config"] for c in stored["candidates"]] == [tune_cache.plan_text(p)
                                                                for p in cands]
        assert all("ms" in c for c in stored["candidates"])
        assert tune_cache.lookup(r["m_bucket"], 256, 512, 64, device=FAKE) == best
    again = lqq.autotune([(256, 512)], ms=[2, 3], timer=cost, runner=exact, device=FAKE)
    assert [(r["m_bucket"], r["cached"]) for r in again] == [(2, False), (4, True)]
    forced = lqq.autotune([(256, 512)], ms=[3], timer=cost, runner=exact, device=FAKE, force=True)
    assert not forced[0]["cached"]


def test_a_wrong_winner_is_refused():
    best = min(configs.candidates(4, 256, 512, 132), key=lambda p: cost(p, None))

    def wrong_for_best(p, case):
        y = exact(p, case)
        if p == best:
            y = y.copy()
            y[case.rows[-1], case.cols[-1]] += 1
        return y
    r, = lqq.autotune([(256, 512)], ms=[4], timer=cost, runner=wrong_for_best, device=FAKE)
    assert r["winner"] != tune_cache.plan_text(best)
    row = next(c for c in r["candidates"] if c["config"] == tune_cache.plan_text(best))
    assert row["checked"] is False and "reference" in row["error"]
    assert tune_cache.lookup(4, 256, 512, 64, device=FAKE) != best


def test_nothing_is_stored_when_every_candidate_is_wrong():
    def broken(p, case):
        raise RuntimeError("illegal address")
    with pytest.warns(RuntimeWarning, match="no candidate"):
        r, = lqq.autotune([(256, 512)], ms=[1], timer=cost, runner=broken, device=FAKE)
    assert r["winner"] is None and all("run failed" in c["error"] for c in r["candidates"])
    assert not tune_cache.path_for(FAKE).exists()


def test_timing_failures_are_recorded_not_fatal():
    def flaky(p, case):
        if tune_cache.plan_text(p).endswith("_s1"):
            raise RuntimeError("launch failed")
        return cost(p, case)
    r, = lqq.autotune([(256, 512)], ms=[16], timer=flaky, runner=exact, device=FAKE)
    assert r["winner"] and all(("error" in c) == c["config"].endswith("_s1")
                               for c in r["candidates"])
    assert any(c["config"].endswith("_s1") for c in r["candidates"])


def test_bad_arguments():
    for shapes, msg in [([(256,)], "pair"), ([(0, 512)], "positive"), ([(256, 100)], "multiple"),
                        ([(256, 96)], "divisible")]:
        with pytest.raises(ValueError, match=msg):
            lqq.autotune(shapes, ms=[1], timer=cost, runner=exact, device=FAKE)
    with pytest.raises(ValueError, match="unknown model"):
        lqq.autotune("GPT-5", ms=[1], timer=cost, runner=exact, device=FAKE)
    with pytest.raises(ValueError, match="device"):
        lqq.autotune([(256, 512)], ms=[1], timer=cost, runner=exact)


class _Capturing:
    def is_capturing(self):
        return True


def test_refuses_to_tune_during_graph_capture(monkeypatch):
    cp = pytest.importorskip("cupy")
    monkeypatch.setattr(cp.cuda, "get_current_stream", lambda *a: _Capturing())
    with pytest.raises(RuntimeError, match="captured"):
        lqq.autotune([(256, 512)], ms=[1], device=FAKE)


def test_pinned_restores_force_config(monkeypatch):
    p = configs.plan(configs.MmaConfig(32, 2), 40, 256, 512, 2)
    with at.pinned(p):
        assert configs.forced(40, 256, 512) == p
    assert "LQQ_FORCE_CONFIG" not in os.environ
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "mma_bm8_rb1")
    with at.pinned(p):
        assert os.environ["LQQ_FORCE_CONFIG"] == "mma_bm32_rb2_s2"
    assert os.environ["LQQ_FORCE_CONFIG"] == "mma_bm8_rb1"


def test_scratch_grows_without_freeing(monkeypatch):
    """Replaced scratch buffers stay referenced (graphs captured with them may
    replay later); a request gets exactly the length it asked for."""
    import sys
    import types

    import numpy as np
    fake = types.SimpleNamespace(
        zeros=lambda n, dt: np.zeros(n, dt), empty=lambda n, dt: np.full(n, 7, dt),
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(gpu_gemm, "_scratch", {})
    monkeypatch.setattr(gpu_gemm, "_retired", {})
    stream = types.SimpleNamespace(ptr=1234)
    a = gpu_gemm.scratch(stream, "partial", 10, np.int32)
    assert a.size == 10
    assert gpu_gemm.scratch(stream, "partial", 6, np.int32).base is a.base, "no allocation"
    b = gpu_gemm.scratch(stream, "counters", 5, np.uint32, zeroed=True)
    assert not b.any()
    c = gpu_gemm.scratch(stream, "partial", 12, np.int32)
    assert c.size == 12 and c.base.size == 20, "at least doubled"
    assert gpu_gemm._retired[(0, 1234, "partial")][0] is a.base, "the old buffer is kept"
    with gpu_gemm.scratch_scope():
        gpu_gemm.scratch(types.SimpleNamespace(ptr=99), "partial", 3, np.int32)
        gpu_gemm.scratch(types.SimpleNamespace(ptr=99), "partial", 30, np.int32)
    assert all(k[1] != 99 for k in list(gpu_gemm._scratch) + list(gpu_gemm._retired))


def test_scratch_of_timing_streams_is_dropped(monkeypatch):
    monkeypatch.setattr(gpu_gemm, "_scratch", {("user stream",): "kept"})
    with gpu_gemm.scratch_scope():
        gpu_gemm._scratch[("timing stream",)] = "dropped"
    assert gpu_gemm._scratch == {("user stream",): "kept"}


def test_plan_text_round_trips_through_force_config(monkeypatch):
    for M, N, K in SHAPES:
        for p in configs.candidates(M, N, K, 132)[:12]:
            monkeypatch.setenv("LQQ_FORCE_CONFIG", tune_cache.plan_text(p))
            assert configs.forced(M, N, K) == p


# ---------------------------------------------------------------- lqq.gemm's choice

def test_choose_forced_then_cached_then_heuristic(monkeypatch):
    monkeypatch.setattr(tune_cache, "current_device", lambda: 0)
    monkeypatch.setitem(tune_cache._fingerprints, 0, FAKE)
    monkeypatch.setattr(gpu_gemm, "sm_count", lambda: 132)
    M, N, K = 16, 4096, 4096
    hopper = gpu_gemm._wgmma_ok(K, 64)        # True on an H100: the heuristic is the Hopper one
    assert gpu_gemm.choose(M, N, K, 64) == configs.heuristic(M, N, K, 132, hopper)
    tune_cache.store(entry(winner="mma_bm16_rb2_s4"), FAKE)
    assert gpu_gemm.choose(M, N, K, 64) == configs.plan(configs.MmaConfig(16, 2), M, N, K, 4)
    assert gpu_gemm.choose(M, N, K) == configs.plan(configs.MmaConfig(16, 2), M, N, K, 4)
    assert gpu_gemm.choose(M, N, K, 128) == configs.heuristic(M, N, K, 132, hopper)
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "decode_bm16_rb1_pf8_s2")
    assert gpu_gemm.choose(M, N, K, 64).config == configs.DecodeConfig(16, 1, 8)


def test_choose_keeps_a_hopper_winner_unless_the_heuristic_pads_m_less(monkeypatch):
    """A winner is timed at its bucket's largest M; at 257..511 tokens a
    256-token winner of bucket 512 would compute more padded tokens than the
    heuristic's 192-token tiles, so there those run; where they would pad as
    much or more, the winner stays."""
    monkeypatch.setattr(tune_cache, "current_device", lambda: 0)
    monkeypatch.setitem(tune_cache._fingerprints, 0, FAKE)
    monkeypatch.setattr(gpu_gemm, "sm_count", lambda: 132)
    monkeypatch.setattr(gpu_gemm, "_wgmma_ok", lambda K, g: True)       # as on an H100 / H200
    monkeypatch.setattr(configs, "wgmma_target_ok", lambda: True)
    N, K = 28672, 4096
    tune_cache.store(entry(N, K, 64, 512, winner="wgmma_bn256_st4_c132"), FAKE)
    won = configs.WgmmaConfig(256, 4)
    assert gpu_gemm.choose(512, N, K, 64).config == won
    assert gpu_gemm.choose(448, N, K, 64).config == won, "256 pads 64, 192 would pad 128"
    for M in (320, 384):
        p = gpu_gemm.choose(M, N, K, 64)
        assert p == configs.heuristic(M, N, K, 132, True) and p.config == configs.WgmmaConfig(192, 5)
    tune_cache.store(entry(N, K, 64, 256, winner="wgmma_bn256_st4_c132"), FAKE)
    assert gpu_gemm.choose(256, N, K, 64).config == won
    assert gpu_gemm.choose(150, N, K, 64).config.BN == 192, "not 256 tokens for 150"
    # a winner tuned at this very M (lqq autotune --m 384) is what was measured: it stays
    tuned = entry(N, K, 64, 512, winner="wgmma_bn256_st4_c112")
    next(iter(tuned.values()))["m_tuned"] = 384
    tune_cache.store(tuned, FAKE)
    assert gpu_gemm.choose(384, N, K, 64) == configs.plan(won, 384, N, K, ctas=112)
    assert gpu_gemm.choose(320, N, K, 64).config == configs.WgmmaConfig(192, 5)


def test_choose_logs_each_choice_and_its_source_once_under_lqq_debug(monkeypatch, caplog):
    monkeypatch.setattr(tune_cache, "current_device", lambda: 0)
    monkeypatch.setitem(tune_cache._fingerprints, 0, FAKE)
    monkeypatch.setattr(gpu_gemm, "sm_count", lambda: 132)
    monkeypatch.setattr(gpu_gemm, "_logged_choices", set())
    monkeypatch.setenv("LQQ_DEBUG", "1")
    caplog.set_level("INFO", logger="lqq")
    p = gpu_gemm.choose(16, 4096, 4096, 64)
    gpu_gemm.choose(16, 4096, 4096, 64)
    lines = [r.getMessage() for r in caplog.records if "M=16 N=4096 K=4096" in r.getMessage()]
    assert lines == [f"lqq: M=16 N=4096 K=4096 group 64: {tune_cache.plan_text(p)} grid {p.grid} "
                     f"(heuristic)"], "one line per distinct choice"
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "decode_bm16_rb1_pf8_s2")
    gpu_gemm.choose(16, 4096, 4096, 64)
    assert caplog.records[-1].getMessage().endswith("(LQQ_FORCE_CONFIG)")
    monkeypatch.setenv("LQQ_DEBUG", "0")
    n = len(caplog.records)
    gpu_gemm.choose(17, 4096, 4096, 64)
    assert len(caplog.records) == n, "silent without LQQ_DEBUG"


def test_a_compile_target_other_than_sm_90a_keeps_the_portable_kernels(monkeypatch):
    """Under LQQ_ARCH=sm_90 the Hopper kernel cannot build: the heuristic, its
    memo and a Hopper autotune winner (tuned before the target changed) all
    give way to the portable kernels."""
    monkeypatch.delenv("LQQ_ARCH", raising=False)
    monkeypatch.setattr(gpu_gemm.launch, "compute_capability", lambda: "90")
    monkeypatch.setattr(gpu_gemm, "sm_count", lambda: 132)
    monkeypatch.setattr(tune_cache, "lookup", lambda *a, **k: None)
    assert gpu_gemm._wgmma_ok(4096, 64)
    assert isinstance(gpu_gemm.choose(64, 4096, 4096, 64).config, configs.WgmmaConfig)
    monkeypatch.setenv("LQQ_ARCH", "sm_90a")
    assert gpu_gemm._wgmma_ok(4096, 64)
    monkeypatch.setenv("LQQ_ARCH", "sm_90")           # the Hopper kernel needs sm_90a
    assert not gpu_gemm._wgmma_ok(4096, 64)
    assert isinstance(gpu_gemm.choose(64, 4096, 4096, 64).config, configs.MmaConfig), \
        "the memoized Hopper plan is not reused under another target"
    monkeypatch.setattr(gpu_gemm, "sm_count", lambda: 66)
    assert gpu_gemm.choose(64, 4096, 4096, 64) == configs.heuristic(64, 4096, 4096, 66)
    tuned = configs.plan(configs.WgmmaConfig(64, 4), 64, 4096, 4096, ctas=132)
    monkeypatch.setattr(tune_cache, "lookup", lambda *a, **k: tuned)
    assert gpu_gemm.choose(64, 4096, 4096, 64) == configs.heuristic(64, 4096, 4096, 66)
    monkeypatch.delenv("LQQ_ARCH")
    assert gpu_gemm.choose(64, 4096, 4096, 64) == tuned


def test_a_forced_compile_target_tunes_into_its_own_file(monkeypatch):
    monkeypatch.delenv("LQQ_ARCH", raising=False)
    monkeypatch.setattr(tune_cache, "_fingerprints", {})
    props = {"name": b"NVIDIA H200", "multiProcessorCount": 132, "major": 9, "minor": 0}
    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(
        getDeviceProperties=lambda dev: props, driverGetVersion=lambda: 13000)))
    monkeypatch.setitem(sys.modules, "cupy", fake_cp)
    monkeypatch.setattr(nvrtc, "version", lambda: (13, 0))
    native = tune_cache.device_fingerprint(0)
    monkeypatch.setenv("LQQ_ARCH", "sm_90")             # read again, though memoized
    forced = tune_cache.device_fingerprint(0)
    assert "target" not in native and forced == {**native, "target": "sm_90"}
    assert tune_cache.path_for(native) != tune_cache.path_for(forced)


def test_a_broken_cache_never_breaks_choose(monkeypatch):
    def no_gpu():
        raise RuntimeError("no CUDA device")
    monkeypatch.setattr(tune_cache, "current_device", no_gpu)
    monkeypatch.setattr(gpu_gemm, "sm_count", lambda: 132)
    monkeypatch.setattr(tune_cache, "_warned", set())
    with pytest.warns(RuntimeWarning, match="heuristic"):
        assert gpu_gemm.choose(1, 4096, 4096, 64) == configs.heuristic(
            1, 4096, 4096, 132, gpu_gemm._wgmma_ok(4096, 64))


# ---------------------------------------------------------------- model presets

def test_model_presets():
    assert models.get("Llama-3-8B").layers() == {
        "qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336)}
    assert models.get("llama3-70b").layers() == {
        "qkv": (10240, 8192), "o": (8192, 8192), "gate_up": (57344, 8192), "down": (8192, 28672)}
    assert models.get("qwen2.5_7b").layers() == {
        "qkv": (4608, 3584), "o": (3584, 3584), "gate_up": (37888, 3584), "down": (3584, 18944)}
    assert models.shapes("Mixtral-8x7B") == [(6144, 4096), (4096, 4096), (28672, 4096),
                                             (4096, 14336)]
    with pytest.raises(ValueError, match="known: Llama-3-8B"):
        models.get("llama-4")
    for name in models.MODELS:
        for N, K in models.shapes(name):
            assert K % 128 == 0 and N % 64 == 0


# ---------------------------------------------------------------- command line

def run_cli(cache, *args):
    env = dict(os.environ, LQQ_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "lqq", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env)


@pytest.mark.parametrize("args,msg", [
    (["--shapes", "4096"], "'4096' is not a shape"),
    (["--shapes", "4096,x"], "is not a shape"),
    (["--model", "GPT-5"], "unknown model 'GPT-5'"),
    (["--model", "Llama-3-8B", "--m", "1,a"], "not a list of token counts"),
    (["--model", "Llama-3-8B", "--m", "0"], "not a list of token counts"),
    ([], "one of the arguments --shapes --model is required"),
    (["--shapes", "4096,4096", "--model", "Llama-3-8B"], "not allowed with"),
])
def test_cli_autotune_argument_errors(cache, args, msg):
    r = run_cli(cache, "autotune", *args)
    assert r.returncode == 2 and msg in r.stderr, r.stderr


def test_cli_autotune_help(cache):
    r = run_cli(cache, "autotune", "--help")
    assert r.returncode == 0 and "--shapes" in r.stdout and "Llama-3-70B" in r.stdout


def test_cli_autotune_json_and_table(cache, monkeypatch, capsys):
    real = at.autotune
    monkeypatch.setattr(at, "autotune", lambda *a, **k: real(*a, **k, timer=cost, runner=exact,
                                                             device=FAKE))
    assert cli.main(["autotune", "--shapes", "256,512", "128,256", "--m", "1,3", "--json"]) == 0
    out = capsys.readouterr()
    rows = json.loads(out.out)
    assert [(r["N"], r["m_bucket"]) for r in rows] == [(256, 1), (256, 4), (128, 1), (128, 4)]
    assert out.err == "", "no progress bar under --json"
    assert cli.main(["autotune", "--shapes", "256,512", "--m", "1,3"]) == 0
    text = capsys.readouterr().out
    assert "(cached)" in text and rows[0]["winner"] in text


def test_cli_cache_path_list_clear(cache):
    r = run_cli(cache, "cache", "path")
    assert r.returncode == 0 and r.stdout.strip() == str(cache)
    tune_cache.store(entry(), FAKE)
    r = run_cli(cache, "cache", "list", "--json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    assert listing["kernels"]["count"] == 0
    (f,) = listing["autotune"]
    assert f["device"] == FAKE and "4096x4096/g64/m16" in f["entries"]
    r = run_cli(cache, "cache", "list")
    assert r.returncode == 0 and "4096x4096/g64/m16" in r.stdout and "mma_bm16_rb1_s2" in r.stdout
    r = run_cli(cache, "info", "--json")
    assert r.returncode == 0 and "1 autotune entries in 1 file" in json.loads(r.stdout)["cache"]
    r = run_cli(cache, "cache", "clear")
    assert r.returncode == 0 and not tune_cache.cache_dir().exists()
    assert json.loads(run_cli(cache, "cache", "list", "--json").stdout)["autotune"] == []
    assert run_cli(cache, "cache").returncode == 2


# ---------------------------------------------------------------- on a GPU (skipped without)

def _gpu_reason():
    from lqq import _xp
    cp = _xp.cupy_or_none()
    if cp is None:
        return "CuPy is not installed"
    try:
        return None if cp.cuda.runtime.getDeviceCount() > 0 else "no CUDA device"
    except Exception as e:  # noqa: BLE001
        return f"no usable CUDA device ({type(e).__name__})"


GPU_REASON = _gpu_reason()


def needs_gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(GPU_REASON is not None,
                                              reason=f"GPU: {GPU_REASON}")(test))


@pytest.mark.parametrize("M", [1, 40])
@needs_gpu
def test_gpu_autotune_then_gemm_uses_the_winner(M):
    import cupy as cp
    import numpy as np
    rows = lqq.autotune([(320, 1024)], ms=[M], group_size=64, groups=2)
    (r,) = rows
    assert r["winner"] and not r["cached"] and all("ms" in c or "error" in c
                                                    for c in r["candidates"])
    win = next(c for c in r["candidates"] if c["config"] == r["winner"])
    assert win["checked"] and win["ms"] > 0
    device = tune_cache.device_fingerprint()
    assert device["sm_count"] > 0 and device["template_hash"]
    p = tune_cache.lookup(M, 320, 1024, 64)
    cfg, splits, ctas = configs._parse_forced(r["winner"])   # timed at the bucket's M
    assert p == configs.plan(cfg, M, 320, 1024, splits, ctas)
    assert gpu_gemm.choose(M, 320, 1024, 64) == p
    rng = np.random.default_rng()
    w = lqq.quantize_weight(rng.standard_normal((320, 1024)).astype(np.float32), 64, "round")
    X = rng.standard_normal((M, 1024)).astype(np.float16)
    x8, xs = lqq.quantize_activation(X)
    got = cp.asnumpy(lqq.gemm(cp.asarray(X), w.to_gpu()))
    assert np.array_equal(got, reference.gemm(x8, xs, w))
    assert lqq.autotune([(320, 1024)], ms=[M], groups=2)[0]["cached"]


@needs_gpu
def test_gpu_autotune_refuses_inside_capture():
    import cupy as cp
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            with pytest.raises(RuntimeError, match="captured"):
                lqq.autotune([(256, 512)], ms=[1])
        finally:
            stream.end_capture()


def test_wgmma_candidates_only_where_eligible():
    M, N, K = 256, 4096, 4096
    plain = configs.candidates(M, N, K, 132)
    hopper = configs.candidates(M, N, K, 132, wgmma=True)
    assert not any(isinstance(p.config, configs.WgmmaConfig) for p in plain)
    wg = [p for p in hopper if isinstance(p.config, configs.WgmmaConfig)]
    assert wg and isinstance(hopper[0].config, configs.WgmmaConfig), "the heuristic comes first"
    for p in wg:
        assert configs.why_illegal(p, M, N, K) is None and p.kb_per_split % 2 == 0
        text = tune_cache.plan_text(p)
        assert text.startswith("wgmma_")
    assert configs.wgmma_eligible(4096, 64, "90") and not configs.wgmma_eligible(4096, 64, "89")
    assert not configs.wgmma_eligible(4160, 4160, "90") and configs.wgmma_eligible(4096, 4096, "90")
