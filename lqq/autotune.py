"""``lqq.autotune``: time every legal kernel plan for some shapes on this GPU and
cache the fastest one that matches the reference.

    lqq.autotune([(4096, 4096), (28672, 4096)], ms=(1, 16, 128))
    lqq.autotune("Llama-3-8B")            # a preset's linear layers, every M bucket

Per (N, K, group size, M bucket): the candidates of ``configs.candidates``
(the heuristic's plan among them) are compiled up front in threads (NVRTC
releases the GIL), each is timed with CUDA events over a CUDA graph on
rotated weights (``bench.time_calls``), then checked fastest-first against
``lqq.reference.gemm`` on sampled outputs: the first that matches exactly
wins. Every timing is stored (``tune_cache``). ``lqq.gemm`` only reads the
result; it never tunes by itself.
"""
from __future__ import annotations

import contextlib
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import checks, configs, tune_cache

SAMPLE_ROWS, SAMPLE_COLS = 32, 256     # outputs compared with the reference per check
TARGET_GROUP_MS = 2.0                  # a timed graph replay lasts about this long
REPS_MIN, REPS_MAX = 3, 50


@dataclass
class Case:
    """One tuning problem's data, on the runner's side (CuPy on the GPU)."""
    N: int
    K: int
    M: int
    group_size: int
    w: object              # LQQWeight
    ws: list               # w and its rotated copies (timing)
    xq: object
    xs: object
    out: object            # float16 [M, N] for timed calls
    rows: np.ndarray       # sampled output entries and their reference values
    cols: np.ndarray
    expected: np.ndarray


# ---------------------------------------------------------------- the GPU side

@contextlib.contextmanager
def pinned(p):
    """lqq.gemm runs plan ``p`` inside (through LQQ_FORCE_CONFIG, which wins
    over everything; the previous value is put back)."""
    old = os.environ.get("LQQ_FORCE_CONFIG")
    os.environ["LQQ_FORCE_CONFIG"] = tune_cache.plan_text(p)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LQQ_FORCE_CONFIG", None)
        else:
            os.environ["LQQ_FORCE_CONFIG"] = old


def gpu_timer(p, case: Case, groups: int = 5) -> float:
    """Median ms per call of plan ``p``; reps per graph sized so a replay lasts
    about TARGET_GROUP_MS (many for decode-sized calls, few for huge GEMMs)."""
    import lqq
    from . import bench, gpu_gemm
    calls = [lambda v=v: lqq.gemm((case.xq, case.xs), v, out=case.out, check_finite=False)
             for v in case.ws]
    with pinned(p), gpu_gemm.scratch_scope():
        estimate = bench.time_calls(calls, REPS_MIN, 1)
        reps = int(min(REPS_MAX, max(REPS_MIN, TARGET_GROUP_MS / max(estimate, 1e-6))))
        return bench.time_calls(calls, reps, groups)


def gpu_runner(p, case: Case):
    """Plan ``p``'s output [M, N] float16 (poisoned first, so unwritten outputs
    fail), computed on a stream of its own."""
    import cupy as cp

    import lqq
    from . import gpu_gemm
    stream = cp.cuda.Stream(non_blocking=True)
    with pinned(p), gpu_gemm.scratch_scope(), stream:
        out = cp.full((case.M, case.N), cp.nan, cp.float16)
        lqq.gemm((case.xq, case.xs), case.w, out=out, check_finite=False)
        stream.synchronize()
    return out


def compile_configs(cfgs, jobs: int | None = None, progress=None) -> dict:
    """config -> None, or why it cannot be used (compile error, spills, too many
    registers for its threads). Compiled kernels land in the kernel cache."""
    from . import jit, sass
    arch = jit.default_arch()

    def one(cfg):
        spec = cfg.spec()
        try:
            compiled = jit.compile(spec.render(), spec.name, arch=arch)
        except jit.CompileError as e:
            return cfg, f"does not compile: {str(e).splitlines()[0][:200]}"
        log = sass.parse_ptxas_log(compiled.log)
        k = log["kernels"].get(spec.name, log)
        if k["spill_stores"] or k["spill_loads"]:
            return cfg, f"spills registers ({k['spill_stores']} B stores)"
        if k["registers"] * cfg.threads > configs.REGFILE:
            return cfg, f"{k['registers']} registers x {cfg.threads} threads > register file"
        return cfg, None

    out = {}
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        for cfg, why in pool.map(one, cfgs):
            out[cfg] = why
            if progress:
                progress(len(out), len(cfgs), f"compile {cfg.name}")
    return out


