"""The ``lqq`` command line (also ``python -m lqq``)."""
from __future__ import annotations

import argparse
import json
import platform
import sys

from ._version import __version__
from .progress import Progress


def _gpu_info() -> dict:
    """What CuPy can tell about the GPU, or why it cannot."""
    from . import _xp
    cp = _xp.cupy_or_none()
    if cp is None:
        return {"cupy": None, "gpu": None, "why": "CuPy is not installed"}
    info = {"cupy": cp.__version__}
    try:
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"]
        info.update(gpu=name.decode() if isinstance(name, bytes) else name,
                    compute_capability=f"{props['major']}.{props['minor']}",
                    sm_count=props["multiProcessorCount"],
                    memory_gib=round(props["totalGlobalMem"] / 2**30, 1),
                    driver=cp.cuda.runtime.driverGetVersion(),
                    runtime=cp.cuda.runtime.runtimeGetVersion())
    except Exception as e:  # no device, no driver
        info.update(gpu=None, why=f"no usable CUDA device ({type(e).__name__}: {e})")
    return info


def _nvrtc_version():
    try:
        from . import nvrtc
        return f"{'.'.join(map(str, nvrtc.version()))} ({nvrtc.library_path()})"
    except Exception as e:
        return f"unavailable ({e})"


def _cache_summary() -> str:
    """The cache's contents in one line."""
    try:
        from . import jit, tune_cache
        kernels = jit.list_cache()
        files = tune_cache.load_all()
    except Exception as e:  # noqa: BLE001 - info must always print
        return f"unreadable ({e})"
    size = sum(k["bytes"] for k in kernels) / 2**20
    return (f"{len(kernels)} compiled kernels ({size:.1f} MiB), "
            f"{sum(len(f['entries']) for f in files)} autotune entries in {len(files)} file(s)")


def cmd_info(args) -> int:
    from . import knobs
    info = {"lqq": __version__, "python": platform.python_version(),
            "numpy": __import__("numpy").__version__, **_gpu_info(),
            "nvrtc": _nvrtc_version(), "cache_root": str(knobs.cache_dir()),
            "cache": _cache_summary(),
            "environment": {name: value for name, value, _doc in knobs.describe()}}
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    for key, value in info.items():
        if key == "environment":
            for name, val in value.items():
                print(f"{name:>16}: {val if val not in (None, '') else '(unset)'}")
        else:
            print(f"{key:>16}: {value if value is not None else '-'}")
    return 0


def cmd_kernels(args) -> int:
    from . import report
    if args.show:
        print(report.show(args.show, args.arch, args.what))
        return 0
    rows = report.kernels_report(args.arch, progress=Progress(not args.json))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'kernel':<44} {'regs':>4} {'spill':>5} {'local':>5} {'smem':>6} "
          f"{'IMAD':>5} {'LOP3':>5} {'MMA':>5} {'warnings'}")
    for r in rows:
        s = r["sass"]
        mma = s.get("IGMMA", 0) + s.get("IMMA", 0) + s.get("HMMA", 0)
        print(f"{r['name']:<44} {r['registers']:>4} {r['spill_bytes']:>5} {r['local_bytes']:>5} "
              f"{r['smem_bytes']:>6} {s.get('IMAD', 0):>5} {s.get('LOP3', 0):>5} {mma:>5} "
              f"{len(r['warnings'])}")
    return 0


def cmd_bench(args) -> int:
    from . import bench
    shapes = [s for s in bench.SHAPES if not args.layers or any(l in s for l in args.layers)]
    if not shapes:
        raise ValueError(f"no layer matches {args.layers}; the layers are: "
                         + ", ".join(map(repr, bench.SHAPES)))
    try:                                # before any work: a clear message, not a traceback
        import cupy
    except ImportError as e:
        raise RuntimeError(f"needs CuPy and a CUDA GPU ({e})") from None
    del cupy
    ms = args.m or list(bench.M_DEFAULT)
    rows = bench.run(shapes, ms, reps=args.reps, groups=args.groups,
                     progress=Progress(not args.json))
    print(json.dumps(rows, indent=1) if args.json else bench.table(rows))
    return 0


def _shape(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape; write N,K (out,in features), "
                                         f"e.g. 4096,4096")
    return int(parts[0]), int(parts[1])


def _token_counts(text: str) -> list[int]:
    try:
        ms = [int(v) for v in text.split(",")]
    except ValueError:
        ms = []
    if not ms or min(ms) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of token counts; write "
                                         f"positive integers, e.g. 1,16,128")
    return ms


def _model(text: str) -> str:
    from . import models
    try:
        models.get(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cmd_autotune(args) -> int:
    from . import models, tune_cache
    from .autotune import autotune
    shapes = args.shapes or models.shapes(args.model)
    ms = args.m or list(tune_cache.M_BUCKETS)
    rows = autotune(shapes, ms, args.group_size, force=args.force, groups=args.groups,
                    jobs=args.jobs, progress=Progress(not args.json))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'N':>6} {'K':>6} {'M<=':>5}  {'winner':<26} {'ms':>8}  {'heuristic':<26} "
              f"{'ms':>8} {'gain':>6}")
        for r in rows:
            gain = r.get("speedup_vs_heuristic")
            print(f"{r['N']:>6} {r['K']:>6} {r['m_bucket']:>5}  {r['winner'] or 'none':<26} "
                  f"{_ms(r['winner_ms'])}  {r['heuristic']:<26} {_ms(r['heuristic_ms'])} "
                  f"{f'{gain:.2f}x' if gain else '-':>6}{'  (cached)' if r.get('cached') else ''}")
        print(f"stored in {tune_cache.cache_dir()}")
    return 0 if all(r["winner"] for r in rows) else 1


