"""The driver-launch path for programmatic dependent launch (lqq/launch.py):
struct layouts that must match cuda.h, argument marshalling, and the knob.
CPU only; the launches themselves run in tests/test_gpu.py."""
import ctypes

import numpy as np
import pytest

from lqq import knobs, launch, tma

cp = pytest.importorskip("cupy")


def test_struct_layouts_match_cuda_h():
    # CUlaunchAttribute: 4-byte id, 4 bytes of padding, a 64-byte union
    assert ctypes.sizeof(launch._LaunchAttribute) == 72
    assert launch._LaunchAttribute.value.offset == 8
    # CUlaunchConfig: seven unsigned ints, then hStream, attrs, numAttrs
    assert launch._LaunchConfig.stream.offset == 32
    assert launch._LaunchConfig.attrs.offset == 40
    assert launch._LaunchConfig.num_attrs.offset == 48
    assert ctypes.sizeof(launch._LaunchConfig) == 56
    # the one attribute lqq sets: CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6, on
    assert launch._PDL_ATTR.id == 6 and launch._PDL_ATTR.value == 1


def test_arguments_keep_their_bytes_in_aligned_slots():
    tmap = np.zeros(1, tma.MAP_DTYPE)
    tmap["opaque"][0] = np.arange(16, dtype=np.uint64) * 0x0101010101
    args = (np.int32(-7), tmap, np.float32(1.5), np.int32(9))
    buf, params = launch._pack(args)
    assert [p - params[0] for p in params] == [0, 8, 136, 144]
    assert ctypes.addressof(buf) % 8 == 0 and params[0] == ctypes.addressof(buf)
    raw = bytes(buf)
    assert raw[0:4] == np.int32(-7).tobytes()
    assert raw[8:136] == tmap.tobytes()
    assert raw[136:140] == np.float32(1.5).tobytes()
    assert raw[144:148] == np.int32(9).tobytes()


def test_arguments_of_other_types_are_refused():
    with pytest.raises(TypeError, match="kernel argument of type int"):
        launch._pack((np.int32(1), 3))


def test_pdl_knob(monkeypatch):
    monkeypatch.delenv("LQQ_PDL", raising=False)
    assert knobs.pdl() is True
    monkeypatch.setenv("LQQ_PDL", "0")
    assert knobs.pdl() is False
    monkeypatch.setenv("LQQ_PDL", "maybe")
    with pytest.raises(ValueError, match="LQQ_PDL"):
        knobs.pdl()


def test_tensor_maps_are_encoded_at_64_byte_aligned_addresses():
    maps = [tma._aligned_map() for _ in range(50)]
    assert all(m.ctypes.data % 64 == 0 and m.shape == (1,) and m.dtype == tma.MAP_DTYPE
               and not m.tobytes().strip(b"\0") for m in maps)
