"""gpu_gemm's per-weight state, on the CPU with stand-ins for CuPy: launch
records (and their TMA maps) belong to one packed copy, and the host waits
for the packing kernels before any GEMM can read their output
(tests/test_gpu.py runs both on a GPU)."""
import sys
import types

import numpy as np
import pytest

import lqq
from lqq import configs, gpu_gemm, launch, packing, tma


class DeviceArray:
    """What gpu_gemm reads of a packed CuPy array: its shape and address."""

    def __init__(self, a, ptr):
        self.shape, self.data = a.shape, types.SimpleNamespace(ptr=ptr)


def on_device(p, base):
    """p's layout with its arrays at made-up device addresses from `base`."""
    return packing.PackedWeight(DeviceArray(p.codes, base), DeviceArray(p.meta, base + (1 << 20)),
                                DeviceArray(p.s1, base + (2 << 20)), p.N, p.K, p.group_size)


@pytest.fixture
def hopper(monkeypatch):
    """An sm_90 device 0 where loading a kernel and encoding a map are free."""
    fake = types.SimpleNamespace(ndarray=type("ndarray", (), {}),    # no array is one
                                 cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(launch, "compute_capability", lambda: "90")
    monkeypatch.setattr(gpu_gemm, "function", lambda spec, smem=0: ("kernel", spec.name, smem))
    monkeypatch.setattr(tma, "blocks_3d", lambda ptr, dims, strides, box: ("map", ptr, box))


def test_launch_records_belong_to_the_packed_copy(hopper):
    """The Hopper launch record holds TMA maps of the packed arrays. Memoized
    per weight and device only, a record built for one packed copy was handed
    to the next (after a repack, or a second thread's packing), whose kernel
    then read the first copy's (possibly freed) memory."""
    rng = np.random.default_rng(0)
    w = lqq.quantize_weight(rng.standard_normal((200, 512)).astype(np.float32), 64, "round")
    host = packing.pack(w)
    plan = configs.plan(configs.WgmmaConfig(64, 4), 64, 200, 512, ctas=3)
    first, second = on_device(host, 0x10000000), on_device(host, 0x70000000)
    a = gpu_gemm._launch(w, first, plan, 64, np.float16, 0)
    b = gpu_gemm._launch(w, second, plan, 64, np.float16, 0)
    assert [m[1] for m in a.maps] == [0x10000000, 0x10000000 + (1 << 20)]
    assert [m[1] for m in b.maps] == [0x70000000, 0x70000000 + (1 << 20)]
    assert gpu_gemm._launch(w, first, plan, 64, np.float16, 0) is a, "memoized on its copy"
    assert a.partial_size > 0 and a.counters_size == 2, "3 CTAs over 2 tiles: stream-K scratch"
    f16 = np.dtype(np.float16)
    assert first.launches == {(plan, 64, f16, 0): a} and second.launches == {(plan, 64, f16, 0): b}


class Stream:
    """The current CUDA stream, capturing or not."""

    capturing = False

    def is_capturing(self):
        return self.capturing

    def synchronize(self):
        pass


class CUDARuntimeError(RuntimeError):
    """cupy.cuda.runtime.CUDARuntimeError's stand-in."""


@pytest.fixture
def device(monkeypatch):
    """CuPy's device 0 and its current stream."""
    stream = Stream()
    fake = types.SimpleNamespace(
        ndarray=type("ndarray", (), {}),
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0),
                                   get_current_stream=lambda: stream,
                                   runtime=types.SimpleNamespace(CUDARuntimeError=CUDARuntimeError)))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return stream


def test_packing_waits_for_its_kernels_once(device, monkeypatch):
    """The host waits for the packing kernels before anything can read the
    packed copy (a GEMM on another stream, or the Hopper kernel's weight
    copies before its grid-dependency wait), and only on the call that packs."""
    rng = np.random.default_rng(1)
    w = lqq.quantize_weight(rng.standard_normal((70, 256)).astype(np.float32), 64, "round")
    order = []
    real = packing.pack
    monkeypatch.setattr(packing, "pack", lambda w: order.append("pack") or real(w))
    monkeypatch.setattr(device, "synchronize", lambda: order.append("sync"))
    p = gpu_gemm.packed(w)
    assert order == ["pack", "sync"]
    assert gpu_gemm.packed(w) is p and order == ["pack", "sync"]
    assert np.array_equal(packing.unpack_codes(p), w.unpacked_codes())


def test_packing_refuses_graph_capture_and_keeps_a_racing_threads_copy(device, monkeypatch):
    rng = np.random.default_rng(2)
    w = lqq.quantize_weight(rng.standard_normal((64, 128)).astype(np.float32), 64, "round")
    device.capturing = True
    with pytest.raises(RuntimeError, match="before capturing"):
        gpu_gemm.packed(w)
    assert w._device_cache == {}
    device.capturing = False
    theirs = packing.pack(w)
    real = packing.pack

    def pack_while_another_thread_publishes(w):
        mine = real(w)
        w._device_cache[("packed", packing.LAYOUT_VERSION, 0)] = theirs
        return mine
    monkeypatch.setattr(packing, "pack", pack_while_another_thread_publishes)
    assert gpu_gemm.packed(w) is theirs, "one copy per weight and device, whoever packed first"


def test_a_capture_elsewhere_gives_the_clear_error(device, monkeypatch):
    """A blocking or global-mode capture on another stream makes the capture
    query or the host wait fail with a bare CUDA error; packed() says what
    to do instead, and publishes nothing."""
    rng = np.random.default_rng(3)
    w = lqq.quantize_weight(rng.standard_normal((64, 128)).astype(np.float32), 64, "round")

    def fail():
        raise CUDARuntimeError("cudaErrorStreamCaptureUnsupported")
    for method in ("is_capturing", "synchronize"):
        real = getattr(device, method)
        setattr(device, method, fail)
        with pytest.raises(RuntimeError, match="before capturing") as e:
            gpu_gemm.packed(w)
        assert isinstance(e.value.__cause__, CUDARuntimeError) and w._device_cache == {}
        setattr(device, method, real)
    assert gpu_gemm.packed(w) is w._device_cache[("packed", packing.LAYOUT_VERSION, 0)]


def test_torch_stream_reaches_cupy_without_the_deprecated_wrapper(monkeypatch):
    """torch's current stream becomes a CuPy stream through the CUDA stream
    protocol (CuPy 14 deprecates ExternalStream, and warned 33 times in the
    GPU suite): same handle, no warning. Needs CuPy, not a GPU."""
    cp = pytest.importorskip("cupy", reason="CuPy is not installed here")
    if not hasattr(cp.cuda.Stream, "from_external"):
        pytest.skip("CuPy < 14 has only ExternalStream")
    stream = types.SimpleNamespace(cuda_stream=0x5eed)
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = gpu_gemm.current_stream(None, torch_input=True)
    assert got.ptr == 0x5eed and not isinstance(got, cp.cuda.ExternalStream)
