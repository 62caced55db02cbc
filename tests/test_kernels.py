"""Every kernel lqq can launch compiles offline (no GPU) for sm_80 and sm_90a
with no spills and no local memory, and its SASS has the instructions the
design promises; configs and the heuristic are legal for many shapes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lqq import configs, nvrtc, packing

ROOT = Path(__file__).resolve().parents[1]

try:
    nvrtc.version()
    NO_NVRTC = None
except Exception as e:  # noqa: BLE001 - any reason NVRTC cannot load
    NO_NVRTC = str(e)

needs_nvrtc = pytest.mark.skipif(NO_NVRTC is not None, reason=f"NVRTC: {NO_NVRTC}")
SERIALIZATION = tuple(f"C75{n:02d}" for n in range(8, 16))      # C7508 .. C7515


@pytest.fixture(scope="module", params=["sm_80", "sm_90a"])
def report(request, tmp_path_factory):
    """What `lqq kernels --json` prints (run as a user would)."""
    env = dict(os.environ, LQQ_CACHE_DIR=str(tmp_path_factory.mktemp("cache")))
    r = subprocess.run([sys.executable, "-m", "lqq", "kernels", "--json", "--arch", request.param],
                       capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    return request.param, json.loads(r.stdout)


@needs_nvrtc
def test_every_kernel_listed_and_clean(report):
    arch, rows = report
    assert {r["name"] for r in rows} == {s.name for s in configs.all_kernels() if arch in s.archs}
    for r in rows:
        assert r["arch"] == arch
        assert r["spill_bytes"] == 0, r["name"]
        assert r["local_bytes"] == 0, r["name"]
        assert not r["sass"].get("LDL") and not r["sass"].get("STL"), r["name"]
        assert not [w for w in r["warnings"] if any(c in w for c in SERIALIZATION)], r["warnings"]
        assert r["registers"] > 0 and isinstance(r["config"], dict)


@needs_nvrtc
def test_gemm_kernels_dequantize_with_imad_lop3_and_use_tensor_cores(report):
    _, rows = report
    gemms = [r for r in rows if r["family"].startswith("gemm")]
    assert gemms
    for r in gemms:
        s = r["sass"]
        assert s.get("IMAD", 0) > 0 and s.get("LOP3", 0) > 0, r["name"]
        assert s.get("IMMA", 0) + s.get("IGMMA", 0) > 0, (r["name"], s)
        assert s.get("PRMT", 0) > 0, "z broadcast into four lanes"
        if r["family"] == "gemm_wgmma_sm90":
            a = r["igmma_a"]
            assert a["register"] == s.get("IGMMA") and a["shared"] == 0, (r["name"], a)
            assert a["register"] >= 8, "two banks of four k-steps"
            assert r["mma_span_mul_hi"] == 0, (r["name"], "a division in the main loop")


@needs_nvrtc
def test_kernels_wait_for_the_previous_grid_before_any_global_access(report):
    """lqq launches its sm_90 kernels with programmatic dependent launch
    (lqq/launch.py): a kernel may start while the previous one still runs, so
    griddepcontrol.wait (SASS ACQBULK) must come before any global access on
    every path through the kernel (sass.global_before follows the branches;
    the first ACQBULK in code order is not enough: in the Hopper GEMM it is
    the consumers', and the producer's comes thousands of instructions later).

    The one exception: the Hopper GEMM's producer issues the first stages'
    packed-weight copies (3-D TMA, UTMALDG.3D) before its wait; no kernel
    writes the packed weights, and gpu_gemm.packed waits on the host for the
    packing kernels before any GEMM is queued. Nothing else may come
    early: no activation tile (2-D TMA, UTMALDG.2D), no LDG of scales or
    partial sums. Where the config splits registers (setmaxnreg), the early
    copies must also lie in the producer's branch, past its setmaxnreg.dec
    (USETMAXREG.DEALLOC): paths that have not passed it reach no global
    access before a wait. Configs without the split have no instruction that
    marks the producer's branch in the SASS; for them the path check (only
    weight copies before a wait, on any path) is what holds."""
    arch, rows = report
    for r in rows:
        if arch != "sm_90a":                # griddepcontrol is sm_90+: compiled out
            assert r["before_grid_wait"] is None, r["name"]
            continue
        assert r["sass"].get("ACQBULK") and r["sass"].get("PREEXIT"), r["name"]
        early = r["before_grid_wait"]
        if r["family"] != "gemm_wgmma_sm90":
            assert early == [], (r["name"], early)
            continue
        assert early and set(early) == {"UTMALDG.3D"}, (r["name"], early)
        outside = r["before_grid_wait_outside_producer"]
        if r["config"]["REGS"]:
            assert outside == [], (r["name"], outside)
        else:
            assert outside is None, r["name"]


def test_global_before_follows_the_branches():
    """sass.global_before on hand-written SASS: a predicated branch goes both
    ways, an unpredicated one only to its target, EXIT ends a path, a call
    returns past itself; an indirect branch before the wait cannot be read."""
    from lqq import sass
    text = """
        /*0000*/                   S2R R0, SR_TID.X ;
        /*0010*/               @P0 BRA 0x60 ;
        /*0020*/                   USETMAXREG.TRY_ALLOC.CTAPOOL UP0, 0xe8 ;
        /*0030*/                   ACQBULK ;
        /*0040*/                   LDG.E R2, desc[UR4][R2.64] ;
        /*0050*/                   EXIT ;
        /*0060*/                   USETMAXREG.DEALLOC.CTAPOOL 0x28 ;
        /*0070*/                   UTMALDG.3D [UR8], [UR36] ;
        /*0080*/                   CALL.REL.NOINC 0x100 ;
        /*0090*/              @!P1 BRA 0xc0 ;
        /*00a0*/                   ACQBULK ;
        /*00b0*/                   UTMALDG.2D [UR8], [UR36] ;
        /*00c0*/                   BRA 0xe0 ;
        /*00d0*/                   STG.E desc[UR4][R2.64], R0 ;
        /*00e0*/              @!P1 ACQBULK ;
        /*00f0*/                   EXIT ;
        /*0100*/                   LDG.E.CONSTANT R3, desc[UR4][R2.64] ;
        /*0110*/                   RET.REL.NODEC R4 0x0 ;
    """
    # @!P1 skips the wait at 0xa0 and reaches 0xe0 (a predicated wait may not
    # run); the STG at 0xd0 is dead code; the callee's LDG runs before any wait
    assert sass.global_before(text) == ["UTMALDG.3D", "LDG.E.CONSTANT"]
    assert sass.global_before(text, (sass.GRID_WAIT, sass.PRODUCER_DEC)) == []
    waited = text.replace("@!P1 BRA 0xc0", "NOP").replace("CALL.REL.NOINC 0x100", "NOP")
    assert sass.global_before(waited) == ["UTMALDG.3D"]
    assert sass.global_before(text.replace("ACQBULK", "NOP")) is None, "no wait at all"
    with pytest.raises(ValueError, match="indirect"):
        sass.global_before(text.replace("@!P1 BRA 0xc0", "BRX R4 -0xa0"))
    assert sass.global_before(text.replace("/*00d0*/                   STG.E",
                                           "/*00d0*/                   BRX R4 -0xe0 ;\n"
                                           "        /*00d8*/                   STG.E")) \
        == ["UTMALDG.3D", "LDG.E.CONSTANT"], "an indirect branch no early path reaches is fine"


@needs_nvrtc
def test_show_prints_source_and_sass():
    name = configs.MMA_CONFIGS[0].name
    src = subprocess.run([sys.executable, "-m", "lqq", "kernels", "--show", name], capture_output=True,
                         text=True, cwd=ROOT)
    assert src.returncode == 0 and "void __launch_bounds__" in src.stdout and "mad.lo.u32" in src.stdout
    bad = subprocess.run([sys.executable, "-m", "lqq", "kernels", "--show", "nope"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "no kernel named" in bad.stderr


SHAPES = [(1, 64, 64), (3, 100, 96), (17, 4096, 4096), (100, 130, 384), (257, 28672, 4096),
          (1, 57344, 8192),
          (1024, 8192, 28672), (16, 57344, 8192), (8, 4096, 14336), (4096, 6144, 4096),
          (1, 1, 32), (9, 63, 65536), (96, 8192, 8192), (160, 4096, 4096),
          (192, 57344, 8192), (224, 4096, 14336), (65, 100, 4096),
          (128, 57344, 8192), (100, 8192, 8192), (48, 8192, 8192), (64, 6144, 4096),
          (32, 8192, 8192), (60, 28672, 4096), (384, 6144, 4096), (512, 4096, 14336),
          (300, 4096, 4096), (448, 4096, 4096), (400, 1024, 4096),
          (600, 57344, 8192), (2048, 8192, 8192),
          (16, 2048, 2048), (40, 512, 2048), (64, 4096, 4096), (12, 2048, 8192), (256, 28672, 4096),
          (16, 512, 3584), (128, 1024, 1024), (300, 2048, 512), (1, 4096, 1024), (200, 4096, 1024)]


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("sms", [1, 78, 132])
def test_heuristic_plans_are_legal(M, N, K, sms):
    p = configs.heuristic(M, N, K, sms)
    Kb = -(-K // packing.K_ALIGN) * 2
    Nb = -(-N // 64)
    assert p.splits >= 1 and p.kb_per_split >= 1
    assert (p.splits - 1) * p.kb_per_split < Kb <= p.splits * p.kb_per_split, "no empty split"
    assert p.grid == (-(-Nb // p.config.RB), -(-M // p.config.BM), p.splits)
    if isinstance(p.config, configs.DecodeConfig):
        assert M <= p.config.BM and p.kb_per_split <= p.config.KBMAX
    assert p.config in configs.MMA_CONFIGS + configs.DECODE_CONFIGS


def _legal_grids(grid_ctas):
    """(M, N, K, cfg, ctas, tiles, Q, slots, plan) wherever grid_ctas(cfg, M,
    N, K, 132) gives a grid on SHAPES and the shipped Hopper configs, each plan
    on exactly that grid and legal; at least one."""
    found = []
    for M, N, K in SHAPES:
        for cfg in configs.WGMMA_CONFIGS:
            c = grid_ctas(cfg, M, N, K, 132)
            if c is None:
                continue
            tiles, Q = configs.wgmma_units(cfg, M, N, K)
            p = configs.plan(cfg, M, N, K, ctas=c)
            assert p.grid[0] == c and configs.why_illegal(p, M, N, K) is None
            found.append((M, N, K, cfg, c, tiles, Q, 132 * cfg.MINB, p))
    assert found
    return found


def test_aligned_grids_keep_every_cta_inside_one_tile():
    """configs.aligned_ctas: tiles x a divisor of a tile's units (so each CTA's
    units lie in one tile), within the slots and at least 90% of them, else
    None; autotune times it beside the other grids."""
    W = configs.WgmmaConfig
    assert configs.aligned_ctas(W(128, 4), 128, 4096, 4096, 132) == 128      # 32 tiles x 4
    assert configs.aligned_ctas(W(8, 8), 1, 4096, 4096, 132) == 256          # two CTAs per SM
    assert configs.aligned_ctas(W(128, 4), 128, 6144, 4096, 132) is None, "96 of 132 slots"
    assert configs.aligned_ctas(W(256, 4), 4096, 4096, 4096, 132) is None, "more tiles than slots"
    for M, N, K, cfg, c, tiles, Q, slots, p in _legal_grids(configs.aligned_ctas):
        assert c % tiles == 0 and Q % (c // tiles) == 0 and 0.9 * slots <= c <= slots
    assert any(p.config == W(128, 4) and p.grid[0] == 128
               for p in configs.candidates(128, 4096, 4096, 132, wgmma=True))


def test_stream_k_owner_groups_fit_the_register_budget():
    """WgmmaConfig.SK_GROUP: the owner loads up to four contributors' slots at
    once on 8-, 32- and 64-token tiles (BN/2 sums a thread each), within 16
    more registers on the tight configs (two CTAs per SM, four or more
    consumers), 64 on the rest; 16-token tiles, wider ones and the KS configs
    keep the loop (their code unchanged)."""
    W = configs.WgmmaConfig
    assert W(8, 8).SK_GROUP == 4 and W(16, 8).SK_GROUP == 1          # two CTAs per SM: 80 registers
    assert W(32, 8).SK_GROUP == 4 and W(64, 4).SK_GROUP == 2         # 168 registers
    assert W(64, 8, C=4).SK_GROUP == 1 and W(32, 8, C=4).SK_GROUP == 1
    assert W(64, 4, KS=2).SK_GROUP == 1
    for cfg in configs.WGMMA_CONFIGS + configs.FUSED_CONFIGS:
        tight = cfg.MINB > 1 or cfg.C >= 4
        assert cfg.SK_GROUP in (1, 2, 4)
        assert cfg.SK_GROUP * cfg.BN // 2 <= (16 if tight else 64) or cfg.SK_GROUP == 1
        assert cfg.BN <= 64 or cfg.SK_GROUP == 1
        assert cfg.spec().params["SK_GROUP"] == cfg.SK_GROUP


def test_whole_tile_grids_give_each_cta_whole_tiles():
    """configs.whole_tile_ctas: where tiles outnumber the slots, tiles / d CTAs
    of d whole tiles each (no partial sums), at least 80% of the slots, else
    None; an autotune candidate, and the heuristic's grid only for 256-token
    tiles at two a CTA, up to 256 tokens (where it was timed)."""
    W = configs.WgmmaConfig
    assert configs.whole_tile_ctas(W(128, 4), 128, 28672, 4096, 132) == 112    # 224 tiles x 2
    assert configs.whole_tile_ctas(W(128, 4), 128, 4096, 4096, 132) is None, "fewer tiles than slots"
    assert configs.whole_tile_ctas(W(128, 4, C=3), 128, 28672, 4096, 132) is None, "150 tiles: 75 CTAs"
    assert configs.whole_tile_ctas(W(128, 4, KS=2), 128, 57344, 8192, 132) is None, "KS grids are fixed"
    for M, N, K, cfg, c, tiles, Q, slots, p in _legal_grids(configs.whole_tile_ctas):
        assert tiles > slots and tiles % c == 0 and 0.8 * slots <= c <= slots
        # stream-K's ranges (streamk.j2: floor(U p / P)) end on tile boundaries
        U = tiles * Q
        assert all(U * i // c % Q == 0 for i in range(c + 1))
        assert (configs.heuristic(M, N, K, 132, wgmma=True) != p or c in (tiles, slots)
                or (cfg.BN == 256 and M <= 256 and tiles == 2 * c))
    assert any(p.config == W(128, 4) and p.grid[0] == 112
               for p in configs.candidates(128, 28672, 4096, 132, wgmma=True))
    for M in (193, 256):
        p = configs.heuristic(M, 28672, 4096, 132, wgmma=True)
        assert (p.config.BN, p.grid) == (256, (112, 1, 1)), "224 tiles, two a CTA"
    for M, N, K in ((512, 28672, 4096), (256, 57344, 8192), (1024, 8192, 8192)):
        p = configs.heuristic(M, N, K, 132, wgmma=True)
        assert (p.config.BN, p.grid[0]) == (256, 132), "four tiles a CTA, or past 256 tokens: stream-K"


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("sms", [1, 78, 132])
def test_hopper_heuristic_plans_are_legal(M, N, K, sms):
    p = configs.heuristic(M, N, K, sms, wgmma=True)
    assert isinstance(p.config, configs.WgmmaConfig) and p.config in configs.WGMMA_CONFIGS, \
        "the Hopper kernel takes every M, decode of small layers too"
    assert configs.why_illegal(p, M, N, K) is None
    tiles, Q = configs.wgmma_units(p.config, M, N, K)
    slots = sms * p.config.MINB
    # 9..512 tokens on a layer of at most TINY_LAYER weights: 64-token tiles
    # (128 past 256 tokens) split between clusters of four (at most 8 tiles)
    # or two, each CTA streaming 512..2048 of K, else whole tiles at K <= 1024
    tiny = configs.tiny_layer_tile(M, N, K, sms)
    assert (tiny is not None) <= (8 < M <= 512 and N * K <= configs.TINY_LAYER)
    if tiny:
        assert p.config == tiny and tiny.C == 2 and tiny.BN == (64 if M <= 256 else 128), p
        if tiny.KS:
            assert p.grid[0] == tiny.KS * tiles <= 0.97 * slots and Q % tiny.KS == 0
            assert 512 <= Q * packing.K_ALIGN // tiny.KS <= 2048, "each CTA streams 512..2048 of K"
            assert tiny.KS == 2 or tiles <= 8, "clusters of four on at most 8 tiles"
        else:
            assert M > 16 and K <= 1024 and p.grid[0] == tiles <= slots, "whole tiles, one a CTA"
        return
    if K <= 1024 and tiles <= slots and not p.config.KS:
        assert p.grid[0] == tiles, "whole tiles at K <= 1024, where they fit one wave"
    if p.config.KS:
        # split in clusters of two (configs.cluster_split): 33..512 tokens, two
        # consumers, two CTAs per tile filling 70-97% of the SMs
        assert p.config.KS == 2 and p.config.C == 2 and 33 <= M <= 512, p
        assert p.grid[0] == 2 * tiles and 0.7 * slots <= p.grid[0] <= 0.97 * slots and Q % 2 == 0
        before = configs.wgmma_for(M, N, K, sms)
        assert p.config.BN >= before.BN or (N * K <= configs.TINY_LAYER and M <= 256), \
            "half the tokens on tiny layers up to 256 tokens only"
        assert packing.round_up(M, p.config.BN) <= packing.round_up(M, before.BN), "no more padded tokens"
        return
    assert not (33 <= M <= 512 and p.config.C == 2 and 0.7 * slots <= 2 * tiles <= 0.97 * slots
                and Q % 2 == 0 and p.config.BN in (64, 128, 256)), "a tile the clusters of two take"
    aligned = configs.aligned_ctas(p.config, M, N, K, sms)
    whole = configs.whole_tile_ctas(p.config, M, N, K, sms)
    if p.grid[0] == whole and whole not in (tiles, aligned or min(slots, tiles * Q)):
        assert p.config.BN == 256 and M <= 256 and tiles == 2 * whole, "two whole 256-token tiles a CTA"
    else:
        assert p.grid[0] in (tiles, aligned or min(slots, tiles * Q)), \
            "one CTA per tile, or one wave of stream-K (CTAs inside one tile where that keeps 90% of the slots)"
    if aligned and p.grid[0] != tiles:
        assert p.grid[0] % tiles == 0 and Q % (p.grid[0] // tiles) == 0 and p.grid[0] >= 0.9 * slots
    if p.grid[0] == tiles and tiles > slots:
        assert -(-tiles // slots) * slots <= 1.08 * tiles, "whole waves, nearly"
    if p.grid[0] == tiles and tiles * Q > slots:
        assert tiles >= 0.7 * sms or K <= 1024, "stream-K when one CTA per tile leaves SMs idle (from 2048 of K)"
    small = N * K <= configs.SMALL_LAYER
    big = N * K >= configs.BIG_LAYER
    if M <= 128:
        assert p.config.BN >= M, "one tile covers the tokens up to 128"
    if 128 < M <= 256 and not small:
        assert p.config.BN >= M, "one tile covers up to 256 tokens on larger layers"
    two_ctas_of_three = M <= 8 and big and configs.fused_pays(
        configs.wgmma_plan(configs.WIDE_DECODE[8], M, N, K, sms), M, K)
    assert (p.config.C == 4) == (16 < M <= 64 and (big or (M <= 32 and N >= 8192 and N * K > configs.TINY_LAYER))
                                 or (M <= 16 and N * K >= configs.MID_LAYER and not two_ctas_of_three)), \
        "four consumer warpgroups for 17..64 tokens on large layers, 17..32 on wide ones, " \
        "up to 16 from MID_LAYER weights (but where the two-CTA decode tile fuses the quantization)"
    one_wave_of_192_rows = (256 < M and p.config.BN == 128
                            and configs.wgmma_units(configs.WgmmaConfig(128, 6, 2), M, N, K)[0] > sms
                            >= configs.wgmma_units(configs.WgmmaConfig(128, 6, 3), M, N, K)[0])
    assert (p.config.C == 3) == (64 < M <= 96 or (128 < M <= 192 and small)
                                 or (96 < M <= 128 and big) or two_ctas_of_three
                                 or one_wave_of_192_rows), \
        "three consumer warpgroups for 65..96 tokens, 97..128 on large layers, " \
        "129..192 on small layers, decode of up to 8 tokens on large ones, and 257..1023 " \
        "where 192-row tiles make one wave and 128-row ones do not"
    if p.config.BN == 256:
        assert p.config.STAGES == 4, "four stages"
        if tiles > slots:
            assert p.grid[0] == min(slots, tiles * Q) or (M <= 256 and tiles == 2 * p.grid[0]), \
                "one stream-K wave past one wave, or two whole tiles a CTA up to 256 tokens"
    assert (p.config.MINB == 2) == (M <= 16 and p.config.C != 4), "two CTAs per SM for decode tiles"


def test_short_tiles_in_many_waves_take_one_stream_k_wave():
    """Measured on the H100 (RESULTS.md): 28672 x 4096 at M = 4096 (3584 tiles
    of 32 k-blocks) is faster on one persistent wave."""
    assert configs.heuristic(4096, 28672, 4096, 132, wgmma=True).grid == (132, 1, 1)
    assert configs.heuristic(1024, 28672, 4096, 132, wgmma=True).grid == (132, 1, 1)


def test_wide_tiles_past_one_wave_take_one_stream_k_wave():
    """256-token tiles past one wave of CTAs run as one stream-K wave (H200
    autotune, 2026-12-02): 4096 x 14336 at M = 4096 (512 tiles of 112
    k-blocks, long ones) 0.306 against 0.308 ms on one CTA per tile. Known
    losses of the rule, kept for one rule over all M: 4096 x 4096 at M = 4096
    (512 tiles, 3.9 waves) 0.0993 against 0.0987 ms, and at M = 2048 (256
    tiles, 1.9 waves) 0.0524 against 0.0496."""
    assert configs.heuristic(4096, 4096, 14336, 132, wgmma=True).grid == (132, 1, 1)
    assert configs.heuristic(4096, 4096, 4096, 132, wgmma=True).grid == (132, 1, 1)
    assert configs.heuristic(2048, 4096, 4096, 132, wgmma=True).grid == (132, 1, 1)
    # not below one wave: 96 tiles on 132 SMs take one CTA each
    p = configs.heuristic(256, 12288, 4096, 132, wgmma=True)
    assert p.config.BN == 256 and p.grid == (96, 1, 1)


def test_register_splits_fit_the_registers_held_at_launch():
    """setmaxnreg.inc hangs if the CTA's launch-time registers cannot cover the
    split: every shipped config fits, a two-consumer 128-token tile sized for
    two CTAs per SM (its default split 40/232) would not."""
    assert all(configs.register_split_fits(c) for c in configs.WGMMA_CONFIGS)
    # unsigned A (UA) on the decode tiles of four consumers, which split no registers
    assert configs.WgmmaConfig(8, 8, 4).UA and configs.WgmmaConfig(8, 8, 4).REGS == ()
    assert not configs.fused(configs.WgmmaConfig(8, 8, 4), "f16").UA
    assert not any(c.UA for c in (configs.WgmmaConfig(64, 8, 4), configs.WgmmaConfig(8, 8, 2),
                                  configs.WgmmaConfig(8, 7, 3, 2), configs.WgmmaConfig(32, 8, 4)))
    assert configs.WgmmaConfig(8, 7, 3, 2).REGS == (24, 72)
    assert configs.WgmmaConfig(8, 7, 6).REGS == (24, 80) and not configs.WgmmaConfig(8, 7, 6).UA
    wide = configs.WgmmaConfig(128, 4, 2, 2)
    assert wide.REGS == (40, 232) and not configs.register_split_fits(wide)


def test_unsigned_a_renders_only_where_configured():
    """UA kernels (and only they) issue u8 x s8 wgmmas and count the summing
    warp on each stage's empty barrier; none of them has a setmaxnreg split,
    which would leave the summing warps the producer's 24 registers."""
    for c in configs.WGMMA_CONFIGS + configs.FUSED_CONFIGS:
        src = c.spec().render()
        assert (".u8.s8" in src) == c.UA, c.tag
        assert ("128 * NCONS + 1)" in src) == c.UA, c.tag
        assert not (c.UA and c.REGS), c.tag
    assert any(c.UA for c in configs.WGMMA_CONFIGS)


