"""gpu_gemm's per-weight state, on the CPU with stand-ins for CuPy: launch
records (and their TMA maps) belong to one packed copy, and every GEMM is
ordered after the packing kernels (tests/test_gpu.py runs both on a GPU)."""
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
    assert first.launches == {(plan, 64, "e", 0): a} and second.launches == {(plan, 64, "e", 0): b}


class Event:
    """A CUDA event that completes when the test says so."""

    def __init__(self, block=False, disable_timing=False):
        self.ptr, self.complete, self.queries, self.recorded = 0xE7, False, 0, []

    @property
    def done(self):
        self.queries += 1
        return self.complete

    def record(self, stream):
        self.recorded.append(stream)


class Stream:
    """A CUDA stream that logs the waits queued on it."""

    def __init__(self, ptr, capturing=False):
        self.ptr, self.capturing, self.log = ptr, capturing, []

    def is_capturing(self):
        return self.capturing

    def wait_event(self, event):
        self.log.append(("wait", event))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture
def launches(monkeypatch):
    """gpu_gemm._run's launches as (stream ptr, pdl, the stream's queued
    waits at that moment); graph waits go to the stream's log."""
    seen = []
    monkeypatch.setattr(launch, "launch", lambda kernel, grid, block, args, smem, stream, pdl:
                        seen.append((stream.ptr, pdl, list(stream.log))))
    monkeypatch.setattr(gpu_gemm, "_wait_in_graph",
                        lambda stream, event: stream.log.append(("graph waits", event)))
    return seen


def record(wgmma=True):
    return types.SimpleNamespace(kernel=None, grid=(1, 1, 1), threads=384, smem=0, wgmma=wgmma)


def fresh_packing():
    p = packing.PackedWeight(None, None, None, 64, 128, 64)
    p.event = Event()
    return p


def test_first_launch_on_each_stream_waits_for_the_packing_and_goes_without_pdl(launches):
    """The packing kernels ran on one stream; the Hopper kernel reads weights
    before its grid-dependency wait. So the first GEMM on any stream waits for
    the packing's event and launches without PDL; later ones on that stream
    use PDL; a stream's first call in a graph capture waits inside the graph
    (and does not count as ordered: the graph waits, not the stream), while a
    capture on a warmed-up stream captures the usual PDL launch."""
    p = fresh_packing()
    ev = p.event
    packing_stream, user, other = Stream(1), Stream(2), Stream(3)
    gpu_gemm._run(record(), p, (), packing_stream)
    gpu_gemm._run(record(), p, (), packing_stream)
    gpu_gemm._run(record(), p, (), user)
    assert launches == [(1, False, [("wait", ev)]), (1, True, [("wait", ev)]),
                        (2, False, [("wait", ev)])]
    assert p.streams == {1, 2} and not p.done
    launches.clear()
    other.capturing = True
    gpu_gemm._run(record(), p, (), other)
    gpu_gemm._run(record(), p, (), other)
    user.capturing = True
    gpu_gemm._run(record(), p, (), user)
    assert launches == [(3, False, [("graph waits", ev)]),
                        (3, False, [("graph waits", ev)] * 2), (2, True, [("wait", ev)])]
    assert p.streams == {1, 2}, "a capture orders the graph, not the stream"
    assert ev.queries == 3, "queried by the three eager calls, never in capture"


def test_once_the_packing_is_seen_done_every_stream_uses_pdl(launches):
    """When the event reports completion, no stream needs to wait any more
    (also one recorded under a recycled pointer): the per-stream set is
    dropped and the hot path is one attribute test, with no event query."""
    p = fresh_packing()
    gpu_gemm._run(record(), p, (), Stream(1))
    p.event.complete = True
    gpu_gemm._run(record(), p, (), Stream(5))
    assert p.done and p.streams == set()
    queries = p.event.queries
    gpu_gemm._run(record(), p, (), Stream(6, capturing=True))
    gpu_gemm._run(record(), p, (), Stream(7))
    assert launches[1:] == [(5, True, []), (6, True, []), (7, True, [])]
    assert p.event.queries == queries


def test_mma_sync_kernels_wait_for_the_packing_too(launches):
    """The portable kernels never use PDL, but on another stream they must
    still follow the packing; their launch orders the stream."""
    p, stream = fresh_packing(), Stream(4)
    gpu_gemm._run(record(wgmma=False), p, (), stream)
    gpu_gemm._run(record(wgmma=False), p, (), stream)
    gpu_gemm._run(record(), p, (), stream)
    assert [(pdl, len(log)) for _, pdl, log in launches] == [(False, 1), (False, 1), (True, 1)]


@pytest.fixture
def device(monkeypatch):
    """CuPy's device 0 and its current stream, with events that log."""
    stream = Stream(11)
    fake = types.SimpleNamespace(
        ndarray=type("ndarray", (), {}),
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0), Event=Event,
                                   get_current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return stream


def test_packing_records_its_event_on_the_current_stream(device, monkeypatch):
    rng = np.random.default_rng(1)
    w = lqq.quantize_weight(rng.standard_normal((70, 256)).astype(np.float32), 64, "round")
    order = []
    real = packing.pack
    monkeypatch.setattr(packing, "pack", lambda w: order.append("pack") or real(w))
    p = gpu_gemm.packed(w)
    assert order == ["pack"] and p.event.recorded == [device] and not p.done
    assert gpu_gemm.packed(w) is p and order == ["pack"] and p.event.recorded == [device]
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
