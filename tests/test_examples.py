"""The examples run in their CPU mode (a machine with no GPU) and say so."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), LQQ_CACHE_DIR=str(tmp_path))
    return subprocess.run([sys.executable, str(ROOT / "examples" / name)], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=600)


def gpu_present():
    from lqq import _xp
    cp = _xp.cupy_or_none()
    try:
        return cp is not None and cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.parametrize("name", ["numpy_interop.py", "llama_block.py", "demo.py",
                                  "torch_interop.py"])
def test_example_runs_in_cpu_mode(name, tmp_path):
    if gpu_present():
        pytest.skip("a GPU is present: the examples run in GPU mode (benchmarks/gpu_check.sh)")
    if name == "torch_interop.py":
        pytest.importorskip("torch", reason="PyTorch is not installed (optional dependency)")
    r = run_example(name, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no GPU" in r.stdout