def test_forced_config_takes_the_printed_kernel_names():
    """`lqq kernels` prints full names: LQQ_FORCE_CONFIG takes them, with or
    without the prefix, with a split or CTA count appended."""
    for c in configs.MMA_CONFIGS + configs.DECODE_CONFIGS + configs.WGMMA_CONFIGS + configs.FUSED_CONFIGS:
        short = c.name[len(configs.KERNEL_PREFIX):]
        suffix = "_c132" if isinstance(c, configs.WgmmaConfig) else "_s2"
        assert configs._parse_forced(c.name) == (c, 1, None)
        assert configs._parse_forced(short.upper())[0] == c
        cfg, splits, ctas = configs._parse_forced(short + suffix)
        assert cfg == c and (ctas == 132 if suffix == "_c132" else splits == 2)
    with pytest.raises(KeyError):
        configs._parse_forced("mma_sm80_decode_bm8_rb1_pf3")
    for wrong_arch in ("wgmma_sm80_bn128_st6", "mma_sm90_bm32_rb1"):
        with pytest.raises(KeyError):
            configs._parse_forced(wrong_arch)


def test_fused_configs_fit_their_ctas_per_sm(report):
    """configs.fused sizes the stages beside the raw values assuming at most
    2048 bytes of static shared memory per CTA: what ptxas reports."""
    arch, rows = report
    if arch != "sm_90a":
        pytest.skip("the Hopper kernels are sm_90a only")
    static = {r["name"]: r["smem_bytes"] for r in rows}
    for cfg in configs.FUSED_CONFIGS:
        assert static[cfg.name] <= 2048, cfg.name
        assert (cfg.smem_bytes() + static[cfg.name]) * cfg.MINB <= configs.SMEM_PER_SM, cfg.name


