"""Offline inspection of compiled kernels (no GPU needed): resource usage,
SASS text and opcode counts from cuobjdump/nvdisasm, and the ptxas ``-v`` log.

    info = lqq.sass.inspect(lqq.jit.compile(src, "k", arch="sm_90a"))
    info["registers"], info["spill_bytes"], info["sass"]["IMMA"]
"""
from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import subprocess
import sys

from .nvrtc import _site_dirs

# `        /*0040*/               @!P0 IMAD.WIDE R2, R0, 0x4, R2 ;` -> "IMAD"
_INSTR_RE = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P(?:\d+|T)\s+)?([A-Z][A-Z0-9_]*)\b")
# cuobjdump --dump-resource-usage prints, per kernel:
#  Function saxpy:
#   REG:10 STACK:0 SHARED:1280 LOCAL:0 CONSTANT[0]:556 TEXTURE:0 SURFACE:0 SAMPLER:0
_FUNC_RE = re.compile(r"^\s*Function (\S+?):?\s*$")
_FIELD_RE = re.compile(r"([A-Z]+(?:\[\d+\])?):(\d+)")
_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)'")
_STACK_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED_RE = re.compile(r"Used (\d+) registers")
_SMEM_RE = re.compile(r"(\d+) bytes smem")


def find_tool(name: str) -> str | None:
    """PATH, then pip wheels (site-packages nvidia/*/bin), then the CUDA toolkit."""
    exe = name + ".exe" if sys.platform == "win32" else name
    found = shutil.which(name)
    if found:
        return found
    dirs = [p for d in _site_dirs() for p in sorted(glob.glob(os.path.join(d, "nvidia", "*", "bin")))]
    dirs += [os.path.join(r, "bin") for r in [os.environ.get("CUDA_PATH"), "/usr/local/cuda"] if r]
    for d in dirs:
        path = os.path.join(d, exe)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _run(tool: str, *args: str) -> str:
    path = find_tool(tool)
    if path is None:
        raise RuntimeError(f"{tool} was not found; pip install nvidia-cuda-{tool}")
    done = subprocess.run([path, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def resource_usage(cubin_path) -> dict[str, dict[str, int]]:
    """Per kernel: registers, smem_bytes (static; on sm_90 this includes the
    1 KiB the system reserves), stack_bytes, local_bytes (stack + other local)."""
    out, kernel = {}, None
    for line in _run("cuobjdump", "--dump-resource-usage", str(cubin_path)).splitlines():
        m = _FUNC_RE.match(line)
        if m:
            kernel = m.group(1)
            continue
        fields = dict(_FIELD_RE.findall(line))
        if kernel and "REG" in fields:
            stack, local = int(fields.get("STACK", 0)), int(fields.get("LOCAL", 0))
            out[kernel] = {"registers": int(fields["REG"]), "smem_bytes": int(fields.get("SHARED", 0)),
                           "stack_bytes": stack, "local_bytes": stack + local}
            kernel = None
    return out


def sass_text(cubin_path) -> str:
    """The SASS of every kernel in the cubin (cuobjdump -sass, else nvdisasm)."""
    if find_tool("cuobjdump"):
        return _run("cuobjdump", "-sass", str(cubin_path))
    return _run("nvdisasm", "-c", str(cubin_path))


def opcode_counts(sass: str) -> dict[str, int]:
    """Instruction mnemonics (before the first dot, predicates dropped) -> count."""
    counts = collections.Counter()
    for line in sass.splitlines():
        m = _INSTR_RE.match(line)
        if m:
            counts[m.group(1)] += 1
    return dict(counts)


_IGMMA_RE = re.compile(r"\bIGMMA\.\S+\s+R\d+,\s*(\S+?),")


def igmma_operand_a(sass: str) -> dict[str, int]:
    """How the IGMMA instructions take operand A: {"register": n, "shared": n}
    (``IGMMA.64xNx32.S8.S8 Rd, Ra, gdesc[..], Rc`` has A in registers,
    ``IGMMA ... Rd, gdesc[..], gdesc[..]`` reads it from shared memory)."""
    out = {"register": 0, "shared": 0}
    for m in _IGMMA_RE.finditer(sass):
        out["register" if re.fullmatch(r"R\d+", m.group(1)) else "shared"] += 1
    return out


# global-memory access: loads, stores, atomics, TMA and bulk copies, generic LD/ST
_GLOBAL_OPS = {"LDG", "STG", "ATOMG", "ATOM", "RED", "REDG", "LD", "ST", "UTMALDG", "UBLKCP",
               "UTMASTG", "LDGSTS"}


def global_before_grid_wait(sass: str, ops=_GLOBAL_OPS) -> int | None:
    """How many global-memory instructions (of `ops`) come, in code order,
    before the first ``ACQBULK`` (PTX griddepcontrol.wait); None if the kernel
    has none. A kernel launched with programmatic dependent launch must report
    0, except for bulk copies of data no kernel writes (the Hopper kernel's
    packed weights: inspect() counts those apart)."""
    before = 0
    for line in sass.splitlines():
        m = _INSTR_RE.match(line)
        if not m:
            continue
        if m.group(1) == "ACQBULK":
            return before
        before += m.group(1) in ops
    return None


def parse_ptxas_log(log: str) -> dict:
    """Numbers from an NVRTC log compiled with --ptxas-options=-v.

    Top-level values are the worst case over all entry functions (one kernel
    per source is the normal case); ``kernels`` has them per function."""
    kernels, current = {}, None
    warnings = []
    for line in log.splitlines():
        if line.startswith("ptxas warning"):
            warnings.append(line.split(":", 1)[1].strip())
        m = _ENTRY_RE.search(line)
        if m:
            current = kernels.setdefault(m.group(1), {"registers": 0, "spill_stores": 0,
                                                      "spill_loads": 0, "stack": 0, "smem": 0})
            continue
        if current is None:
            continue
        m = _STACK_RE.search(line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
        m = _USED_RE.search(line)
        if m:
            current["registers"] = int(m.group(1))
            smem = _SMEM_RE.search(line)
            current["smem"] = int(smem.group(1)) if smem else 0
    worst = {f: max((k[f] for k in kernels.values()), default=0)
             for f in ("registers", "spill_stores", "spill_loads", "stack", "smem")}
    return {**worst, "warnings": warnings, "kernels": kernels}


def inspect(compiled) -> dict:
    """Everything about one ``lqq.jit.Compiled``: registers, spill_bytes,
    local_bytes, smem_bytes, sass (opcode counts), igmma_a (where the wgmma
    instructions read operand A), global_before_grid_wait and ptxas warnings."""
    log = parse_ptxas_log(compiled.log)
    usage = resource_usage(compiled.cubin_path)
    kernel = usage.get(compiled.name) or {"registers": log["registers"], "smem_bytes": log["smem"],
                                          "stack_bytes": log["stack"], "local_bytes": log["stack"]}
    per_log = log["kernels"].get(compiled.name, log)
    text = sass_text(compiled.cubin_path)
    return {
        "registers": kernel["registers"],
        "spill_bytes": per_log["spill_stores"] + per_log["spill_loads"],
        "local_bytes": kernel["local_bytes"],
        "smem_bytes": kernel["smem_bytes"],
        "sass": opcode_counts(text),
        "igmma_a": igmma_operand_a(text),
        "global_before_grid_wait": global_before_grid_wait(text, _GLOBAL_OPS - {"UBLKCP"}),
        "bulk_before_grid_wait": global_before_grid_wait(text, {"UBLKCP"}),
        "warnings": log["warnings"],
    }
