"""The GPU path of ``lqq.gemm``: pack the weight once (cached on it), quantize
the activations, pick a config, launch. Inputs arrive already checked by
lqq.gemm."""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import numpy as np

from . import _xp, checks, configs, gpu_activation, jit, knobs, launch, packing, tma

# by dtype name, as bfloat16 (ml_dtypes') has no NumPy type to key on
OUT_KINDS = {"float16": 0, "float32": 1, "bfloat16": 2, "int32": 3}
BIAS_KINDS = {"none": 0, "float16": 1, "float32": 2, "bfloat16": 3}


_scratch: dict = {}
_retired: dict = {}           # replaced scratch buffers, kept for graphs captured with them
_sm_counts: dict = {}


def packed(w) -> packing.PackedWeight:
    """The weight in the kernels' layout on the current device, packed once
    on the current stream. The host then waits for the packing kernels, once
    per weight and device: every later GEMM, on any stream or thread, and in
    any CUDA graph, reads finished arrays, and the Hopper kernel may read
    weights before its grid-dependency wait (PDL) from its first launch on.
    A GEMM queued on another stream right after would otherwise race with
    the packing (and keeping per-stream event state cost every call)."""
    import cupy as cp
    memo = ("packed", packing.LAYOUT_VERSION, cp.cuda.Device().id)
    p = w._device_cache.get(memo)
    if p is None:
        stream = cp.cuda.get_current_stream()
        # a capture elsewhere (a blocking or global-mode one) makes the query
        # or the wait below fail with a bare CUDA error: say what went wrong
        try:
            capturing = stream.is_capturing()
        except cp.cuda.runtime.CUDARuntimeError as e:
            raise RuntimeError(_PACK_IN_CAPTURE) from e
        if capturing:
            raise RuntimeError(_PACK_IN_CAPTURE)
        p = packing.pack(w)
        try:
            stream.synchronize()
        except cp.cuda.runtime.CUDARuntimeError as e:
            raise RuntimeError(_PACK_IN_CAPTURE) from e
        # published finished; if another thread packed meanwhile, one copy wins
        p = w._device_cache.setdefault(memo, p)
    return p


_PACK_IN_CAPTURE = ("lqq packs a weight for the GPU on its first GEMM on a device and waits "
                    "for that, which cannot happen while a CUDA graph is being captured: run "
                    "one GEMM with this weight before capturing")


def sm_count() -> int:
    import cupy as cp
    dev = cp.cuda.Device().id
    if dev not in _sm_counts:
        _sm_counts[dev] = cp.cuda.runtime.getDeviceProperties(dev)["multiProcessorCount"]
    return _sm_counts[dev]


def scratch(stream, name: str, n: int, dtype, zeroed: bool = False):
    """A persistent per-(device, stream) buffer of at least n elements: split-K
    and stream-K partial sums, quantized activations, and self-resetting tile
    counters (zeroed once here; the kernel puts each back to 0 for the next
    launch: on Hopper the tile's owner, once its wait on the counter is over
    (streamk.j2); in split-K the last split to arrive (splitk.j2)). Nothing is
    allocated once a shape has run on the stream, so calls can be captured in
    a CUDA graph after a warm-up on the capturing stream.

    Grown (at least doubled), never shrunk, and a replaced buffer is kept
    alive, not freed: a CUDA graph captured earlier still holds its address,
    and must not find that memory reused when it is replayed. Graphs replayed
    on another stream while this stream runs the same scratch are the caller's
    race (give each concurrent replay its own capture stream)."""
    import cupy as cp
    memo = (cp.cuda.Device().id, stream.ptr, name)
    buf = _scratch.get(memo)
    if buf is None or buf.size < n:
        size = n
        if buf is not None:
            _retired.setdefault(memo, []).append(buf)
            size = max(n, 2 * buf.size)
        make = cp.zeros if zeroed else cp.empty
        buf = _scratch[memo] = make(max(size, 1), dtype)
    return buf[:n]


@contextlib.contextmanager
def scratch_scope():
    """Drop, on exit, the scratch of streams first used inside the block (for
    callers like the autotuner that run on many short-lived streams; scratch is
    keyed by stream pointer and would otherwise pile up)."""
    before = set(_scratch)
    try:
        yield
    finally:
        for key in set(_scratch) - before:
            _scratch.pop(key, None)
            _retired.pop(key, None)