def test_fused_decode_plan_eligibility(monkeypatch):
    """lqq.gemm on fp16/bf16 input quantizes inside the Hopper kernel where the
    plan is one of the decode tiles FUSED_CONFIGS has, covering every token,
    with K % 8 == 0 and M x K small enough for each CTA to read the rows
    (LQQ_FUSED_QUANT=1), and by default only where that measured faster; a
    forced plan stays as forced, and a forced fused config needs its input."""
    from lqq import gpu_gemm
    ml_dtypes = pytest.importorskip("ml_dtypes")
    monkeypatch.delenv("LQQ_FORCE_CONFIG", raising=False)
    monkeypatch.delenv("LQQ_FUSED_QUANT", raising=False)

    def fused(M, N, K, dtype=np.float16):
        plan = configs.heuristic(M, N, K, 132, wgmma=True)
        return gpu_gemm.fused_plan(np.zeros((M, K), dtype), plan)

    # by default: the measured wins (Llama-3-8B gate_up at M = 1, 2) ...
    for M, N, K in ((1, 28672, 4096), (2, 28672, 4096), (1, 16384, 8192), (1, 57344, 4096)):
        assert fused(M, N, K).config == configs.fused(configs.WIDE_DECODE[8], "f16"), (M, N, K)
    # ... and not the measured losses
    for M, N, K in ((1, 4096, 4096), (1, 4096, 14336), (1, 8192, 8192), (4, 8192, 8192),
                    (8, 28672, 4096), (1, 57344, 8192), (1, 8192, 28672)):
        assert fused(M, N, K) is None, (M, N, K)
    monkeypatch.setenv("LQQ_FUSED_QUANT", "1")

    p = fused(1, 4096, 4096)
    assert p.config == configs.fused(configs.WgmmaConfig(8, 8), "f16")
    assert p.grid == configs.heuristic(1, 4096, 4096, 132, wgmma=True).grid
    assert fused(2, 28672, 4096).config == configs.fused(configs.WIDE_DECODE[8], "f16")
    assert fused(8, 28672, 4096) is None, "one CTA of four for 8 tokens: no fused variant shipped"
    assert fused(3, 4096, 4096, ml_dtypes.bfloat16).config.FX == "bf16"
    assert fused(16, 57344, 2048).config == configs.fused(configs.WgmmaConfig(16, 8, 4), "f16")
    assert fused(1, 4096, 4096, np.float32) is None, "fp16 and bf16 only"
    assert fused(9, 4096, 4096) is None, "M x K past FUSED_MAX_VALUES"
    assert fused(1, 4096, 4100) is None, "K % 8"
    plan = configs.heuristic(1, 4096, 4096, 132, wgmma=True)
    assert gpu_gemm.fused_plan(np.zeros((1, 8192), np.float16)[:, ::2], plan) is None, "strided x"
    base = np.zeros(4096 + 64, np.float16)
    skew = (-base.ctypes.data // 2) % 8 + 1             # 2 bytes past a 16-byte boundary
    assert gpu_gemm.fused_plan(base[skew:skew + 4096].reshape(1, 4096), plan) is None, "x off 16 bytes"
    assert gpu_gemm.fused_plan(base[skew - 1:skew + 4095].reshape(1, 4096), plan) is not None
    assert fused(1, 1024, 1024).config == configs.fused(configs.WgmmaConfig(8, 8), "f16"), \
        "small layers' decode runs on the Hopper kernel too"
    assert fused(64, 8192, 256) is None, "not a decode tile"
    monkeypatch.setenv("LQQ_FUSED_QUANT", "0")
    assert fused(1, 4096, 4096) is None
    monkeypatch.setenv("LQQ_FUSED_QUANT", "1")
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn8_st8_c5")
    assert fused(1, 4096, 4096) is None, "a forced plan stays as forced"
    forced = configs.plan(configs.fused(configs.WgmmaConfig(8, 8), "f16"), 1, 4096, 4096, ctas=5)
    assert gpu_gemm.fused_plan(np.zeros((1, 4096), np.float16), forced) is forced
    with pytest.raises(ValueError, match="quantizes f16 input"):
        gpu_gemm.fused_plan(np.zeros((1, 4096), np.float32), forced)


def test_overlap_of_byte_spans():
    """lqq.gemm does not fuse when out shares bytes with x (other CTAs would
    still read x where one writes out)."""
    from types import SimpleNamespace as NS

    from lqq import gpu_gemm
    arr = lambda ptr, n: NS(data=NS(ptr=ptr), nbytes=n)
    assert gpu_gemm._overlap(arr(0, 100), arr(99, 10)) and gpu_gemm._overlap(arr(50, 10), arr(0, 100))
    assert not gpu_gemm._overlap(arr(0, 100), arr(100, 10)) and not gpu_gemm._overlap(arr(110, 5), arr(0, 110))


def test_kernels_report_targets():
    """sm_90a: every kernel; any other target from sm_80: the portable families
    (the Hopper kernel is sm_90a only); anything else: an error, not an empty table."""
    from lqq import report
    every = report.specs_for("sm_90a")
    portable = report.specs_for("sm_86")
    assert {s.family for s in every} - {s.family for s in portable} == {"gemm_wgmma_sm90"}
    assert report.specs_for("sm_90") == portable == report.specs_for("sm_80")
    assert report.specs_for("sm_100f") == portable, "the spellings LQQ_ARCH takes"
    for bad in ("sm_75", "sm90", "gfx942"):
        with pytest.raises(ValueError, match="not a target"):
            report.specs_for(bad)
    with pytest.raises(ValueError, match="sm_90a only"):
        report.show(configs.WgmmaConfig(8, 8).name, "sm_90", "source")


def test_forced_config_parsing(monkeypatch):
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "decode_bm16_rb2_pf8_s4")
    p = configs.forced(5, 4096, 4096)
    assert p.config == configs.DecodeConfig(16, 2, 8) and p.splits == 4
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn128_st4_s3")
    p = configs.forced(100, 4096, 4096)
    assert p.config == configs.WgmmaConfig(128, 4) and p.kb_per_split % 2 == 0
    assert p.grid == (96, 1, 1), "32 tiles of 128 rows x 128 tokens, each split in 3"
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn16_st8_c7")
    assert configs.forced(3, 4096, 4096).grid == (7, 1, 1)
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn16_st8_c100000")
    assert configs.forced(3, 4096, 4096).grid == (32 * 32, 1, 1), "no more CTAs than units"
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "bm32_rb1")
    assert configs.forced(5, 4096, 4096).config == configs.MmaConfig(32, 1)
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn64_st8_wg4_c132")
    p = configs.forced(64, 57344, 8192)
    assert p.config == configs.WgmmaConfig(64, 8, 4) and p.grid == (132, 1, 1)
    assert configs.wgmma_units(p.config, 64, 57344, 8192) == (224, 64), "256 rows per tile"
    monkeypatch.setenv("LQQ_FORCE_CONFIG", "wgmma_bn8_st7_wg3_mb2_c264")
    p = configs.forced(1, 57344, 8192)
    assert p.config == configs.WgmmaConfig(8, 7, 3, 2) and p.grid == (264, 1, 1)
    assert p.config.MINB == 2 and p.config.REGS == (24, 72) and p.config.tag == "bn8_st7_wg3_mb2"
    for bad in ("bm7_rb1", "decode_bm8_rb1", "mma_bm32_rb1_x2", "hello", "wgmma_bn16_st8_c0",
                "wgmma_bn24_st8", "mma_bm32_rb1_c4", "wgmma_bn128_st6_wg4", "wgmma_bn64_st8_wg5",
                "wgmma_bn8_st7_wg3", "wgmma_bn8_st8_mb3"):
        monkeypatch.setenv("LQQ_FORCE_CONFIG", bad)
        with pytest.raises(ValueError, match="LQQ_FORCE_CONFIG"):
            configs.forced(5, 4096, 4096)