def _ms(v) -> str:
    return f"{v:8.4f}" if v else f"{'-':>8}"


def cmd_cache(args) -> int:
    from . import jit, tune_cache
    if args.action == "path":
        print(jit.cache_root())
        return 0
    if args.action == "clear":
        if args.what in ("all", "kernels"):
            jit.clear_cache()
        if args.what in ("all", "autotune"):
            tune_cache.clear()
        print(f"cleared {args.what} under {jit.cache_root()}")
        return 0
    kernels = jit.list_cache()
    files = tune_cache.load_all()
    size = sum(k["bytes"] for k in kernels)
    if args.json:
        rows = [{f: k[f] for f in ("name", "arch", "bytes", "cubin_path")} for k in kernels]
        print(json.dumps({"root": str(jit.cache_root()),
                          "kernels": {"count": len(kernels), "bytes": size, "entries": rows},
                          "autotune": files}, indent=1, default=str))
        return 0
    print(f"cache root: {jit.cache_root()}")
    print(f"kernels: {len(kernels)} ({size / 2**20:.1f} MiB)")
    for f in files:
        dev = f["device"] or {}
        print(f"autotune: {f['path']}: {len(f['entries'])} entries"
              + (f" ({dev.get('gpu')}, {dev.get('sm_count')} SMs, lqq {dev.get('lqq')})" if dev
                 else f" (unreadable: {f.get('error')})"))
        for key, e in sorted(f["entries"].items()):
            print(f"  {key:<28} {e.get('winner')}  {e.get('winner_ms') or 0:.4f} ms")
    if not files:
        print("autotune: no entries")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import models
    p = argparse.ArgumentParser(prog="lqq", description="W4A8 GEMM for Hopper GPUs (LQQ "
                                "4-bit weights, INT8 activations)")
    p.add_argument("--version", action="version", version=f"lqq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("info", help="GPU, CuPy/NVRTC/driver versions, cache paths")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("kernels", help="compile every kernel config offline (no GPU needed) and "
                       "report registers, spills, shared memory, SASS instruction counts")
    s.add_argument("--arch", default="sm_90a", help="target (default sm_90a: every kernel; "
                   "any other from sm_80, e.g. sm_86 or sm_90: the portable mma.sync kernels)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--show", metavar="NAME", help="print one kernel's generated code instead")
    g = s.add_mutually_exclusive_group()
    for what in ("source", "ptx", "sass"):
        g.add_argument(f"--{what}", dest="what", action="store_const", const=what,
                       help=f"with --show: the {what} (default: source)" if what == "source"
                       else f"with --show: the {what}")
    s.set_defaults(func=cmd_kernels, what="source")

    s = sub.add_parser("bench", help="time lqq against cuBLAS FP16/INT8/FP8 on Llama-3 layers")
    s.add_argument("--m", type=_token_counts, metavar="M,M,...",
                   help="comma-separated token counts (default 1,4,16,...,8192)")
    s.add_argument("--layers", nargs="*", help="substrings of layer names, e.g. '8B o' 70B")
    s.add_argument("--reps", type=int, default=20, help="calls per CUDA graph (default 20)")
    s.add_argument("--groups", type=int, default=9, help="timed replays; the median is kept")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("autotune", help="time the candidate kernel configs on this GPU and cache "
                       "the fastest correct one per shape and M bucket",
                       description="Times every legal kernel config for each (N, K) and token "
                       "count bucket (M rounded up to a power of two, at most 8192), checks the "
                       "winner against the NumPy reference and stores it in the autotune cache, "
                       "which lqq.gemm then reads.")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--shapes", nargs="+", type=_shape, metavar="N,K",
                   help="GEMM shapes: out,in features, e.g. 4096,4096 28672,4096")
    g.add_argument("--model", type=_model, metavar="NAME", help="a preset's linear layers: "
                   + ", ".join(models.MODELS))
    s.add_argument("--m", type=_token_counts, metavar="M,M,...",
                   help="token counts, each rounded up to its bucket (default: every bucket "
                   "1,2,4,...,8192)")
    s.add_argument("--group-size", type=int, default=64, help="weight group size (default 64)")
    s.add_argument("--force", action="store_true", help="re-tune entries already cached")
    s.add_argument("--groups", type=int, default=5, help="timed replays per config; median kept")
    s.add_argument("--jobs", type=int, help="compile threads (default: CPU count)")
    s.add_argument("--json", action="store_true", help="machine-readable output, no progress bar")
    s.set_defaults(func=cmd_autotune)

    s = sub.add_parser("cache", help="where the kernel and autotune caches are, what they hold, "
                       "clear them")
    cs = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    cs.add_parser("path", help="print the cache root")
    c = cs.add_parser("list", help="compiled kernels and autotune entries")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c = cs.add_parser("clear", help="delete cached kernels and autotune results")
    c.add_argument("what", nargs="?", choices=("all", "kernels", "autotune"), default="all")
    s.set_defaults(func=cmd_cache)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ValueError, TypeError, RuntimeError) as e:
        print(f"lqq {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