def refuse_while_capturing() -> None:
    """Tuning synchronizes and allocates: never inside CUDA-graph capture."""
    import sys

    import cupy as cp
    capturing = cp.cuda.get_current_stream().is_capturing()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        capturing = capturing or torch.cuda.is_current_stream_capturing()
    if capturing:
        raise RuntimeError("lqq.autotune cannot run while a CUDA graph is being captured; "
                           "tune before capturing (or with `lqq autotune`)")


# ---------------------------------------------------------------- problems

def _normal(xp, shape, seed):
    if xp is np:
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    return xp.random.RandomState(seed).standard_normal(shape, dtype=xp.float32)


def _sample(n: int, k: int, rng) -> np.ndarray:
    """Up to k indices below n: both ends (tile and split edges) and random ones."""
    if n <= k:
        return np.arange(n)
    ends = np.r_[np.arange(k // 4), np.arange(n - k // 4, n)]
    return np.unique(np.r_[ends, rng.choice(n, k - ends.size, replace=False)])[:k]


def make_weights(N: int, K: int, group_size: int, xp, rotate: bool):
    import lqq
    w = lqq.quantize_weight(_normal(xp, (N, K), N * 7 + K), group_size, "round")
    if not rotate:
        return w, [w]
    from . import bench
    return w, bench.rotated_weights(w)


def make_case(w, ws, M: int, xp) -> Case:
    import lqq
    from . import _xp, reference
    from .format import _ARRAYS, LQQWeight
    N, K = w.shape
    xq, xs = lqq.quantize_activation(_normal(xp, (M, K), M).astype(xp.float16))
    rng = np.random.default_rng(M)
    rows, cols = _sample(M, SAMPLE_ROWS, rng), _sample(N, SAMPLE_COLS, rng)
    sub = LQQWeight(*(_xp.to_numpy(getattr(w, a)[xp.asarray(cols)]) for a in _ARRAYS),
                    shape=(cols.size, K), group_size=w.group_size)
    r = xp.asarray(rows)
    expected = reference.gemm(_xp.to_numpy(xq[r]), _xp.to_numpy(xs[r]), sub)
    return Case(N, K, M, w.group_size, w, ws, xq, xs, xp.empty((M, N), xp.float16), rows, cols,
                expected)


def check(runner, p, case: Case) -> str | None:
    """None if plan ``p`` reproduces the reference on the case's samples."""
    from . import _xp
    try:
        out = runner(p, case)
        xp = _xp.module_of(out)
        got = _xp.to_numpy(out[xp.asarray(case.rows)][:, xp.asarray(case.cols)])
    except Exception as e:  # noqa: BLE001 - a failing candidate is a result, not a crash
        return f"run failed: {type(e).__name__}: {e}"[:200]
    if got.shape != case.expected.shape or not np.array_equal(got, case.expected):
        bad = int((got != case.expected).sum()) if got.shape == case.expected.shape else -1
        return f"output differs from the reference ({bad} of {case.expected.size} sampled)"
    return None


def _check_shapes(shapes, group_size: int) -> list[tuple[int, int]]:
    out = []
    for s in shapes:
        try:
            N, K = (int(v) for v in s)
        except (TypeError, ValueError):
            raise ValueError(f"shape {s!r} is not a pair (N, K)") from None
        if N < 1 or K < 1:
            raise ValueError(f"shape {s!r}: N and K must be positive")
        checks.check_k(K)
        checks.check_group_size(group_size, K)
        out.append((N, K))
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- the search

def _tune_one(plans, case, timer, runner, broken: dict, tick) -> dict:
    """Time every plan, then check them fastest-first; the entry to store."""
    rows = []
    for i, p in enumerate(plans):
        row = {"config": tune_cache.plan_text(p), "grid": list(p.grid), "heuristic": i == 0}
        why = broken.get(p.config)
        if why is None:
            try:
                row["ms"] = float(timer(p, case))
            except Exception as e:  # noqa: BLE001
                why = f"timing failed: {type(e).__name__}: {e}"[:200]
        if why is not None:
            row["error"] = why
        rows.append(row)
        tick(f"{case.N}x{case.K} M={case.M} {row['config']}")
    winner = None
    for i in sorted((i for i, r in enumerate(rows) if "ms" in r), key=lambda i: rows[i]["ms"]):
        why = check(runner, plans[i], case)
        rows[i]["checked"] = why is None
        if why is None:
            winner = rows[i]
            break
        rows[i]["error"] = why
    h = rows[0]
    entry = {"N": case.N, "K": case.K, "group_size": case.group_size,
             "m_bucket": tune_cache.m_bucket(case.M), "m_tuned": case.M,
             "winner": winner and winner["config"], "winner_ms": winner and winner["ms"],
             "heuristic": h["config"], "heuristic_ms": h.get("ms"), "candidates": rows,
             "time": time.time()}
    if winner and h.get("ms"):
        entry["speedup_vs_heuristic"] = h["ms"] / winner["ms"]
    return entry


def autotune(shapes, ms=tune_cache.M_BUCKETS, group_size: int = 64, *, force: bool = False,
             progress=None, groups: int = 5, jobs: int | None = None, timer=None, runner=None,
             device: dict | None = None) -> list[dict]:
    """Tune ``shapes`` ([(N, K), ...] or a model preset name) for the token
    counts ``ms`` (each rounded up to its M bucket) and store the winners in
    the autotune cache of this GPU. Entries already cached are returned as they
    are (``"cached": True``) unless ``force``. Returns one entry per (N, K, M
    bucket); an entry whose every candidate failed has ``winner`` None and is
    not stored.

    timer(plan, case) -> ms and runner(plan, case) -> output array replace the
    GPU measurement; pass both (and ``device``, a tune_cache fingerprint) to
    run the search without a GPU.
    """
    from . import models
    if isinstance(shapes, str):
        shapes = models.shapes(shapes)
    shapes = _check_shapes(shapes, group_size)
    buckets = sorted({tune_cache.m_bucket(int(m)) for m in ms})
    on_gpu = timer is None or runner is None
    if on_gpu:
        from . import _xp
        xp = _xp.cupy_or_none()
        if xp is None:
            raise RuntimeError("lqq.autotune needs CuPy and a CUDA GPU")
        try:
            device = device or tune_cache.device_fingerprint()
        except Exception as e:  # noqa: BLE001 - no driver, no device
            raise RuntimeError(f"lqq.autotune needs a usable CUDA GPU ({type(e).__name__}: "
                               f"{e})") from e
        refuse_while_capturing()
        if os.environ.get("LQQ_FORCE_CONFIG"):
            warnings.warn("LQQ_FORCE_CONFIG is set: lqq.gemm keeps using it over tuned results",
                          RuntimeWarning, stacklevel=2)
    elif device is None:
        raise ValueError("pass device= (a tune_cache fingerprint) with a custom timer and runner")
    else:
        xp = np
    timer = timer or partial(gpu_timer, groups=groups)
    runner = runner or gpu_runner

    have = {} if force else tune_cache.read(tune_cache.path_for(device), device)
    results, todo = [], {}
    for N, K in shapes:
        for M in buckets:
            key = tune_cache.entry_key(N, K, group_size, M)
            if key in have:
                results.append({**have[key], "cached": True})
            else:
                wgmma = configs.wgmma_eligible(
                    K, group_size, str(device["compute_capability"]).replace(".", "")) \
                    and configs.wgmma_target_ok()
                todo[(N, K, M)] = configs.candidates(M, N, K, device["sm_count"], wgmma)
    broken = {}
    if on_gpu and todo:
        cfgs = list(dict.fromkeys(p.config for plans in todo.values() for p in plans))
        broken = {c: why for c, why in compile_configs(cfgs, jobs, progress).items() if why}
    done, total = 0, sum(len(v) for v in todo.values())

    def tick(label):
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)
    for N, K in shapes:
        Ms = [M for M in buckets if (N, K, M) in todo]
        if not Ms:
            continue
        w, ws = make_weights(N, K, group_size, xp, rotate=on_gpu)
        for M in Ms:
            case = make_case(w, ws, M, xp)
            if on_gpu:      # the data is ready before our own (non-blocking) streams read it
                xp.cuda.Device().synchronize()
            entry = _tune_one(todo[(N, K, M)], case, timer, runner, broken, tick)
            if entry["winner"]:     # stored per problem: an interrupted run keeps its progress
                tune_cache.store({tune_cache.entry_key(N, K, group_size, M): entry}, device)
            else:
                warnings.warn(f"lqq.autotune: no candidate for {N}x{K} M={M} matched the "
                              f"reference; the heuristic stays", RuntimeWarning, stacklevel=2)
            results.append({**entry, "cached": False})
        del w, ws
    order = {s: i for i, s in enumerate(shapes)}
    return sorted(results, key=lambda e: (order[(e["N"], e["K"])], e["m_bucket"]))