def test_mma_span_mul_hi_counts_between_the_first_and_last_igmma():
    from lqq import sass
    text = """
        /*0000*/                   IMAD.HI R1, R2, 0x2aaaaaab, RZ ;
        /*0010*/                   IGMMA.64x128x32.S8.S8 R24, R100, gdesc[UR4], R24 ;
        /*0020*/                   IMAD.HI R21, R20, 0x2aaaaaab, RZ ;
        /*0030*/                   IMAD R3, R4, 0x3, R5 ;
        /*0040*/                   IGMMA.64x128x32.S8.S8 R24, R104, gdesc[UR4], R24, gsb0 ;
        /*0050*/                   IMAD.HI.U32 R6, R7, 0x55555556, RZ ;
"""
    assert sass.mma_span_mul_hi(text) == 1
    assert sass.mma_span_mul_hi(text.replace("IMAD.HI R21", "IMAD R21")) == 0
    assert sass.mma_span_mul_hi("        /*0000*/  IMAD.HI R1, R2, 0x3, RZ ;\n") is None


def test_igmma_operand_a_parser():
    from lqq import sass
    text = ("/*1cf0*/  IGMMA.64x256x32.S8.S8 R24, R164, gdesc[UR12], R24 ;\n"
            "/*1d00*/  IGMMA.64x64x32.S8.S8 R24, R60, gdesc[UR8], R24, gsb0 ;\n"
            "/*1d10*/  IGMMA.64x128x32.S8.S8 R24, gdesc[UR4], gdesc[UR12], R24 ;\n"
            "/*1d20*/  IMMA.16816.S8.S8 R4, R8, R12, R4 ;\n")
    assert sass.igmma_operand_a(text) == {"register": 2, "shared": 1}


