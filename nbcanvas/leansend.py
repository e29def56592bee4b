"""Message streams that write as soon as the event loop is free (run stage).

distributed sends a stream's messages (scheduler to worker, worker to scheduler, client to
scheduler and back) through a ``BatchedSend``: messages wait in a buffer, and a Tornado
coroutine writes them at most once per interval. The embedded cluster sets those intervals to
0, but the coroutine still costs each message a Tornado event, a timeout and a task, and two
more turns of the coroutine after every write, in each process a message passes through.

:class:`LeanSend` is a ``BatchedSend`` for an interval of 0: ``send`` buffers the message and
asks the loop for one callback, which writes all that was buffered by then in one message
(messages sent together still leave together, in order); over ``nbtcp://`` and in memory a
small message is written right there, larger ones by an ordinary ``await comm.write``.
:func:`make_lean` turns a stream of the embedded cluster into one, running or not.

>>> from distributed.batched import BatchedSend
>>> issubclass(LeanSend, BatchedSend)
True
"""
from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from dask.sizeof import sizeof
from distributed.batched import BatchedSend
from distributed.comm.core import CommClosedError
from distributed.comm.inproc import InProc
from distributed.protocol.serialize import Serialize, ToPickle

__all__ = ["LeanSend", "make_lean", "write_now", "small_message", "small_pack_buffers",
           "SmallPacker"]

logger = logging.getLogger(__name__)

_SCALARS = frozenset({int, float, bool, type(None)})


def small_message(msg: Any, limit: int, most: int = 4096) -> bool:
    """Whether ``msg`` surely holds less than ``limit`` bytes, walking its dicts, short lists
    and tuples and what ``ToPickle``/``Serialize`` wrap (strings and bytes by length, the rest
    by ``dask.sizeof``); False past ``most`` items or on any error. distributed sizes every
    message it writes with ``dask.sizeof`` to decide whether to serialise it on another
    thread: 19-30 µs for a task's messages, 4-6 µs here. Each item counts high.

    >>> small_message([{"op": "task-finished", "key": "add-1", "startstops": []}], 1 << 20)
    True
    >>> small_message({"data": b"x" * 2_000_000}, 1 << 20)
    False
    """
    total, stack, seen = 0, [msg], 0
    try:
        while stack:
            x = stack.pop()
            t = type(x)
            seen += 1
            if t is dict:
                total += 100 * len(x)
                stack.extend(x.keys())
                stack.extend(x.values())
            elif (t is list or t is tuple) and len(x) <= 16:
                total += 64 + 8 * len(x)
                stack.extend(x)
            elif t is str or t is bytes:
                total += 64 + 4 * len(x)
            elif t in _SCALARS:
                total += 32
            elif t is ToPickle or t is Serialize:  # dask sizes these by what they wrap
                stack.append(x.data)
            else:
                total += sizeof(x)
            if total >= limit or seen > most:
                return False
    except Exception:  # noqa: BLE001 - an object dask cannot size: let distributed decide
        return False
    return True


def write_now(comm: Any, msg: Any, serializers: Any = None) -> int | None:
    """Write ``msg`` on ``comm`` without waiting, if this comm can: a small message over
    ``nbtcp://`` (``LeanComm.write_now``), any message in memory (what ``InProc.write``
    does, without its coroutine). None if it cannot; then ``await comm.write(msg)``."""
    lean = getattr(comm, "write_now", None)
    if lean is not None:
        return lean(msg, serializers=serializers, on_error="raise")
    if type(comm) is InProc and hasattr(comm, "_write_loop"):
        if comm.closed():
            raise CommClosedError(f"{comm!r} closed")
        comm._write_loop.add_callback(comm._write_q.put_nowait, msg)
        return 1
    return None


