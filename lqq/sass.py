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

# cuobjdump --dump-resource-usage prints, per kernel:
#  Function saxpy:
#   REG:10 STACK:0 SHARED:1280 LOCAL:0 CONSTANT[0]:556 TEXTURE:0 SURFACE:0 SAMPLER:0
_FUNC_RE = re.compile(r"^\s*Function (\S+?):?\s*$")
_FIELD_RE = re.compile(r"([A-Z]+(?:\[\d+\])?):(\d+)")
_ENTRY_RE = re.compile(r"Compiling entry function '([^']+)'")
_STACK_RE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED_RE = re.compile(r"Used (\d+) registers")
_SMEM_RE = re.compile(r"(\d+) bytes smem")
_DIAG_RE = re.compile(r": \(C\d{4}\)")        # a ptxas diagnostic's code


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
    """Instruction mnemonics (before the first dot, predicates dropped) -> count:
    `@!P0 IMAD.WIDE R2, R0, 0x4, R2 ;` counts as IMAD."""
    return dict(collections.Counter(op.split(".")[0] for _, _, op, _ in _instructions(sass)[0]))


_IGMMA_RE = re.compile(r"\bIGMMA\.\S+\s+R\d+,\s*(\S+?),")


def igmma_operand_a(sass: str) -> dict[str, int]:
    """How the IGMMA instructions take operand A: {"register": n, "shared": n}
    (``IGMMA.64xNx32.S8.S8 Rd, Ra, gdesc[..], Rc`` has A in registers,
    ``IGMMA ... Rd, gdesc[..], gdesc[..]`` reads it from shared memory)."""
    out = {"register": 0, "shared": 0}
    for m in _IGMMA_RE.finditer(sass):
        out["register" if re.fullmatch(r"R\d+", m.group(1)) else "shared"] += 1
    return out


# global-memory access: loads, stores, atomics and reductions, TMA and bulk
# copies (and their prefetches), generic LD/ST
_GLOBAL_OPS = {"LDG", "STG", "ATOMG", "ATOM", "RED", "REDG", "LD", "ST", "LDGSTS", "UTMALDG",
               "UTMASTG", "UTMAREDG", "UTMAPF", "UBLKCP", "UBLKRED", "UBLKPF"}