def test_wgmma_plan_that_overflows_the_unit_counters_is_illegal():
    cfg = configs.WgmmaConfig(8, 8)
    M, N, K = 200_000, 57344, 65536                 # 5.7e9 units of work: any grid
    for ctas in (1, 132):
        assert "32-bit" in configs.why_illegal(configs.plan(cfg, M, N, K, ctas=ctas), M, N, K)
    big = configs.WgmmaConfig(256, 5)               # 1.8e8 units: fine
    assert configs.why_illegal(configs.plan(big, M, N, K, ctas=132), M, N, K) is None


def test_activation_quantizer_shapes():
    """Few tokens: the wide kernel; many: two passes over rows of at most 32 KB
    (or too long to hold), held rows of 32-64 KB; `lqq kernels` lists every
    shape for every input type."""
    names = {k.name for k in configs.all_kernels()}
    assert configs.activation_config(1, 2 * 28672) == configs.ACT_WIDE
    assert configs.activation_config(512, 2 * 4096) == configs.ACT_WIDE
    assert configs.activation_config(513, 2 * 4096) == configs.ACT_NARROW
    assert configs.activation_config(4096, 2 * 16384) == configs.ACT_NARROW
    assert configs.activation_config(4096, 2 * 16385) == configs.ACT_LONG
    assert configs.activation_config(4096, 4 * 16384) == configs.ACT_LONG, "fp32 K = 16384"
    assert configs.activation_config(4096, 4 * 16385) == configs.ACT_NARROW, "too long to hold"
    long = configs.ACT_LONG
    assert long.THREADS * long.VPT * 16 == configs.ACT_LONG_ROW_BYTES[1], "holds what it takes"
    for cfg in configs.ACT_CONFIGS:
        assert all(cfg.spec(k).name in names for k in configs.ACT_INPUTS)


