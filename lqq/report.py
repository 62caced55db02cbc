"""`lqq kernels`: render and compile every kernel configuration offline (no
GPU needed) and report its resources and SASS instruction mix."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from . import configs, jit, knobs, sass


def compile_spec(spec: configs.KernelSpec, arch: str) -> dict:
    compiled = jit.compile(spec.render(), spec.name, arch=arch)
    info = sass.inspect(compiled)
    return {"name": spec.name, "family": spec.family, "config": dict(spec.params), "arch": arch,
            "compile_seconds": round(compiled.compile_seconds, 3), "cached": compiled.cached,
            **info}


def specs_for(arch: str) -> list[configs.KernelSpec]:
    """The kernels lqq launches on ``arch``: on sm_90a all of them, on any
    other sm_80 or newer target the portable families (the Hopper kernel is
    sm_90a only)."""
    if not knobs.is_arch(arch) or int(arch[3:].rstrip("af")) < 80:
        raise ValueError(f"{arch!r} is not a target of lqq's kernels: sm_90a (every kernel) "
                         f"or sm_80 and newer, e.g. sm_86 or sm_90 (the portable mma.sync kernels)")
    family = "sm_90a" if arch == "sm_90a" else "sm_80"
    return [s for s in configs.all_kernels() if family in s.archs or not s.archs]


def kernels_report(arch: str = "sm_90a", names=None, jobs: int | None = None,
                   progress=None) -> list[dict]:
    """One dict per kernel that lqq can launch on ``arch`` (NVRTC calls release
    the GIL, so threads compile in parallel)."""
    specs = specs_for(arch)
    if names:
        specs = [s for s in specs if s.name in names]
        missing = set(names) - {s.name for s in specs}
        if missing:
            raise ValueError(f"no kernel named {sorted(missing)} for {arch}; `lqq kernels` "
                             f"lists them")
    out = []
    with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
        for row in pool.map(lambda s: compile_spec(s, arch), specs):
            out.append(row)
            if progress:
                progress(len(out), len(specs), row["name"])
    return out


def show(name: str, arch: str, what: str) -> str:
    """The generated source, PTX or SASS of one kernel."""
    spec = next((s for s in configs.all_kernels() if s.name == name), None)
    if spec is None:
        raise ValueError(f"no kernel named {name!r}; `lqq kernels` lists them")
    if spec not in specs_for(arch):
        raise ValueError(f"{name} does not compile for {arch} (the Hopper kernel is sm_90a only)")
    source = spec.render()
    if what == "source":
        return source
    if what == "ptx":
        from . import nvrtc
        return nvrtc.compile(source, name, jit._options(arch, ())).ptx or ""
    return sass.sass_text(jit.compile(source, name, arch=arch).cubin_path)
