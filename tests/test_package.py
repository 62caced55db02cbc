"""Packaging and the command line: the wheel carries the CUDA templates, the
installed package finds them, and `lqq` / `python -m lqq` run."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_templates_and_installed_package_finds_them(tmp_path):
    isolated = not (importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel"))
    src = tmp_path / "src"          # build from a copy: setuptools writes build/ beside the sources
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
           str(src)] + ([] if isolated else ["--no-build-isolation"])
    subprocess.run(cmd, check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("lqq-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n for n in names if n.startswith("lqq/cuda_templates/")}
    in_repo = {f"lqq/cuda_templates/{p.name}" for p in (ROOT / "cuda_templates").iterdir()
               if p.suffix in (".j2", ".cuh")}
    assert in_repo and in_repo <= shipped, in_repo - shipped
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "lqq").rglob("*.py")}
    assert modules <= set(names), modules - set(names)      # every subpackage is packaged

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)
    code = "import lqq, lqq.jit; print(lqq.__file__); print(lqq.jit.template_dir())"
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, check=True).stdout.split()
    assert out[0].startswith(str(site)) and out[1].startswith(str(site))
    assert any(Path(out[1]).glob("*.j2"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lqq", *args], capture_output=True, text=True,
                          cwd=ROOT)


def test_cli_info_json():
    r = run_cli("info", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["lqq"] and "cache_root" in info and "nvrtc" in info
    assert "LQQ_CACHE_DIR" in info["environment"]


def test_cli_info_text_and_usage_errors():
    r = run_cli("info")
    assert r.returncode == 0 and "cache_root" in r.stdout
    assert run_cli().returncode == 2
    bad = run_cli("frobnicate")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_cli_bench_and_kernels_argument_errors():
    """Bad arguments are named before any GPU work (or CuPy import) starts."""
    r = run_cli("bench", "--m", "1,x")
    assert r.returncode == 2 and "not a list of token counts" in r.stderr
    r = run_cli("bench", "--layers", "9B")
    assert r.returncode == 1 and "no layer matches" in r.stderr and "L3-8B o" in r.stderr
    r = run_cli("kernels", "--arch", "sm_75")
    assert r.returncode == 1 and "not a target" in r.stderr


def test_import_without_cupy(tmp_path):
    """`import lqq` and the NumPy path work when CuPy cannot be imported."""
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text("raise ImportError('no cupy here')\n")
    code = ("import numpy as np, lqq; w = lqq.quantize_weight(np.ones((4, 64)));"
            "print(lqq.gemm(np.ones((2, 64), np.float32), w).shape)")
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(2, 4)"
    r = subprocess.run([sys.executable, "-m", "lqq", "bench", "--m", "1"], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 1 and "needs CuPy and a CUDA GPU (no cupy here)" in r.stderr
    assert "Traceback" not in r.stderr