def test_hopper_heuristic_boundaries():
    """The measured thresholds of wgmma_for, written out (RESULTS.md)."""
    W = configs.WgmmaConfig
    big, small = (8192, 28672), (4096, 4096)
    # decode: one CTA of four consumer warpgroups per SM from 12288 x 4096
    # weights, but two CTAs of three on the largest layers where the
    # quantization fuses into them
    assert configs.wgmma_for(1, 4096, 4096) == W(8, 8), "Hopper decode on small layers too"
    assert configs.wgmma_for(1, 6144, 4096) == W(8, 8)
    assert configs.wgmma_for(16, 16384, 2048) == W(16, 8), "below MID_LAYER"
    for M, N, K in ((1, 57344, 8192), (4, 57344, 8192), (1, 8192, 28672), (2, 16384, 8192),
                    (8, 28672, 4096), (3, 28672, 4096), (1, 12288, 4096), (8, 10240, 8192),
                    (1, 4096, 14336), (4, 8192, 8192)):
        assert configs.wgmma_for(M, N, K) == W(8, 8, 4), (M, N, K)
    for M, N, K in ((1, 16384, 8192), (1, 28672, 4096), (2, 28672, 4096)):
        assert configs.wgmma_for(M, N, K) == configs.WIDE_DECODE[8], (M, N, K)
    assert configs.wgmma_for(16, 12288, 4096) == W(16, 8, 4)
    assert configs.wgmma_for(16, 57344, 8192) == W(16, 8, 4)
    assert configs.wgmma_for(16, 10240, 8192) == W(16, 8, 4)
    # 17..64: four consumers on large layers, and up to 32 tokens on wide ones
    assert configs.wgmma_for(32, 8192, 8192) == W(32, 8, 4)
    assert configs.wgmma_for(32, 6144, 4096) == W(32, 8)
    assert configs.wgmma_for(32, 8192, 2048) == W(32, 8), "not on 4096 x 4096 weights or fewer"
    assert configs.wgmma_for(64, 28672, 4096) == W(64, 8, 4)
    assert configs.wgmma_for(64, 8192, 8192) == W(64, 8)
    assert configs.wgmma_for(64, 6144, 4096) == W(64, 4), "four stages below N = 8192"
    assert configs.wgmma_for(96, *big) == W(96, 6, 3)
    assert configs.wgmma_for(97, *big) == W(128, 6, 3), "three consumers on large layers"
    assert configs.wgmma_for(128, 28672, 4096) == W(128, 6, 3)
    # six stages from N = 8192, four below (the plan of 8192 x 8192 then splits in clusters)
    assert configs.wgmma_for(97, 8192, 8192) == W(128, 6)
    assert configs.wgmma_for(128, 10240, 8192) == W(128, 6)
    assert configs.wgmma_for(128, 4096, 14336) == W(128, 4)
    assert configs.wgmma_for(128, 57344, 8192) == W(128, 6, 3)
    assert configs.wgmma_for(129, *big) == W(192, 5)
    assert configs.wgmma_for(129, *small) == W(96, 6, 3), "two 96-token tiles on small layers"
    assert configs.wgmma_for(129, 6144, 4096) == W(96, 6, 3)
    assert configs.wgmma_for(129, 6144, 4160) == W(192, 5)
    assert configs.wgmma_for(192, *big) == W(192, 5)
    assert configs.wgmma_for(193, *big) == W(256, 4)
    assert configs.wgmma_for(193, *small) == W(128, 4)
    assert configs.wgmma_for(256, 8192, 2048) == W(256, 4), "N >= 8192 at M = 256"
    # 257..511 on wide layers: the token tile that pads less (a mostly empty
    # last tile is slow)
    assert configs.wgmma_for(384, 28672, 4096) == W(192, 5)
    assert configs.wgmma_for(320, 57344, 8192) == W(192, 5)
    assert configs.wgmma_for(448, 28672, 4096) == W(256, 4)
    assert configs.wgmma_for(257, 8192, 8192) == W(192, 5), "65 tokens of 192, not 1 of 256"
    assert configs.wgmma_for(257, *small) == W(128, 4)
    # 257..511 tokens on narrower layers: three consumers when that makes one wave
    assert configs.wgmma_for(384, 6144, 4096) == W(128, 6, 3), "96 tiles against 144"
    assert configs.wgmma_for(384, 6144, 4096, sm_count=200) == W(128, 4)
    assert configs.wgmma_for(512, 4096, 4096) == W(128, 4), "128 tiles of two slabs: one wave"
    assert configs.wgmma_for(512, 6144, 4096) == W(256, 4), "from 512 tokens past 4096 x 4096"
    assert configs.wgmma_for(2047, *big) == W(256, 4)
    assert configs.wgmma_for(2048, *big) == W(256, 4), "four stages at 2048 tokens too"


