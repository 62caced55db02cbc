"""The kernel pipeline on the CPU: templates, NVRTC, the on-disk cache, dumps,
SASS inspection and knobs. Needs libnvrtc (pip wheel is enough), no GPU."""
import hashlib
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from lqq import jit, knobs, nvrtc, sass

ROOT = Path(__file__).resolve().parent.parent
ARCH = "sm_90a"


def _nvrtc_missing() -> str | None:
    try:
        nvrtc.library()
    except RuntimeError as e:
        return str(e)
    return None


_MISSING = _nvrtc_missing()
needs_nvrtc = pytest.mark.skipif(_MISSING is not None,
                                 reason=f"libnvrtc not found, cannot compile: {_MISSING}")
needs_cuobjdump = pytest.mark.skipif(sass.find_tool("cuobjdump") is None,
                                     reason="cuobjdump not found (pip install nvidia-cuda-cuobjdump)")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test gets its own cache so the user's is never touched."""
    monkeypatch.setenv("LQQ_CACHE_DIR", str(tmp_path / "cache"))
    for var in ("LQQ_DUMP_DIR", "LQQ_DEBUG", "LQQ_ARCH", "LQQ_NVRTC"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "cache"


def _source(scale="1.0f"):
    return jit.render("_selftest.cu.j2", scale=scale)


def _compile(scale="1.0f", options=()):
    return jit.compile(_source(scale), "lqq_selftest", arch=ARCH, options=options)


def test_render_missing_parameter_raises():
    with pytest.raises(jinja2.UndefinedError, match="scale"):
        jit.render("_selftest.cu.j2")
    assert "2.0f" in _source("2.0f")


@needs_nvrtc
def test_cold_compile_then_hit_without_nvrtc(monkeypatch):
    cold = _compile()
    assert not cold.cached and cold.compile_seconds > 0
    assert cold.cubin_path.read_bytes()[:4] == b"\x7fELF"
    assert "Used" in cold.log          # ptxas -v output is kept

    def no_nvrtc(*args, **kwargs):
        raise AssertionError("NVRTC was called on a cache hit")
    monkeypatch.setattr(nvrtc, "compile", no_nvrtc)
    warm = _compile()
    assert warm.cached and warm.compile_seconds == 0.0
    assert (warm.key, warm.cubin_path, warm.log) == (cold.key, cold.cubin_path, cold.log)


@needs_nvrtc
def test_hit_from_fresh_process(cache):
    cold = _compile()
    code = ("from lqq import jit; c = jit.compile(jit.render('_selftest.cu.j2', scale='1.0f'), "
            "'lqq_selftest', arch='sm_90a'); print(c.cached, c.key)")
    env = {**os.environ, "LQQ_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["True", cold.key]


@needs_nvrtc
def test_corrupt_cubin_is_rebuilt(caplog):
    cold = _compile()
    good = cold.cubin_path.read_bytes()
    cold.cubin_path.write_bytes(good[: len(good) // 2])      # torn write
    again = _compile()
    assert not again.cached and again.cubin_path.read_bytes() == good
    assert "ignoring bad cache entry" in caplog.text

    garbled = bytearray(good)
    garbled[100] ^= 0xFF
    cold.cubin_path.write_bytes(bytes(garbled))
    assert not _compile().cached
    assert _compile().cached


@needs_nvrtc
@pytest.mark.parametrize("garbage", ["{not json", "[1, 2]", '{"key": "someone-else"}', ""])
def test_garbage_json_is_rebuilt(garbage):
    cold = _compile()
    cold.cubin_path.with_suffix(".json").write_text(garbage)
    assert not _compile().cached
    assert _compile().cached


def _race_worker(cache_dir, barrier, results):
    os.environ["LQQ_CACHE_DIR"] = cache_dir
    from lqq import jit as worker_jit
    source = worker_jit.render("_selftest.cu.j2", scale="3.0f")
    barrier.wait()
    c = worker_jit.compile(source, "lqq_selftest", arch=ARCH)
    results.put((c.key, hashlib.sha256(c.cubin_path.read_bytes()).hexdigest()))


@needs_nvrtc
def test_concurrent_processes_share_one_entry(cache):
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_race_worker, args=(str(cache), barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(got)) == 1
    entries = jit.list_cache()
    assert len(entries) == 1 and entries[0]["cubin_sha256"] == got[0][1]
    leftovers = [p.name for p in (cache / "kernels").rglob("*") if p.is_file()]
    assert sorted(leftovers) == sorted([f"{got[0][0]}.cubin", f"{got[0][0]}.json"])


@needs_nvrtc
def test_key_tracks_source_and_options():
    base = _compile()
    assert _compile(scale="2.0f").key != base.key
    assert _compile(options=("-DLQQ_UNUSED=1",)).key != base.key
    assert _compile().key == base.key


@needs_nvrtc
def test_recompiling_the_same_source_still_gets_the_ptxas_figures(cache):
    # NVRTC 12.9+ serves a repeat compile from its own cache where a driver is
    # present, with an empty log (seen on the H200 machine): lqq's figures,
    # spill checks and serialization warnings all read that log
    first = _compile()
    jit.clear_cache()
    again = _compile()
    assert not again.cached
    for c in (first, again):
        assert "lqq_selftest" in sass.parse_ptxas_log(c.log)["kernels"], c.log


def test_nvrtc_cache_off_where_nvrtc_has_one(monkeypatch):
    monkeypatch.setattr(jit.nvrtc, "version", lambda: (12, 9))
    assert "--no-cache" in jit._options("sm_90a", ())
    monkeypatch.setattr(jit.nvrtc, "version", lambda: (12, 8))   # the flag is an error there
    assert "--no-cache" not in jit._options("sm_90a", ())


@needs_nvrtc
def test_syntax_error_reports_log_and_source(cache):
    bad = _source().replace("if (i < n)", "if (i < n")
    with pytest.raises(jit.CompileError) as info:
        jit.compile(bad, "lqq_selftest", arch=ARCH)
    err = info.value
    assert "error" in err.log and err.log in str(err)
    assert Path(err.source_path).read_text() == bad
    assert err.source_path in str(err)
    assert Path(err.source_path).parent == cache / "failed"


@needs_nvrtc
def test_dump_dir_writes_cu_ptx_sass(tmp_path, monkeypatch):
    _compile()                                   # already cached: dumping must still happen
    monkeypatch.setenv("LQQ_DUMP_DIR", str(tmp_path / "dump"))
    c = _compile()
    stem = tmp_path / "dump" / f"lqq_selftest-{c.key[:12]}"
    assert stem.with_suffix(".cu").read_text() == _source()
    assert ".entry lqq_selftest" in stem.with_suffix(".ptx").read_text()
    if sass.find_tool("cuobjdump") or sass.find_tool("nvdisasm"):
        assert "lqq_selftest" in stem.with_suffix(".sass").read_text()
    assert _compile().cached                     # dumped once; later calls hit


@needs_nvrtc
@needs_cuobjdump
def test_sass_inspection_of_real_cubin():
    c = _compile()
    counts = sass.opcode_counts(sass.sass_text(c.cubin_path))
    assert counts.get("FFMA", 0) + counts.get("FMUL", 0) > 0 and counts["EXIT"] >= 1
    usage = sass.resource_usage(c.cubin_path)["lqq_selftest"]
    assert 0 < usage["registers"] <= 255 and usage["local_bytes"] == 0
    info = sass.inspect(c)
    assert info["registers"] == usage["registers"] and info["spill_bytes"] == 0
    assert info["sass"] == counts and info["warnings"] == []


@needs_nvrtc
@needs_cuobjdump
def test_inspect_refuses_a_log_without_the_kernels_figures():
    """Spills and shared memory come from ptxas's log alone: a log that has no
    entry for the kernel is an error that shows the log, not zeros."""
    c = _compile()
    bare = jit.Compiled(c.key, c.name, c.arch, c.cubin_path, "ptxas info    : 0 bytes gmem\n",
                        c.compile_seconds, c.cached)
    with pytest.raises(RuntimeError, match="printed no figures for lqq_selftest.*0 bytes gmem"):
        sass.inspect(bare)


def test_opcode_counts_drops_predicates_and_modifiers():
    text = """
        /*0000*/                   LDC R1, c[0x0][0x28] ;             /* 0x00000a00ff017b82 */
                                                                      /* 0x000e220000000800 */
        /*0010*/               @P0 IMAD.WIDE R2, R0, 0x4, R2 ;        /* 0x0000000400027825 */
        /*0020*/              @!PT LDS RZ, [RZ] ;
        /*0030*/              @!UP1 IGMMA.64x128x32.S8.S8 R24, gdesc[UR4], R24 ;
        /*0040*/                   IMAD.MOV.U32 R4, RZ, RZ, R5 ;
        /*0044*/ 	.byte	0xff, 0xff
"""
    assert sass.opcode_counts(text) == {"LDC": 1, "IMAD": 2, "LDS": 1, "IGMMA": 1}


def test_parse_ptxas_log():
    log = """k.cu(3): warning #177-D: variable "x" was declared but never referenced
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'lqq_gemm' for 'sm_90a'
ptxas info    : Function properties for lqq_gemm
ptxas         .     664 bytes stack frame, 836 bytes spill stores, 1076 bytes spill loads
ptxas info    : Used 168 registers, used 1 barriers, 664 bytes cumulative stack size, 1024 bytes smem
ptxas warning : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized
ptxas info    : (C7512) Potential Performance Loss: wgmma.mma_async instructions are serialized due to insufficient register resources for the function 'lqq_gemm'
ptxas info    : Compile time = 67.820 ms
"""
    got = sass.parse_ptxas_log(log)
    assert (got["registers"], got["spill_stores"], got["spill_loads"], got["stack"], got["smem"]) \
        == (168, 836, 1076, 664, 1024)
    assert got["warnings"] == ["(C7515) Potential Performance Loss: wgmma.mma_async instructions "
                               "are serialized",
                               "(C7512) Potential Performance Loss: wgmma.mma_async instructions "
                               "are serialized due to insufficient register resources for the "
                               "function 'lqq_gemm'"]     # an info line with a code counts too
    assert set(got["kernels"]) == {"lqq_gemm"}


def test_knobs_parse_and_reject(monkeypatch, tmp_path):
    monkeypatch.setenv("LQQ_DEBUG", "maybe")
    with pytest.raises(ValueError, match="LQQ_DEBUG"):
        knobs.debug()
    monkeypatch.setenv("LQQ_DEBUG", "On")
    assert knobs.debug() is True
    monkeypatch.delenv("LQQ_FUSED_QUANT", raising=False)
    assert knobs.fused_quant() == "auto"
    for raw, want in (("AUTO", "auto"), ("1", "on"), ("no", "off")):
        monkeypatch.setenv("LQQ_FUSED_QUANT", raw)
        assert knobs.fused_quant() == want
    monkeypatch.setenv("LQQ_FUSED_QUANT", "sometimes")
    with pytest.raises(ValueError, match="LQQ_FUSED_QUANT.*auto"):
        knobs.fused_quant()
    monkeypatch.delenv("LQQ_FUSED_QUANT")
    monkeypatch.setenv("LQQ_ARCH", "hopper")
    with pytest.raises(ValueError, match="LQQ_ARCH"):
        knobs.arch()
    monkeypatch.setenv("LQQ_ARCH", "sm_90a")
    assert knobs.arch() == "sm_90a"
    assert knobs.dump_dir() is None and knobs.force_config() is None
    assert knobs.cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("LQQ_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert knobs.cache_dir() == tmp_path / "xdg" / "lqq"
    names = [row[0] for row in knobs.describe()]
    assert names == ["LQQ_CACHE_DIR", "LQQ_DUMP_DIR", "LQQ_DEBUG", "LQQ_FORCE_CONFIG",
                     "LQQ_ARCH", "LQQ_NVRTC", "LQQ_PDL", "LQQ_FUSED_QUANT"]


def test_missing_nvrtc_names_the_pip_package(monkeypatch, tmp_path):
    monkeypatch.setenv("LQQ_NVRTC", str(tmp_path / "libnvrtc.so.404"))
    with pytest.raises(RuntimeError, match="LQQ_NVRTC"):
        nvrtc.library()
    monkeypatch.delenv("LQQ_NVRTC")
    monkeypatch.setattr(nvrtc, "_candidate_paths", lambda: iter(()))
    nvrtc._load_for.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="pip install nvidia-cuda-nvrtc"):
            nvrtc.library()
    finally:
        nvrtc._load_for.cache_clear()


@needs_nvrtc
def test_nvrtc_search_stops_at_the_first_library_that_loads(monkeypatch):
    """The ldconfig lookups (ctypes.util.find_library, tens of ms) run only when
    no pip wheel or toolkit copy loads: they are on every process's first call."""
    calls = []
    monkeypatch.setattr(nvrtc.ctypes.util, "find_library", lambda name: calls.append(name))
    monkeypatch.delenv("LQQ_NVRTC", raising=False)
    nvrtc._load_for.cache_clear()
    try:
        path = nvrtc.library_path()
    finally:
        nvrtc._load_for.cache_clear()
    if "site-packages" in path or "/cuda" in path:
        assert calls == [], "a wheel or toolkit library loaded, yet ldconfig was asked"
    assert path in nvrtc.candidates()


def test_list_and_clear_cache(cache):
    if _MISSING is None:
        _compile()
        assert len(jit.list_cache()) == 1
    jit.clear_cache()
    assert jit.list_cache() == [] and not (cache / "kernels").exists()