class LeanSend(BatchedSend):
    """A ``BatchedSend`` that writes when the loop is next free, without its coroutine.

    Made by :func:`make_lean` from a ``BatchedSend`` (its class is changed, its buffer, counts
    and comm kept); ``start``, ``send``, ``close`` and ``abort`` keep their meaning.
    """

    _scheduled: bool
    _writing: asyncio.Task | None
    _closing: bool

    def _lean_init(self, busy: Any = None) -> None:
        self._scheduled, self._writing, self._closing = False, None, False
        if busy is not None:  # the replaced coroutine may be writing: wait for it to stop
            self._writing = asyncio.ensure_future(self._after(busy))

    async def _after(self, stopped: Any) -> None:
        try:
            await stopped.wait()
        finally:
            self._writing = None
        self._schedule()

    def start(self, comm: Any) -> None:
        self.comm, self._closing = comm, False
        self._schedule()

    def send(self, *msgs: Any) -> None:
        if self.comm is not None and self.comm.closed():
            raise CommClosedError(f"Comm {self.comm!r} already closed.")
        self.message_count += len(msgs)
        self.buffer.extend(msgs)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled and self._writing is None and self.buffer \
                and self.comm is not None:
            self._scheduled = True
            self.loop.add_callback(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._writing is not None or self._closing or not self.buffer or self.comm is None:
            return
        payload, self.buffer = self.buffer, []
        try:
            n = write_now(self.comm, payload, self.serializers)
        except CommClosedError:
            logger.info("Batched Comm Closed %r", self.comm, exc_info=True)
            self.abort()
            return
        except Exception:  # as BatchedSend: what was written is unknown, so abort
            logger.exception("Error in batched write")
            self.abort()
            return
        if n is None:
            self._writing = asyncio.ensure_future(self._write(payload))
        else:
            self.batch_count += 1
            self.byte_count += n

    async def _write(self, payload: list[Any]) -> None:
        try:
            while payload and not self._closing:
                self.batch_count += 1
                self.byte_count += await self.comm.write(
                    payload, serializers=self.serializers, on_error="raise")
                payload, self.buffer = self.buffer, []
        except CommClosedError:
            logger.info("Batched Comm Closed %r", self.comm, exc_info=True)
            payload = []
            self.abort()
        except Exception:  # as BatchedSend: what was written is unknown, so abort
            logger.exception("Error in batched write")
            payload = []
            self.abort()
        finally:
            self._writing = None
        if payload:  # taken as close() began: close() writes it, first
            self.buffer[:0] = payload

    async def close(self, timeout: float | None = None) -> None:  # type: ignore[override]
        """Write what is buffered, then close the comm."""
        if self.comm is None:
            return
        self._closing = True
        if self._writing is not None:
            await asyncio.wait_for(asyncio.shield(self._writing), timeout)
        if not self.comm.closed():
            try:
                if self.buffer:
                    self.buffer, payload = [], self.buffer
                    await self.comm.write(payload, serializers=self.serializers,
                                          on_error="raise")
            except CommClosedError:
                pass
            await self.comm.close()

    def abort(self) -> None:
        self._closing = True
        super().abort()


def make_lean(stream: Any) -> bool:
    """Make a ``BatchedSend`` with an interval of 0 a :class:`LeanSend`, on its event loop.

    A running stream's coroutine is asked to stop; the stream writes again once it has (a
    write it had begun finishes first). False, and nothing changed, for anything else (an
    interval over 0: that stream batches on purpose; already lean).
    """
    if type(stream) is not BatchedSend or (stream.interval or 0) > 0 or stream.please_stop:
        return False
    running = stream.comm is not None
    if running:  # its coroutine leaves its loop at the next wake-up, then sets `stopped`
        stream.please_stop = True
        stream.waker.set()
    stream.__class__ = LeanSend
    stream._lean_init(stream.stopped if running else None)
    return True


#: glibc's settings that fix its mmap threshold at 128 KiB when set (dask's nannies set the first)
_FIXED_MALLOC = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_")
#: the buffer a message is packed from; a larger message grows it (doubling)
PACK_BUFFER = 4096


class SmallPacker:
    """``msgpack`` as distributed's protocol calls it, with ``dumps`` starting from a small
    buffer. ``msgpack.dumps`` makes a ``Packer`` with a 256 KiB buffer for every message (and
    again for each pickled part of it); where glibc maps every allocation that large, each is an
    ``mmap``, page faults and a ``munmap`` -- with the process's other threads' TLBs flushed.
    The bytes are the same.

    >>> import msgpack
    >>> SmallPacker(msgpack).dumps({"op": "ping", "n": [1, 2]}) == msgpack.dumps(
    ...     {"op": "ping", "n": [1, 2]})
    True
    """

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def dumps(self, obj: Any, **kwargs: Any) -> bytes:
        return self._real.Packer(buf_size=PACK_BUFFER, **kwargs).pack(obj)

    packb = dumps


def small_pack_buffers(force: bool = False) -> bool:
    """In this process, distributed's protocol packs messages with :class:`SmallPacker`, if
    glibc's mmap threshold is fixed here (``_FIXED_MALLOC``) or ``force``. True if it changed
    anything. A/B on the embedded cluster with worker processes, 1,500 round trips per arm,
    alternating every 100: ``delay().get()`` p50 1.544 -> 1.486 and 1.587 -> 1.541 ms.

    >>> small_pack_buffers(force=True) in (True, False)  # this process: the same bytes
    True
    >>> small_pack_buffers(force=True)  # once is enough
    False
    >>> import distributed.protocol.core
    >>> type(distributed.protocol.core.msgpack).__name__
    'SmallPacker'
    """
    if not force and not any(k in os.environ for k in _FIXED_MALLOC):
        return False
    import importlib
    changed = False
    for name in ("distributed.protocol.core", "distributed.protocol.serialize"):
        module = importlib.import_module(name)  # the package's ``serialize`` is a function
        if not isinstance(module.msgpack, SmallPacker):
            module.msgpack = SmallPacker(module.msgpack)
            changed = True
    return changed
