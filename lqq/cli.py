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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lqq", description="W4A8 GEMM for Hopper GPUs (LQQ "
                                "4-bit weights, INT8 activations)")
    p.add_argument("--version", action="version", version=f"lqq {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("info", help="GPU, CuPy/NVRTC/driver versions, cache paths")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_info)
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