GRID_WAIT = "ACQBULK"                  # PTX griddepcontrol.wait
PRODUCER_DEC = "USETMAXREG.DEALLOC"    # PTX setmaxnreg.dec: the Hopper GEMM's producer branch
# `        /*0a40*/              @!P0 BRA 0xa00 ;` (cuobjdump); nvdisasm writes BRA `(.L_x_3)
_CODE_RE = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(@!?U?P(?:\d+|T)\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")
_LABEL_RE = re.compile(r"^([.$\w]+):\s*$")
_TARGET_RE = re.compile(r"(?:0x([0-9a-f]+)|`\(([^)]+)\))\s*$")
_FUNCTION_RE = re.compile(r"^\s*Function : (\S+)|^\.text\.(\S+):")
_INDIRECT = {"BRX", "BRXU", "JMX", "JMXU", "JMP", "RTT"}


def functions(sass: str) -> dict[str, str]:
    """The SASS text of each function in a cuobjdump/nvdisasm listing."""
    out, name = {}, None
    for line in sass.splitlines():
        m = _FUNCTION_RE.match(line)
        if m:
            name = m.group(1) or m.group(2)
            out.setdefault(name, "")
        elif name is not None:
            out[name] += line + "\n"
    return out or {"": sass}


def _instructions(sass: str):
    """[(address, guarded, opcode with modifiers, operands)] of one function,
    in code order, and {label: index} (nvdisasm's branch targets)."""
    code, labels, pending = [], {}, []
    for line in sass.splitlines():
        m = _LABEL_RE.match(line.strip())
        if m:
            pending.append(m.group(1))
            continue
        m = _CODE_RE.match(line)
        if m:
            for label in pending:
                labels[label] = len(code)
            pending = []
            code.append((int(m.group(1), 16), m.group(2) is not None, m.group(3), m.group(4).strip()))
    return code, labels


def reached_before(sass: str, stops) -> list[tuple[int, str]] | None:
    """(address, opcode) of every instruction of one function that some path
    from its entry reaches without first executing an (unpredicated)
    instruction whose opcode starts with one of `stops`, following the
    control flow: branches both ways when predicated or divergent, calls into
    the callee and past it, nothing past EXIT or RET. None if no instruction
    of the function matches a stop. Raises ValueError where such a path meets
    an indirect branch (BRX: its targets are not in the text)."""
    code, labels = _instructions(sass)
    if not any(op.startswith(s) for _, _, op, _ in code for s in stops):
        return None
    index = {addr: i for i, (addr, *_) in enumerate(code)}
    seen, todo = set(), [0] if code else []
    while todo:
        i = todo.pop()
        if i in seen or i >= len(code):
            continue
        seen.add(i)
        addr, guarded, op, args = code[i]
        if not guarded and any(op.startswith(s) for s in stops):
            continue
        base = op.split(".")[0]
        if base in _INDIRECT:
            raise ValueError(f"indirect branch {op} at {addr:#x}: its targets cannot be followed")
        nxt = []
        if base in ("BRA", "CALL") or op.startswith("WARPSYNC.COLLECTIVE"):
            m = _TARGET_RE.search(args)
            if m is None:
                raise ValueError(f"cannot read the target of {op} {args} at {addr:#x}")
            nxt.append(index[int(m.group(1), 16)] if m.group(1) else labels[m.group(2)])
            # a plain unpredicated BRA never falls through; BRA.DIV, BRA !P1, ... may
            if guarded or op != "BRA" or "," in args:
                nxt.append(i + 1)
        elif base in ("EXIT", "RET"):
            if guarded:
                nxt.append(i + 1)
        else:
            nxt.append(i + 1)
        todo += nxt
    return [(code[i][0], code[i][2]) for i in sorted(seen)]


def global_before(sass: str, stops=(GRID_WAIT,), ops=_GLOBAL_OPS) -> list[str] | None:
    """The opcodes (with modifiers, e.g. UTMALDG.3D) of the global-memory
    instructions that may run before the kernel's grid-dependency wait (or
    another of `stops`) on some path: see reached_before. A kernel launched
    with programmatic dependent launch must have none, except reads of data
    no kernel writes. None if the kernel has no such stop."""
    reached = reached_before(sass, stops)
    if reached is None:
        return None
    return [op for _, op in reached if op.split(".")[0] in ops]


def mma_span_mul_hi(sass: str) -> int | None:
    """IMAD.HI instructions from a function's first IGMMA to its last: in the
    Hopper GEMM that span is the consumers' main loop, and an IMAD.HI there
    is a division by a constant (a ring index `it % 6` cost 5-6% at M = 128
    on the H200, RESULTS.md session 14). None without IGMMA."""
    code, _ = _instructions(sass)
    mma = [i for i, c in enumerate(code) if c[2].startswith("IGMMA")]
    if not mma:
        return None
    return sum(c[2].startswith("IMAD.HI") for c in code[mma[0]:mma[-1] + 1])


def parse_ptxas_log(log: str) -> dict:
    """Numbers from an NVRTC log compiled with --ptxas-options=-v.

    Top-level values are the worst case over all entry functions (one kernel
    per source is the normal case); ``kernels`` has them per function."""
    kernels, current = {}, None
    warnings = []
    for line in log.splitlines():
        # ptxas prints some diagnostics as info lines with a code, e.g.
        # "ptxas info : (C7512) ... wgmma.mma_async instructions are serialized"
        if line.startswith("ptxas warning") or (line.startswith("ptxas info")
                                                and _DIAG_RE.search(line)):
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
    local_bytes, smem_bytes (static shared memory as cuobjdump reports it: on
    sm_90 with the 1 KiB the system reserves per CTA), smem_declared_bytes
    (the static shared memory the kernel declares, from ptxas), sass (opcode
    counts), igmma_a (where the wgmma instructions read operand A),
    mma_span_mul_hi (divisions by a constant inside the wgmma main loop),
    before_grid_wait (the global accesses some path reaches before
    griddepcontrol.wait; None without one: global_before),
    before_grid_wait_outside_producer (the same on paths that have not passed
    setmaxnreg.dec either; None without one) and ptxas warnings."""
    log = parse_ptxas_log(compiled.log)
    usage = resource_usage(compiled.cubin_path)
    kernel = usage.get(compiled.name) or {"registers": log["registers"], "smem_bytes": log["smem"],
                                          "stack_bytes": log["stack"], "local_bytes": log["stack"]}
    per_log = log["kernels"].get(compiled.name)
    if per_log is None:
        # spill and shared-memory figures come from this log only: never report
        # zeros for figures ptxas did not print
        try:
            from . import nvrtc
            lib = f"NVRTC {'.'.join(map(str, nvrtc.version()))} at {nvrtc.library_path()}"
        except Exception as e:  # noqa: BLE001 - the message must still come out
            lib = f"NVRTC not loadable here: {e}"
        # the kernels the log does name (another compile's, if NVRTC mixed up
        # the logs of concurrent compiles: `lqq kernels` compiles in threads)
        raise RuntimeError(f"ptxas -v printed no figures for {compiled.name} ("
                           f"{'from the cache; ' if compiled.cached else ''}{lib} now); its "
                           f"log names {sorted(log['kernels'])} and ends: {compiled.log[-1500:]!r}")
    text = sass_text(compiled.cubin_path)
    parts = functions(text)
    body = parts.get(compiled.name, text)
    return {
        "registers": kernel["registers"],
        "spill_bytes": per_log["spill_stores"] + per_log["spill_loads"],
        "local_bytes": kernel["local_bytes"],
        "smem_bytes": kernel["smem_bytes"],
        "smem_declared_bytes": per_log["smem"],
        "sass": opcode_counts(text),
        "igmma_a": igmma_operand_a(text),
        "mma_span_mul_hi": mma_span_mul_hi(body),
        "before_grid_wait": global_before(body),
        "before_grid_wait_outside_producer": (global_before(body, (GRID_WAIT, PRODUCER_DEC))
                                              if PRODUCER_DEC in body else None),
        "warnings": log["warnings"],
    }
