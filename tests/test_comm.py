"""nbcanvas.comm: the ``nbtcp://`` comm, over real loopback sockets with distributed's own
``listen``/``connect`` (handshake included); the embedded cluster's use of it is checked in
tests/integration/test_cluster.py."""
from __future__ import annotations

import asyncio
import struct

import dask
import numpy as np
import pytest
from distributed.comm import CommClosedError, connect, listen

import nbcanvas as nc
from nbcanvas import comm as lean
from nbcanvas.embedded import _worker_comm

TIMEOUT = 30


async def _echo_pair():
    """A listener that echoes every message, and a comm connected to it."""
    async def echo(comm):
        try:
            while True:
                await comm.write(await comm.read())
        except CommClosedError:
            pass
    listener = listen("nbtcp://127.0.0.1:0", echo)
    await listener.start()
    comm = await connect(listener.contact_address, timeout=TIMEOUT)
    return listener, comm


def _run(coro, loop: str = "asyncio"):
    if loop == "uvloop":  # the embedded cluster's event loops
        import uvloop
        return uvloop.run(asyncio.wait_for(coro, TIMEOUT))
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


@LOOPS
def test_messages_go_both_ways_in_order_with_distributed_handshake(loop):
    async def go():
        listener, comm = await _echo_pair()
        try:
            assert comm.peer_address == listener.contact_address
            assert comm.peer_address.startswith("nbtcp://127.0.0.1:")
            assert comm.remote_info["address"] == comm.peer_address  # handshake done
            for i in range(5):  # written back to back: several may arrive in one read
                await comm.write({"op": "ping", "i": i, "blob": b"x" * (i * 1000)})
            return [await comm.read() for _ in range(5)]
        finally:
            await comm.close()
            listener.stop()
    got = _run(go(), loop)
    assert [m["i"] for m in got] == [0, 1, 2, 3, 4]
    assert [len(m["blob"]) for m in got] == [0, 1000, 2000, 3000, 4000]


@LOOPS
@pytest.mark.parametrize("array", [np.arange(12_000_000, dtype="int64"),  # 96 MB: writes pause
                                   np.arange(10, dtype="int64"),  # a frame of 8-byte items
                                   np.arange(20, dtype="int64")[::2]])  # not contiguous
def test_arrays_arrive_whole_and_writable(loop, array):
    from distributed.protocol import to_serialize

    async def go():
        listener, comm = await _echo_pair()
        try:
            await comm.write({"x": to_serialize(array), "after": 1})
            return await comm.read()
        finally:
            await comm.close()
            listener.stop()
    back = _run(go(), loop)
    assert back["x"].dtype == array.dtype and np.array_equal(back["x"], array)
    assert back["x"].flags.writeable and back["after"] == 1  # writable, as distributed's are


def test_the_parser_cuts_messages_from_any_chunking():
    header = struct.pack("<3Q", 2, 3, 4)
    wire = (header + b"abc" + b"defg") * 3 + struct.pack("<2Q", 1, 0)  # an empty frame too
    for step in (1, 5, 16, len(wire)):
        s = lean._Stream()
        for i in range(0, len(wire), step):
            s.data_received(wire[i:i + step])
        got = [[bytes(f) for f in m] for m in s.messages]
        assert got == [[b"abc", b"defg"]] * 3 + [[b""]], step
        assert len(s._buf) == 0


def test_a_closed_peer_is_a_comm_closed_error_for_reader_and_writer():
    async def go():
        listener, comm = await _echo_pair()
        server_side = []

        async def keep(c):
            server_side.append(c)
            await asyncio.Event().wait()
        listener.stop()
        other = listen("nbtcp://127.0.0.1:0", keep)
        await other.start()
        c2 = await connect(other.contact_address, timeout=TIMEOUT)
        while not server_side:
            await asyncio.sleep(0.01)
        reading = asyncio.ensure_future(c2.read())
        server_side[0].abort()  # the peer goes away while we wait for a message
        with pytest.raises(CommClosedError):
            await reading
        assert c2.closed()
        with pytest.raises(CommClosedError):
            await c2.write({"op": "late"})
        await comm.close()
        assert comm.closed()
        with pytest.raises(CommClosedError):
            await comm.read()
        other.stop()
    _run(go())


def test_connecting_to_nothing_fails_within_the_timeout():
    async def go():
        with pytest.raises(OSError, match="nbtcp"):  # CommClosedError is an OSError
            await connect("nbtcp://127.0.0.1:9", timeout=1)
    _run(go())


def test_other_processes_find_the_scheme_through_the_entry_point():
    assert lean.available()
    from importlib.metadata import entry_points
    (ep,) = entry_points(group="distributed.comm.backends", name="nbtcp")
    assert isinstance(ep.load()(), lean.LeanBackend)


def test_the_embedded_worker_comm_is_chosen_by_config():
    with dask.config.set({"nbcanvas.embedded.comm": None}):
        assert _worker_comm() == {"protocol": "nbtcp://"}
    with dask.config.set({"nbcanvas.embedded.comm": " TCP "}):
        assert _worker_comm() == {}
    with dask.config.set({"nbcanvas.embedded.comm": None,
                          "distributed.comm.require-encryption": True}):
        assert _worker_comm() == {}  # nbtcp has no TLS
    with dask.config.set({"nbcanvas.embedded.comm": "ucx"}):
        with pytest.raises(nc.ImproperlyConfigured, match="'nbtcp' .*or 'tcp'"):
            _worker_comm()


# -- the offload decision: a cheap bound instead of dask.sizeof for small messages --------------
class _Where:
    """Records the thread that pickles it (distributed serialises big messages on its offload
    thread, small ones on the event loop)."""

    seen: list[str] = []

    def __init__(self, payload: bytes = b"") -> None:
        self.payload = payload

    def __reduce__(self):
        import threading
        _Where.seen.append(threading.current_thread().name)
        return (_Where, (self.payload,))


@pytest.mark.parametrize("size, offloaded", [(100, False), (50_000, True)])
def test_messages_over_the_offload_threshold_still_serialise_off_the_loop(monkeypatch, size,
                                                                         offloaded):
    from distributed.comm import utils as comm_utils
    from distributed.protocol import ToPickle
    monkeypatch.setattr(comm_utils, "OFFLOAD_THRESHOLD", 20_000)  # distributed.comm.offload

    async def go():
        listener, comm = await _echo_pair()
        try:
            _Where.seen.clear()
            await comm.write({"op": "x", "obj": ToPickle(_Where()), "pad": b"x" * size})
            got = await comm.read()
            return got["pad"], list(_Where.seen)
        finally:
            await comm.close()
            listener.stop()
    payload, seen = _run(go())
    assert len(payload) == size
    assert seen and ("Offload" in seen[0]) is offloaded, seen


def test_write_now_writes_a_small_message_at_once_and_declines_otherwise(monkeypatch):
    from distributed.comm import utils as comm_utils
    monkeypatch.setattr(comm_utils, "OFFLOAD_THRESHOLD", 20_000)

    async def go():
        listener, comm = await _echo_pair()
        try:
            n = comm.write_now({"op": "ping", "blob": b"x" * 100})  # no await: written
            assert n > 100
            got = await comm.read()
            assert comm.write_now({"op": "big", "blob": b"x" * 50_000}) is None  # offloaded
            comm.abort()
            assert comm.write_now({"op": "ping"}) is None
            return got
        finally:
            listener.stop()
    assert _run(go()) == {"op": "ping", "blob": b"x" * 100}
