"""Shared by the examples: is there a GPU lqq can use?"""
from lqq import _xp


def gpu_available() -> bool:
    cp = _xp.cupy_or_none()
    try:
        return cp is not None and cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False