def choose(M: int, N: int, K: int, group_size: int | None = None) -> configs.Plan:
    """LQQ_FORCE_CONFIG, else this GPU's autotune winner (a dict lookup; never
    tunes), else the heuristic. With LQQ_DEBUG, each distinct choice is logged
    once, with where it came from."""
    from . import tune_cache
    plan, source = configs.forced(M, N, K), "LQQ_FORCE_CONFIG"
    if plan is None:
        plan, source = tune_cache.lookup(M, N, K, group_size), "autotune"
        # a Hopper winner, tuned before LQQ_ARCH named another target (the
        # index of the tuning file is rechecked once a second)
        if plan is not None and isinstance(plan.config, configs.WgmmaConfig) \
                and not configs.wgmma_target_ok():
            plan = None
    if plan is None:
        # the heuristic is pure and costs several microseconds a call: memoized
        # per shape, GPU size and kernel family
        key = (M, N, K, sm_count(), _wgmma_ok(K, group_size))
        plan, source = _heuristic_plans.get(key), "heuristic"
        if plan is None:
            if len(_heuristic_plans) >= 16384:
                _heuristic_plans.clear()
            plan = _heuristic_plans[key] = configs.heuristic(*key[:4], wgmma=key[4])
    if knobs.debug():
        _log_choice(M, N, K, group_size, plan, source)
    return plan


def _log_choice(M, N, K, group_size, plan, source):
    """Each distinct (shape, plan, source) once, under LQQ_DEBUG."""
    from . import tune_cache
    if (M, N, K, group_size, plan, source) not in _logged_choices:
        if len(_logged_choices) >= 16384:
            _logged_choices.clear()
        _logged_choices.add((M, N, K, group_size, plan, source))
        jit.log_debug("M=%d N=%d K=%d group %s: %s grid %s (%s)", M, N, K, group_size,
                      tune_cache.plan_text(plan), plan.grid, source)


_heuristic_plans: dict = {}
_logged_choices: set = set()


def fused_plan(x2, plan: configs.Plan) -> configs.Plan | None:
    """The fused decode plan for float input x2 [M, K] whose chosen plan is
    `plan` (the GEMM quantizes its activations itself: no quantizer kernel
    before it), or None. Taken where the plan is a Hopper decode tile of
    FUSED_CONFIGS covering all M tokens, the input is fp16 or bf16 with
    K % 8 == 0, x contiguous and 16-byte aligned (TMA reads it in place; the
    quantizer kernel reads misaligned rows in place too, and copies only
    strided x), and M x K small enough for every CTA to read the rows for
    their absmax; under LQQ_FUSED_QUANT=auto (the default) only where it
    measured faster (configs.fused_pays), under 1 wherever it can, under 0
    never."""
    M, K = x2.shape
    kind = gpu_activation._IN_KIND.get(checks.dtype_name(x2))
    cfg = plan.config
    if isinstance(cfg, configs.WgmmaConfig) and cfg.FX:       # forced (LQQ_FORCE_CONFIG)
        if cfg.FX != kind or M > cfg.BN or K % 8:
            raise ValueError(f"{cfg.name} quantizes {cfg.FX} input of at most {cfg.BN} tokens "
                             f"with K % 8 == 0 itself; this call has {checks.dtype_name(x2)} "
                             f"[{M}, {K}]; unset LQQ_FORCE_CONFIG")
        return plan
    mode = knobs.fused_quant()
    if (kind not in configs.FX_TAGS or K % 8 or not 0 < M * K <= configs.FUSED_MAX_VALUES
            or mode == "off" or knobs.force_config()):   # a forced plan stays as forced
        return None
    if not isinstance(cfg, configs.WgmmaConfig) or M > cfg.BN:
        return None
    if not x2.flags.c_contiguous or _address(x2) % 16:
        return None         # TMA reads x in place; the quantizer path takes the other layouts
    if mode == "auto" and not configs.fused_pays(plan, M, K):
        return None
    fx = configs.fused(cfg, kind)
    if fx not in configs.FUSED_CONFIGS:
        return None
    return dataclasses.replace(plan, config=fx)     # the same grid and work split


def _address(a) -> int:
    """A CuPy or NumPy array's first byte's address."""
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def _overlap(a, b) -> bool:
    """Whether two CuPy arrays' byte spans intersect."""
    lo_a, lo_b = a.data.ptr, b.data.ptr
    return lo_a < lo_b + b.nbytes and lo_b < lo_a + a.nbytes


def _wgmma_ok(K: int, group_size) -> bool:
    """Whether the Hopper kernel can run this weight here (False when the GPU
    cannot be asked, e.g. in CPU-only tests of the choice)."""
    try:
        cc = launch.compute_capability()
    except Exception:  # noqa: BLE001 - no CuPy or no device: the portable kernels
        return False
    return (group_size is not None and configs.wgmma_eligible(K, group_size, cc)
            and configs.wgmma_target_ok())


