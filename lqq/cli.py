"""The ``lqq`` command line (also ``python -m lqq``)."""
from __future__ import annotations

import argparse
import json
import platform
import sys

from ._version import __version__


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
        return ".".join(map(str, nvrtc.version()))
    except Exception as e:
        return f"unavailable ({e})"


def cmd_info(args) -> int:
    from . import knobs
    info = {"lqq": __version__, "python": platform.python_version(),
            "numpy": __import__("numpy").__version__, **_gpu_info(),
            "nvrtc": _nvrtc_version(), "cache_root": str(knobs.cache_dir()),
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


class Progress:
    """A one-line progress bar on a terminal's stderr; silent otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()

    def __call__(self, done: int, total: int, label: str = ""):
        if not self.enabled:
            return
        width = 30
        fill = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {label[:40]:<40}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


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
    ms = [int(v) for v in args.m.split(",")] if args.m else list(bench.M_DEFAULT)
    rows = bench.run(shapes, ms, reps=args.reps, groups=args.groups,
                     progress=Progress(not args.json))
    print(json.dumps(rows, indent=1) if args.json else bench.table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lqq", description="W4A8 GEMM for Hopper GPUs (LQQ "
                                "4-bit weights, INT8 activations)")
    p.add_argument("--version", action="version", version=f"lqq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("info", help="GPU, CuPy/NVRTC/driver versions, cache paths")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("kernels", help="compile every kernel config offline (no GPU needed) and "
                       "report registers, spills, shared memory, SASS instruction counts")
    s.add_argument("--arch", default="sm_90a", help="target (default sm_90a; sm_80 for the "
                   "portable kernels)")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("--show", metavar="NAME", help="print one kernel's generated code instead")
    g = s.add_mutually_exclusive_group()
    for what in ("source", "ptx", "sass"):
        g.add_argument(f"--{what}", dest="what", action="store_const", const=what,
                       help=f"with --show: the {what} (default: source)" if what == "source"
                       else f"with --show: the {what}")
    s.set_defaults(func=cmd_kernels, what="source")

    s = sub.add_parser("bench", help="time lqq against cuBLAS FP16/INT8/FP8 on Llama-3 layers")
    s.add_argument("--m", help="comma-separated token counts (default 1,4,16,...,8192)")
    s.add_argument("--layers", nargs="*", help="substrings of layer names, e.g. '8B o' 70B")
    s.add_argument("--reps", type=int, default=20, help="calls per CUDA graph (default 20)")
    s.add_argument("--groups", type=int, default=9, help="timed replays; the median is kept")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_bench)
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
