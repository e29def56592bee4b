"""nbcanvas.leansend: streams that write when the loop is next free, over real ``nbtcp://``
sockets and distributed's in-memory comm (the embedded cluster's use of them runs in every
integration test on it)."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from distributed.batched import BatchedSend
from distributed.comm import CommClosedError, connect, listen

from nbcanvas.leansend import LeanSend, make_lean, small_message, write_now

TIMEOUT = 30
SCHEMES = pytest.mark.parametrize("scheme", ["nbtcp://127.0.0.1:0", "inproc://"])


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


class _Inbox:
    """A listener keeping every read (a list of messages: one write) until closed."""

    def __init__(self) -> None:
        self.reads: list[list] = []
        self.changed = asyncio.Event()
        self.closed = asyncio.Event()

    async def handle(self, comm) -> None:
        try:
            while True:
                self.reads.append(await comm.read())
                self.changed.set()
        except CommClosedError:
            self.closed.set()

    async def until(self, n: int) -> list:
        """The messages, once ``n`` have come."""
        while sum(map(len, self.reads)) < n:
            self.changed.clear()
            await self.changed.wait()
        return [m for r in self.reads for m in r]


async def _pair(scheme: str):
    inbox = _Inbox()
    listener = listen(scheme, inbox.handle)
    await listener.start()
    comm = await connect(listener.contact_address, timeout=TIMEOUT)
    return inbox, listener, comm


@SCHEMES
def test_messages_sent_together_leave_in_one_write_in_order(scheme):
    async def go():
        inbox, listener, comm = await _pair(scheme)
        stream = BatchedSend(interval=0)
        assert make_lean(stream) and type(stream) is LeanSend
        stream.start(comm)
        try:
            stream.send({"i": 0}, {"i": 1})
            stream.send({"i": 2})  # the same turn of the loop: the same write
            assert [m["i"] for m in await inbox.until(3)] == [0, 1, 2]
            for i in range(3, 6):  # one per turn: one write each
                stream.send({"i": i})
                await inbox.until(i + 1)
            return inbox.reads, stream.batch_count, stream.message_count
        finally:
            await stream.close()
            listener.stop()
    reads, batches, count = _run(go())
    assert [[m["i"] for m in r] for r in reads] == [[0, 1, 2], [3], [4], [5]]
    assert (batches, count) == (4, 6)


@SCHEMES
def test_a_running_stream_made_lean_loses_nothing_and_keeps_the_order(scheme):
    """Made lean while its coroutine runs, with messages waiting: they leave first, after the
    coroutine has stopped, then the later ones."""
    async def go():
        inbox, listener, comm = await _pair(scheme)
        stream = BatchedSend(interval=0)
        stream.start(comm)
        stream.send({"i": 0})
        await inbox.until(1)  # the coroutine runs and has written
        stream.send({"i": 1}, {"i": 2})
        assert make_lean(stream)
        assert not make_lean(stream)  # already lean
        stream.send({"i": 3})
        got = await inbox.until(4)
        assert stream.stopped.is_set()  # dask's coroutine has left
        await stream.close()
        await inbox.closed.wait()  # close() closed the comm
        listener.stop()
        return got
    assert [m["i"] for m in _run(go())] == [0, 1, 2, 3]


def test_a_stream_made_lean_before_it_starts_writes_what_it_holds_on_start():
    async def go():
        inbox, listener, comm = await _pair("nbtcp://127.0.0.1:0")
        stream = BatchedSend(interval=0)
        make_lean(stream)
        stream.send({"i": 0})
        await asyncio.sleep(0)  # a turn of the loop: no comm yet, nothing written
        assert stream.buffer == [{"i": 0}]
        stream.start(comm)
        got = await inbox.until(1)
        await stream.close()
        listener.stop()
        return got
    assert _run(go()) == [{"i": 0}]


def test_a_big_message_goes_the_awaited_way_and_later_ones_wait_for_it(monkeypatch):
    """Over distributed's offload threshold, a message is serialised on its offload thread;
    what is sent meanwhile follows it, in one write, in order."""
    from distributed.comm import utils as comm_utils
    monkeypatch.setattr(comm_utils, "OFFLOAD_THRESHOLD", 100_000)

    async def go():
        inbox, listener, comm = await _pair("nbtcp://127.0.0.1:0")
        stream = BatchedSend(interval=0)
        make_lean(stream)
        stream.start(comm)
        assert write_now(comm, [{"x": np.zeros(100_000)}]) is None  # too big to write now
        stream.send({"i": 0, "x": np.arange(200_000)})
        await asyncio.sleep(0)  # the write has begun: it awaits the offload thread
        assert stream._writing is not None
        stream.send({"i": 1})
        stream.send({"i": 2})
        got = await inbox.until(3)
        await stream.close()
        listener.stop()
        return got, inbox.reads
    got, reads = _run(go())
    assert [m["i"] for m in got] == [0, 1, 2] and got[0]["x"].sum() == np.arange(200_000).sum()
    assert [len(r) for r in reads] == [1, 2]


@SCHEMES
def test_close_writes_what_waits_and_abort_drops_it(scheme):
    async def go():
        inbox, listener, comm = await _pair(scheme)
        stream = BatchedSend(interval=0)
        make_lean(stream)
        stream.start(comm)
        stream.send({"i": 0})
        await stream.close()  # before the loop's next turn: close() writes it
        await inbox.closed.wait()
        first = list(inbox.reads)
        inbox2, listener2, comm2 = await _pair(scheme)
        other = BatchedSend(interval=0)
        make_lean(other)
        other.start(comm2)
        other.send({"i": 1})
        other.abort()
        await inbox2.closed.wait()
        with pytest.raises(CommClosedError):
            other.send({"i": 2})
        listener.stop()
        listener2.stop()
        return first, inbox2.reads
    first, second = _run(go())
    assert [list(r) for r in first] == [[{"i": 0}]] and second == []


def test_only_streams_without_an_interval_are_made_lean():
    async def go():
        batching = BatchedSend(interval="5ms")
        assert not make_lean(batching) and type(batching) is BatchedSend
        assert not make_lean(object())
        assert write_now(object(), [{"i": 0}]) is None  # a comm it does not know: await
    _run(go())


# -- small_message: the offload decision, a cheap bound instead of dask.sizeof -------------------
def test_small_message_bounds_what_dask_sizes_and_gives_up_on_the_rest():
    from dask.sizeof import sizeof
    from distributed.protocol import ToPickle
    task_msg = [{"op": "task-finished", "key": "add-1", "nbytes": 172, "status": "OK",
                 "startstops": [{"action": "compute", "start": 1.0, "stop": 2.0}],
                 "type": b"\x80\x05" * 20, "metadata": {}, "thread": 140026595763904}]
    assert small_message(task_msg, 1 << 20)
    assert sizeof(task_msg) < 1 << 20
    big = np.zeros(1_000_000)  # 8 MB inside a wrapper: sized by dask's sizeof, as before
    for msg in ({"x": big}, [{"run_spec": ToPickle(big)}], ("s" * 2_000_000,),
                {"data": b"x" * 2_000_000}):
        assert sizeof(msg) > 1 << 20 and not small_message(msg, 1 << 20), msg
    assert not small_message(list(range(17)), 10, most=100)  # over the limit
    assert not small_message([[i] for i in range(10)], 1 << 20, most=5)  # too many items
    assert small_message([[i] for i in range(10)], 1 << 20, most=50)

    class Unsizable:
        def __sizeof__(self):
            raise RuntimeError("no size")
    assert not small_message({"x": Unsizable()}, 1 << 20)




def test_small_packer_packs_the_same_bytes_as_msgpack():
    import msgpack

    from nbcanvas.leansend import SmallPacker
    packer = SmallPacker(msgpack)
    for msg in [{"op": "ping"}, [{"op": "x", "data": b"y" * 10_000}], {"k": "z" * 300_000},
                [1.5, None, True, {"nested": [list(range(5000))]}]]:
        assert packer.dumps(msg, use_bin_type=True) == msgpack.dumps(msg, use_bin_type=True)
    assert packer.packb({"a": 1}) == msgpack.packb({"a": 1})
    assert packer.Unpacker is msgpack.Unpacker  # the rest is msgpack's own


_FAULTS = """
import resource, sys
from distributed.protocol import dumps
from distributed.protocol.serialize import ToPickle
from nbcanvas.leansend import small_pack_buffers
msg = [{"op": "task-finished", "key": "add-1", "nbytes": 28}, {"op": "log-event",
       "msg": ToPickle([["E", "id", 1.0, 0, "host", 2.0, "SUCCESS", None]])}]
def faults(n=1000):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        dumps(msg)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(50)
plain = faults()
print(small_pack_buffers(), small_pack_buffers(), plain, faults())
"""


@pytest.mark.skipif(__import__("platform").libc_ver()[0] != "glibc", reason="glibc's malloc")
def test_where_a_nanny_fixed_the_mmap_threshold_messages_are_packed_without_mapping_memory():
    """As in a dask worker process (MALLOC_TRIM_THRESHOLD_ set): msgpack's 256 KiB buffer was
    mapped and touched anew for every message and every pickled part of one."""
    import os
    import subprocess
    import sys
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    changed, again, plain, small = out.stdout.split()
    assert (changed, again) == ("True", "False")
    assert int(plain) >= 2000, out.stdout  # two fresh mappings per message: the cost is real
    assert int(small) < 200, out.stdout


def test_without_a_fixed_mmap_threshold_nothing_changes(monkeypatch):
    from nbcanvas import leansend
    for name in leansend._FIXED_MALLOC:
        monkeypatch.delenv(name, raising=False)
    assert leansend.small_pack_buffers() is False
