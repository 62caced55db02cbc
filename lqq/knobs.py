"""Every LQQ_* environment variable lqq reads, declared once (besides them,
CUDA_PATH is a place nvrtc.py and sass.py search for CUDA's libraries and
tools, as CUDA's own tools do).

Values are read from ``os.environ`` on each call (never cached), so tests can
monkeypatch them and a long-lived process sees changes. A malformed value
raises ``ValueError`` naming the variable.

    from lqq import knobs
    knobs.cache_dir()      # Path
    knobs.describe()       # [(name, value, doc), ...] for ``lqq info``
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_ARCH_RE = re.compile(r"sm_\d{2,3}[af]?")


def _default_cache_dir() -> Path:
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "lqq"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "lqq" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative paths are invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else home / ".cache"
    return base / "lqq"


def _parse_path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def _parse_auto_bool(name: str, raw: str) -> str:
    """"auto", or a boolean as "on" / "off"."""
    if raw.strip().lower() == "auto":
        return "auto"
    try:
        return "on" if _parse_bool(name, raw) else "off"
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not auto or a boolean; use auto, 1/0, true/false, "
                         "yes/no or on/off") from None


def _parse_str(name: str, raw: str) -> str:
    return raw.strip()


def is_arch(text: str) -> bool:
    """Whether text is a GPU architecture as LQQ_ARCH spells it (sm_90a, sm_80, sm_100f)."""
    return _ARCH_RE.fullmatch(text) is not None


def _parse_arch(name: str, raw: str) -> str:
    arch = raw.strip()
    if not is_arch(arch):
        raise ValueError(f"{name}={raw!r} is not a GPU architecture; expected e.g. sm_90a or sm_80")
    return arch


@dataclass(frozen=True)
class Knob:
    name: str
    parse: Callable[[str, str], object]
    default: Callable[[], object]     # called when the variable is unset or empty
    doc: str

    def get(self):
        raw = os.environ.get(self.name, "")
        if raw.strip() == "":
            return self.default()
        return self.parse(self.name, raw)


_KNOBS = {k.name: k for k in [
    Knob("LQQ_CACHE_DIR", _parse_path, _default_cache_dir,
         "directory of the compiled-kernel cache"),
    Knob("LQQ_DUMP_DIR", _parse_path, lambda: None,
         "if set, write each compiled kernel's .cu, .ptx and .sass here"),
    Knob("LQQ_DEBUG", _parse_bool, lambda: False,
         "log each distinct kernel choice (and its source) and compile times to the 'lqq' logger"),
    Knob("LQQ_FORCE_CONFIG", _parse_str, lambda: None,
         "force one kernel configuration instead of the automatic choice"),
    Knob("LQQ_ARCH", _parse_arch, lambda: None,
         "compile target (e.g. sm_90a) instead of the current GPU's; the Hopper kernel needs sm_90a"),
    Knob("LQQ_NVRTC", _parse_path, lambda: None,
         "path of the libnvrtc shared library to use"),
    Knob("LQQ_PDL", _parse_bool, lambda: True,
         "launch kernels on sm_90+ with programmatic dependent launch (0 to turn off)"),
    Knob("LQQ_FUSED_QUANT", _parse_auto_bool, lambda: "auto",
         "on Hopper, quantize fp16/bf16 decode activations inside the GEMM: auto (where it "
         "measured faster), 1 (wherever it can), 0 (never)"),
]}


def cache_dir() -> Path:
    return _KNOBS["LQQ_CACHE_DIR"].get()


def dump_dir() -> Path | None:
    return _KNOBS["LQQ_DUMP_DIR"].get()


def debug() -> bool:
    return _KNOBS["LQQ_DEBUG"].get()


def force_config() -> str | None:
    return _KNOBS["LQQ_FORCE_CONFIG"].get()


def arch() -> str | None:
    return _KNOBS["LQQ_ARCH"].get()


def nvrtc_path() -> Path | None:
    return _KNOBS["LQQ_NVRTC"].get()


def pdl() -> bool:
    return _KNOBS["LQQ_PDL"].get()


def fused_quant() -> str:
    """"auto", "on" or "off"."""
    return _KNOBS["LQQ_FUSED_QUANT"].get()


def describe() -> list[tuple[str, object, str]]:
    """(name, current value, doc) for every knob; a bad value shows as the error text."""
    rows = []
    for knob in _KNOBS.values():
        try:
            value = knob.get()
        except ValueError as e:
            value = f"<invalid: {e}>"
        rows.append((knob.name, value, knob.doc))
    return rows