@pytest.mark.parametrize("group_size,K", [(32, 4096), (64, 1024), (128, 512), (256, 2048),
                                          (384, 384), (640, 1280)])
def test_producer_group_index_bumps_like_the_division(group_size, K):
    """The Hopper producer (gemm_wgmma_sm90.cu.j2) bumps the group index per
    k-block instead of dividing: from any starting k-block of a tile it must
    equal kq * 128 / group_size, and restart at 0 with the next tile."""
    Q = K // 128
    gpk = 128 // group_size if group_size <= 128 else 0
    kpg = 1 if group_size <= 128 else group_size // 128
    for start in range(Q):
        kq = start
        g, gsub = (kq * gpk, 0) if gpk else (kq // kpg, kq % kpg)
        for _ in range(2 * Q):
            assert g == kq * 128 // group_size, (start, kq)
            if gpk:
                g += gpk
            else:
                gsub += 1
                if gsub == kpg:
                    gsub, g = 0, g + 1
            kq += 1
            if kq == Q:
                kq, g, gsub = 0, 0, 0


def test_probe_build_is_separate_and_the_normal_kernels_carry_none_of_it():
    """benchmarks/probe_stages.py's timing build: its own kernel name (own cache
    entry) and one more argument; the kernels lqq.gemm runs render no probe."""
    cfg = configs.WgmmaConfig(256, 5)
    normal, probe = cfg.spec().render(), cfg.spec(probe=True).render()
    assert cfg.spec(probe=True).name == cfg.name + "_probe"
    assert "globaltimer" not in normal and "probe" not in normal.split(cfg.name)[1].split("{")[0]
    assert "globaltimer" in probe and "u64* __restrict__ probe" in probe


def test_every_hopper_config_fits_its_ring_and_staging_in_shared_memory():
    """The template places each consumer warp's epilogue staging buffer (EPI
    tokens x 32 bytes) past STAGES stages from a 1024-aligned base; the
    dynamic shared memory asked for covers that, within the opt-in limit
    (with the static shared memory besides: the test below, on the compiled
    kernels)."""
    for cfg in configs.WGMMA_CONFIGS:
        stage = cfg.BN * 128 + cfg.C * (4096 + 512)
        assert cfg.stage_bytes() % 1024 == 0 and cfg.stage_bytes() - stage < 1024
        end = 1023 + cfg.STAGES * cfg.stage_bytes() + cfg.C * 4 * cfg.EPI * 32
        end += cfg.ks_recv_bytes() if cfg.KS_PUSH else 0      # past the staging
        assert end <= cfg.smem_bytes() <= configs.SMEM_DYNAMIC_MAX, cfg.tag
        assert cfg.EPI == 0 or (cfg.EPI % 16 == 0 and cfg.BN % 16 == 0)
    # the clusters that push: two CTAs of two consumers where the buffer fits
    assert {c.tag for c in configs.WGMMA_CONFIGS if c.KS_PUSH} == {
        "bn64_st4_ks2", "bn128_st4_ks2", "bn64_st8_ks2", "bn128_st6_ks2", "bn256_st3_ks2"}
    # bn256_st4_ks2's ring leaves no room for a 64 KB buffer: it keeps the barriers
    assert not next(c for c in configs.WGMMA_CONFIGS if c.tag == "bn256_st4_ks2").KS_PUSH


SM90_RESERVED_SMEM = 1024       # per CTA, taken by the system on sm_90 (reservedSharedMemPerBlock)
SM90_SMEM_PER_SM = 233472       # 228 KiB an SM: static + dynamic + reserved of every resident CTA


@needs_nvrtc
def test_every_hopper_kernel_fits_static_and_dynamic_shared_memory(report):
    """A launch fails unless the kernel's static shared memory plus the
    dynamic amount it asks for (WgmmaConfig.smem_bytes) stays within the
    per-block opt-in limit, configs.SMEM_DYNAMIC_MAX (227 KiB on sm_90,
    cudaDevAttrMaxSharedMemoryPerBlockOptin, which does not count the 1 KiB
    the system reserves per CTA), and MINB CTAs of it, reservations included,
    must fit one SM's 228 KiB. The static figure is the compiled kernel's:
    cuobjdump's SHARED, which on sm_90 includes the reserved 1 KiB (checked
    against ptxas's own count, so a toolchain that changes it fails here)."""
    arch, rows = report
    if arch != "sm_90a":
        pytest.skip("the Hopper kernels are sm_90a only")
    cfgs = {c.name: c for c in configs.WGMMA_CONFIGS}
    rows = [r for r in rows if r["name"] in cfgs]
    assert {r["name"] for r in rows} == set(cfgs)
    for r in rows:
        cfg = cfgs[r["name"]]
        declared = r["smem_declared_bytes"]
        assert declared >= 2 * 8 * cfg.STAGES, ("the full and empty mbarriers at least", r["name"],
                                                r["compile_seconds"], r["cached"])
        assert r["smem_bytes"] == declared + SM90_RESERVED_SMEM, r["name"]
        assert declared + cfg.smem_bytes() <= configs.SMEM_DYNAMIC_MAX, (r["name"], declared)
        assert cfg.MINB * (r["smem_bytes"] + cfg.smem_bytes()) <= SM90_SMEM_PER_SM, r["name"]


def test_cluster_split_refuses_what_it_cannot_run(monkeypatch):
    """A KS config on a K whose k-blocks do not split evenly (a CTA would
    straddle two tiles and the cluster barriers would never meet) is refused
    before anything launches."""
    for cfg in (c for c in configs.WGMMA_CONFIGS if c.KS):
        monkeypatch.setenv("LQQ_FORCE_CONFIG", f"wgmma_{cfg.tag}")
        with pytest.raises(ValueError, match="cluster split-K"):
            configs.forced(16, 256, 128 * (cfg.KS + 1))
        assert configs.forced(16, 256, 128 * cfg.KS).grid == (cfg.KS * -(-256 // (64 * cfg.C)), 1, 1)


def test_cluster_ring_changes_only_the_depth():
    """cluster_ring keeps the cluster's tile (BN, C, KS) and swaps the ring
    where it was timed: eight stages for 64-token halves of one token tile,
    three for 256-token halves at K <= 4096, four elsewhere."""
    def pick(M, N, K):
        return configs.heuristic(M, N, K, 132, wgmma=True)
    assert pick(64, 8192, 8192).config.tag == "bn64_st8_ks2"
    assert pick(64, 6144, 4096).config.tag == "bn64_st8_ks2"      # 2048 of K a CTA
    assert pick(128, 4096, 4096).config.tag == "bn64_st4_ks2"     # two token tiles
    assert pick(256, 6144, 4096).config.tag == "bn256_st3_ks2"
    assert pick(512, 4096, 4096).config.tag == "bn256_st3_ks2"
    assert pick(256, 8192, 8192).config.tag == "bn256_st4_ks2"    # longer K
    assert pick(128, 8192, 8192).config.tag == "bn128_st4_ks2"
    for ks in (c for c in configs.WGMMA_CONFIGS if c.KS == 2 and c.C == 2 and c.STAGES == 4):
        for M in (33, 64, 65, 256):
            for K in (2048, 4096, 8192, 28672):
                r = configs.cluster_ring(ks, M, K)
                assert (r.BN, r.C, r.KS, r.MB, r.FX) == (ks.BN, ks.C, ks.KS, ks.MB, ks.FX) and r in configs.WGMMA_CONFIGS
                assert r.KS_PUSH or not ks.KS_PUSH


def test_tiny_layers_split_tiles_between_clusters_or_keep_them_whole():
    """9..512 tokens on layers of at most TINY_LAYER weights
    (configs.tiny_layer_tile): 64-token tiles (128 past 256 tokens) split
    between clusters of four where there are at most 8 tiles, of two where
    the pairs fit the SMs, so each CTA streams 512..2048 of K; else whole
    tiles at K <= 1024; else the general rules. Whole tiles at K <= 1024 at
    any M where they fit one wave (wgmma_grid)."""
    def pick(M, N, K, sms=132):
        p = configs.heuristic(M, N, K, sms, wgmma=True)
        return p.config.tag, p.grid[0]
    for M, N, K, want in (
            (9, 4096, 4096, ("bn64_st8_ks2", 64)), (16, 2048, 2048, ("bn64_st8_ks2", 32)),
            (40, 4096, 4096, ("bn64_st8_ks2", 64)), (64, 3584, 3584, ("bn64_st8_ks2", 56)),
            (16, 4608, 3584, ("bn64_st8_ks2", 72)), (16, 2048, 4096, ("bn64_st8_ks2", 32)),
            (64, 512, 2048, ("bn64_st4_ks4", 16)), (16, 512, 3584, ("bn64_st4_ks4", 16)),
            (64, 1024, 4096, ("bn64_st4_ks4", 32)), (128, 512, 2048, ("bn64_st4_ks4", 32)),
            (256, 512, 2048, ("bn64_st4_ks2", 32)),             # 16 tiles: pairs
            (128, 1024, 1024, ("bn64_st4_ks2", 32)), (256, 1024, 1024, ("bn64_st4_ks2", 64)),
            (512, 1024, 1024, ("bn128_st4_ks2", 64)), (512, 512, 2048, ("bn128_st4_ks2", 32)),
            (256, 2048, 512, ("bn64_st4", 64)),     # 256 of K a CTA in pairs: whole tiles
            (512, 2048, 512, ("bn128_st4", 64)), (256, 4096, 1024, ("bn64_st4", 128)),
            (16, 2048, 512, ("bn16_st8", 16)),      # up to 16 tokens wgmma_for's tile, whole
            (1, 4096, 1024, ("bn8_st8", 32)), (16, 14336, 1024, ("bn16_st8", 112))):
        assert pick(M, N, K) == want, (M, N, K)
    assert pick(1, 2048, 2048) == ("bn8_st8", 256), "stream-K from 2048 of K"
    assert pick(16, 2048, 8192)[0] == "bn16_st8", "4096 of K a CTA in pairs, 16 tiles: the general rules"
    assert pick(16, 6144, 4096)[0] == "bn16_st8", "a larger layer"
    assert pick(64, 4096, 14336)[0] == "bn64_st4", "a larger layer, longer K"
    assert pick(8, 4096, 4096)[0] == "bn8_st8", "decode of up to 8 tokens keeps its tile"
    assert pick(256, 4096, 4096) == ("bn128_st4_ks2", 128), "128 tiles: the pairs do not fit, cluster_split"
    assert pick(16, 4096, 4096, sms=60)[0] != "bn64_st8_ks2", "64 CTAs past 97% of 60 SMs"
    assert pick(16, 4096, 3968)[0] != "bn64_st8_ks2", "an odd count of k-blocks (31) does not halve"
    assert pick(16, 512, 2048, sms=12)[0] == "bn64_st8_ks2", "16 CTAs past 97% of 12 SMs: pairs"
    assert configs.tiny_layer_tile(9, 63, 65536, 1) is None, "16384 of K a CTA in clusters of four"


def test_forced_configs_of_every_family_still_plan(monkeypatch):
    """The check forced() runs (configs.why_illegal) knows every config lqq
    ships, the fused decode variants among them."""
    for text, (M, N, K) in (("wgmma_bn8_st8_fx16_c5", (1, 300, 1088)),
                            ("wgmma_bn16_st8_wg4_fxbf16_c3", (12, 600, 2048)),
                            ("wgmma_bn8_st7_wg3_mb2_c264", (1, 4096, 4096)),
                            ("decode_bm8_rb1_pf4_s8", (1, 4096, 4096)), ("mma_bm64_rb2", (64, 512, 512))):
        monkeypatch.setenv("LQQ_FORCE_CONFIG", text)
        assert configs.forced(M, N, K) is not None, text
    for cfg in configs.FUSED_CONFIGS:
        monkeypatch.setenv("LQQ_FORCE_CONFIG", f"wgmma_{cfg.tag}_c3")
        assert configs.forced(cfg.BN, 600, 2048).config == cfg