def current_stream(stream, torch_input: bool):
    import cupy as cp
    if stream is not None:
        return stream
    if torch_input:
        return _xp.torch_current_stream(cp)
    return cp.cuda.get_current_stream()


@dataclass(frozen=True)
class _Launch:
    """Everything about one kernel launch that does not change from call to
    call for a (weight, plan, M, output, bias kind): built once, so a
    hot call only fills in its pointers and looks up its scratch."""
    kernel: object
    grid: tuple
    threads: int
    smem: int
    wgmma: bool
    box_rows: int           # TMA box of the activations (wgmma)
    partial_size: int       # int32 split-K / stream-K partial sums (0: none)
    counters_size: int      # per-tile counters (0: none)
    ints: tuple             # the kernel's int arguments, M ... bias_kind
    maps: tuple = ()        # the packed weight's TMA maps (wgmma): codes, group parameters


_MAX_LAUNCHES = 256         # records per packed weight: keep the dict bounded


def _launch(w, p, plan, M: int, out_dtype, bias_kind: int) -> _Launch:
    """The launch record of (plan, M, output, bias kind) for w's packed copy
    p, memoized on p: its TMA maps encode p's array addresses, and p belongs
    to one device."""
    memo = p.launches
    key = (plan, M, np.dtype(out_dtype), bias_kind)
    rec = memo.get(key)
    if rec is not None:
        return rec
    N, K = w.shape
    cfg = plan.config
    partial_size = counters_size = 0
    wgmma = isinstance(cfg, configs.WgmmaConfig)
    smem = 0
    if wgmma:
        cc = launch.compute_capability()
        if not configs.wgmma_eligible(K, w.group_size, cc):
            raise ValueError(f"{cfg.name} needs an sm_90 GPU (this is sm_{cc}) "
                             f"and group size 32/64/128/256 (or K with K % 128 == 0); unset "
                             f"LQQ_FORCE_CONFIG")
        if not configs.wgmma_target_ok():
            raise ValueError(f"{cfg.name} compiles for sm_90a only, and LQQ_ARCH is "
                             f"{knobs.arch()}; unset LQQ_FORCE_CONFIG or LQQ_ARCH")
        # stream-K: one partial-sum slot per CTA (a CTA contributes to at most
        # one tile it does not finish: streamk.j2), one counter per tile
        tiles, _ = configs.wgmma_units(cfg, M, N, K)
        if plan.grid[0] != tiles and not cfg.KS:  # else every CTA owns one tile or
                                                  # its cluster's sums meet in shared memory
            partial_size = plan.grid[0] * (cfg.threads - 128) * cfg.BN // 2
            counters_size = tiles
        smem = cfg.smem_bytes()
    elif plan.splits > 1:
        tiles = plan.grid[0] * plan.grid[1]
        partial_size = plan.splits * tiles * cfg.threads * cfg.BM // 2
        counters_size = tiles
    if isinstance(cfg, configs.DecodeConfig):
        smem = cfg.smem_bytes(plan.kb_per_split)
    kernel = function(cfg.spec(), smem if wgmma else 0)
    ints = tuple(np.int32(v) for v in (
        M, N, K, p.n_pad // 64, p.k_pad // packing.K_BLOCK, p.groups_pad, w.group_size,
        -(-p.n_pad // (64 * cfg.RB)) if wgmma else plan.kb_per_split,
        OUT_KINDS[np.dtype(out_dtype).name], bias_kind))
    maps = ()
    if wgmma:
        geometry = tma.packed_geometry(p.n_pad // packing.ROW_BLOCK, p.k_pad // packing.K_BLOCK,
                                       p.groups_pad, cfg.C,
                                       max(1, packing.K_ALIGN // w.group_size))
        maps = tuple(tma.blocks_3d(a.data.ptr, *g) for a, g in zip((p.codes, p.meta), geometry))
    rec = _Launch(kernel, plan.grid, cfg.threads, smem, wgmma, cfg.BN if wgmma else 0,
                  partial_size, counters_size, ints, maps)
    if len(memo) >= _MAX_LAUNCHES:
        memo.clear()
    memo[key] = rec
    return rec


def function(spec: configs.KernelSpec, smem: int = 0):
    """spec's loaded kernel, allowed smem bytes of dynamic shared memory (past
    the 48 KB default)."""
    kernel = spec.function()
    if kernel.max_dynamic_shared_size_bytes < smem:
        kernel.max_dynamic_shared_size_bytes = smem
    return kernel


def gemm(x2, xq, xs, w, bias, out_dtype, out, stream, torch_input=False):
    """x2: CuPy float [M, K] or None; (xq, xs): CuPy int8 [M, K] + float32 [M]."""
    import cupy as cp
    stream = current_stream(stream, torch_input)
    N, K = w.shape
    with stream:
        M = (x2 if x2 is not None else xq).shape[0]
        plan = choose(M, N, K, w.group_size) if M else None
        fx = fused_plan(x2, plan) if x2 is not None and M else None
        if fx is not None and out is not None and _overlap(out, x2):
            if fx is plan:                      # forced: say why it cannot run
                raise ValueError(f"{fx.config.name} reads x while it writes out, and out "
                                 f"shares memory with x; pass a separate out or unset "
                                 f"LQQ_FORCE_CONFIG")
            fx = None           # CTAs would still read x where others write out
        if fx is not None:
            if knobs.debug():
                _log_choice(M, N, K, w.group_size, fx, "fused decode quantization")
            xf = cp.ascontiguousarray(x2)       # a forced fused plan: any layout, copied
            if xf.data.ptr % 16:                # TMA needs a 16-byte aligned base
                xf = xf.copy()
            xq = xs = None
        else:
            xf = None
            if plan is not None and isinstance(plan.config, configs.WgmmaConfig) and plan.config.FX:
                raise ValueError(f"{plan.config.name} takes fp16/bf16 activations (it quantizes "
                                 f"them itself), not quantized ones; unset LQQ_FORCE_CONFIG")
            if x2 is not None:
                out_q = (scratch(stream, "x8", M * K, cp.int8).reshape(M, K),
                         scratch(stream, "xs", M, cp.float32))
                xq, xs = gpu_activation.quantize_rows_gpu(x2, stream, out=out_q)
            xq = cp.ascontiguousarray(xq)
            xs = cp.ascontiguousarray(xs)
        y = out.reshape(M, N) if out is not None else cp.empty((M, N), out_dtype)
        if M == 0:
            return y
        p = packed(w)
        if bias is not None:
            # float64 is added in float32, as the reference does
            bias = cp.ascontiguousarray(bias, cp.float32 if bias.dtype == np.float64 else None)
        bias_kind = BIAS_KINDS["none" if bias is None else bias.dtype.name]
        rec = _launch(w, p, fx or plan, M, out_dtype, bias_kind)
        if rec.wgmma and xf is None and xq.data.ptr % 16:   # TMA needs a 16-byte aligned base
            xq = xq.copy()                      # (alive until the launch is queued)
        args = kernel_args(rec, p, xq, xs, bias, y, stream, xf=xf)
        # PDL for the Hopper kernel only: the mma.sync decode kernels measured
        # 5-10% slower with it (H100, CUDA graphs of back-to-back calls)
        launch.launch(rec.kernel, rec.grid, (rec.threads,), args, rec.smem, stream, pdl=rec.wgmma)
    return y


def kernel_args(rec: _Launch, p, xq, xs, bias, y, stream, xf=None) -> tuple:
    """The kernel's arguments for one call of a launch record (also used by
    benchmarks/probe_stages.py, which appends its probe buffer). xf: the
    fused decode path's float input (16-byte aligned), instead of xq and xs."""
    # scratch is looked up per call, not held by the record: it follows
    # growth, and scratch_scope() can still free a short-lived stream's
    partial = (scratch(stream, "partial", rec.partial_size, np.int32)
               if rec.partial_size else p.s1)
    counters = (scratch(stream, "counters", rec.counters_size, np.uint32, zeroed=True)
                if rec.counters_size else p.s1)
    if xf is not None:
        # the raw values through a TMA map, and the rows themselves (their
        # absmax) as the last argument; no token scales yet (xs: a placeholder)
        M, K = xf.shape
        return ((tma.values_2d(xf.data.ptr, M, K, rec.box_rows),) + rec.maps
                + (p.codes, p.meta, p.s1, p.s1, bias if bias is not None else p.s1, y, partial,
                   counters) + rec.ints + (xf,))
    tail = (p.codes, p.meta, p.s1, xs, bias if bias is not None else p.s1, y, partial,
            counters) + rec.ints
    if rec.wgmma:
        # activations reach the kernel through a TMA tensor map, by value
        # (xq 16-byte aligned: the caller's job)
        M, K = xq.shape
        return (tma.rows_2d(xq.data.ptr, M, K, rec.box_rows),) + rec.maps + tail
    return tail[:3] + (xq,) + tail[3:]
