"""``nbtcp://``: a lean TCP comm for the embedded cluster's worker processes (run stage).

distributed's ``tcp://`` comm reads each message through a Tornado ``IOStream``: a future per
read, the socket's event-loop registration changed around every read and write, and the
message read in three steps. A small message costs about 60 µs of CPU on each side here
(a ping-pong over it: 210 µs, 120 µs of CPU per exchange for one side). ``nbtcp://`` carries
the same frames (``distributed.comm.utils.to_frames`` / ``from_frames``, so serialisation,
offloading and frame splitting are distributed's; a small message is written at once, sparing
it dask's sizing: ``LeanComm.write_now``) over an ``asyncio`` protocol: the event
loop hands each chunk of bytes to a callback, which cuts whole messages out of its buffer and
passes them to the one reader (the same ping-pong: 80 µs, 36 µs of CPU).

The scheme is registered with distributed by this module and, for other processes (the
embedded cluster's worker processes), by the package's entry point in the group
``distributed.comm.backends``; :func:`available` says whether that entry point is installed.
Loopback use is what it is built for: no TLS, no keep-alive probes.

>>> from distributed.comm import parse_address
>>> parse_address("nbtcp://127.0.0.1:8786")
('nbtcp', '127.0.0.1:8786')
"""
from __future__ import annotations

import asyncio
import socket
import struct
import weakref
from collections import deque
from typing import Any, Final

import dask
from distributed import protocol
from distributed.comm import utils as comm_utils
from distributed.comm.addressing import parse_host_port, unparse_host_port
from distributed.comm.core import BaseListener, Comm, CommClosedError, Connector
from distributed.comm.registry import backends
from distributed.comm.tcp import TCPBackend
from distributed.comm.utils import ensure_concrete_host, from_frames, to_frames
from distributed.utils import nbytes

from . import localsock
from .leansend import small_message

__all__ = ["SCHEME", "PREFIX", "LeanComm", "LeanConnector", "LeanListener", "LeanBackend",
           "available"]

SCHEME: Final = "nbtcp"
PREFIX: Final = SCHEME + "://"
_Q: Final = struct.Struct("<Q")
#: messages up to this size are joined into one buffer and written with one call
_JOIN: Final = 1 << 16


class _Stream(asyncio.Protocol):
    """One connection's bytes: whole messages (lists of frames) queued for the reader."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.messages: deque[list[memoryview]] = deque()
        self.closed = False
        self.error: BaseException | None = None
        self._buf = bytearray()
        self._want = 8  # bytes the buffer needs before parsing is worth trying again
        self._waiter: asyncio.Future | None = None
        self._paused = False
        self._drained: list[asyncio.Future] = []
        self.on_open: Any = None

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - not a TCP socket
                pass
        if self.on_open is not None:
            self.on_open(self)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if len(buf) < self._want:
            return
        found, pos = [], 0
        end = len(buf)
        while end - pos >= 8:
            (n,) = _Q.unpack_from(buf, pos)
            head = 8 * (n + 1)
            if end - pos < head:
                self._want = pos + head
                break
            lens = struct.unpack_from(f"<{n}Q", buf, pos + 8)
            total = head + sum(lens)
            if end - pos < total:
                self._want = pos + total
                break
            found.append((pos + head, lens))
            pos += total
        else:
            self._want = pos + 8
        if not found:
            return
        # The parsed messages' frames are views of the buffer they arrived in (writable, as
        # distributed's own reads are): the rest goes on in a new buffer.
        self._buf = buf[pos:]
        self._want -= pos
        whole = memoryview(buf)
        for start, lens in found:
            frames = []
            for ln in lens:
                frames.append(whole[start:start + ln])
                start += ln
            self.messages.append(frames)
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.error = exc
        self._wake()
        self._resume()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._resume()

    def _resume(self) -> None:
        waiters, self._drained = self._drained, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # -- for the comm --------------------------------------------------------------------------
    def _wake(self) -> None:
        w, self._waiter = self._waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    async def next_message(self) -> list[memoryview]:
        """The next whole message; ``CommClosedError`` once the connection is gone."""
        while not self.messages:
            if self.closed:
                raise CommClosedError(f"nbtcp connection closed: {self.error or 'by the peer'}")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self.messages.popleft()

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark."""
        while self._paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter


class LeanComm(Comm):
    """An established ``nbtcp://`` connection (one reader and one writer at a time)."""

    max_shard_size: Final = dask.utils.parse_bytes(dask.config.get("distributed.comm.shard"))

    def __init__(self, stream: _Stream, local_addr: str, peer_addr: str,
                 deserialize: bool = True) -> None:
        super().__init__(deserialize=deserialize)
        self._stream: _Stream | None = stream  # None once closed or aborted here
        self._local_addr, self._peer_addr = local_addr, peer_addr
        # a comm dropped without close() closes its socket
        self._finalizer = weakref.finalize(self, _abort, stream.transport)
        self._finalizer.atexit = False

    @property
    def local_address(self) -> str:
        return self._local_addr

    @property
    def peer_address(self) -> str:
        return self._peer_addr

    async def read(self, deserializers: Any = None) -> Any:
        stream = self._stream
        if stream is None:
            raise CommClosedError("nbtcp comm closed")
        frames = await stream.next_message()
        try:
            return await from_frames(frames, deserialize=self.deserialize,
                                     deserializers=deserializers,
                                     allow_offload=self.allow_offload)
        except EOFError:
            self.abort()
            raise CommClosedError("aborted nbtcp stream on truncated data") from None

    def write_now(self, msg: Any, serializers: Any = None, on_error: str = "message") -> int | None:
        """Serialise and write ``msg`` now, on this thread, if it is small
        (:func:`~nbcanvas.leansend.small_message`) and the socket takes more; else None (then
        :meth:`write`, which may serialise it on distributed's offload thread)."""
        stream = self._stream
        limit = comm_utils.OFFLOAD_THRESHOLD  # distributed.comm.offload, in bytes (or off)
        if stream is None or stream.closed or stream.transport.is_closing() or stream._paused \
                or (self.allow_offload and limit and not small_message(msg, int(limit) // 2)):
            return None
        return self._put(stream, list(protocol.dumps(
            msg, serializers=serializers, on_error=on_error,
            frame_split_size=self.max_shard_size, context=self._context())))

    async def write(self, msg: Any, serializers: Any = None, on_error: str = "message") -> int:
        stream = self._stream
        if stream is None or stream.closed or stream.transport.is_closing():
            raise CommClosedError("nbtcp comm closed")
        total = self.write_now(msg, serializers, on_error)
        if total is None:
            total = self._put(stream, await to_frames(
                msg, allow_offload=self.allow_offload, serializers=serializers,
                on_error=on_error, frame_split_size=self.max_shard_size,
                context=self._context()))
        if stream._paused:
            await stream.drain()
        return total

    def _context(self) -> dict[str, Any]:
        return {"sender": self.local_info, "recipient": self.remote_info,
                **self.handshake_options}

    def _put(self, stream: _Stream, frames: list[Any]) -> int:
        lens = [nbytes(f) for f in frames]  # bytes, also for frames of wider items (not len())
        header = struct.pack(f"<{len(frames) + 1}Q", len(frames), *lens)
        total = len(header) + sum(lens)
        transport = stream.transport
        try:
            if total <= _JOIN:
                transport.write(b"".join([header, *frames]))
            else:
                transport.writelines([header, *(f for f, n in zip(frames, lens) if n)])
        except (RuntimeError, OSError) as e:  # a transport closing under us
            self.abort()
            raise CommClosedError(f"nbtcp write failed: {e}") from e
        return total

    async def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None and stream.transport is not None:
            self._finalizer.detach()
            if not stream.transport.is_closing():
                try:
                    await stream.drain()
                finally:
                    stream.transport.close()  # sends what is buffered, then closes

    def abort(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            self._finalizer.detach()
            _abort(stream.transport)

    def closed(self) -> bool:
        return self._stream is None or self._stream.closed

    @property
    def extra_info(self) -> dict:
        return {}


def _abort(transport: Any) -> None:
    if transport is not None and not transport.is_closing():
        transport.abort()


def _address(sockaddr: Any) -> str:
    return PREFIX + unparse_host_port(*sockaddr[:2])


class LeanConnector(Connector):
    """Opens ``nbtcp://`` connections."""

    async def connect(self, address: str, deserialize: bool = True,
                      **connection_args: Any) -> LeanComm:
        host, port = parse_host_port(address)
        loop = asyncio.get_running_loop()
        path = localsock.path_for(host, port)
        if path is not None:  # a listener on this machine: its Unix socket, if it has one
            try:
                _, stream = await loop.create_unix_connection(_Stream, path)
                return LeanComm(stream, PREFIX + unparse_host_port(host, 0), PREFIX + address,
                                deserialize)
            except OSError:  # none there, or its listener died: TCP
                pass
        try:
            transport, stream = await loop.create_connection(_Stream, host, port)
        except OSError as e:
            raise CommClosedError(f"nbtcp connect to {address}: {type(e).__name__}: {e}") from e
        return LeanComm(stream, _address(transport.get_extra_info("sockname")),
                        PREFIX + address, deserialize)


class LeanListener(BaseListener):
    """Accepts ``nbtcp://`` connections; each is handshaken, then given to ``comm_handler``."""

    prefix = PREFIX

    def __init__(self, address: str, comm_handler: Any, deserialize: bool = True,
                 allow_offload: bool = True, default_host: str | None = None,
                 default_port: int = 0, **connection_args: Any) -> None:
        super().__init__()
        self.ip, self.port = parse_host_port(address, default_port)
        self.default_host = default_host
        self.comm_handler, self.deserialize = comm_handler, deserialize
        self.allow_offload = allow_offload
        self.server: Any = None
        self.unix: tuple[Any, str] | None = None  # (server, path): see nbcanvas.localsock
        self.bound_address: tuple[str, int] | None = None
        self._handling: set[asyncio.Task] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        backlog = int(dask.config.get("distributed.comm.socket-backlog"))

        def made() -> _Stream:
            s = _Stream()
            s.on_open = self._accepted
            return s
        self.server = await loop.create_server(made, host=self.ip or None, port=self.port,
                                               backlog=backlog, reuse_address=True)
        self.bound_address = self.server.sockets[0].getsockname()[:2]
        self.unix = await localsock.listen(loop, made, self.bound_address, backlog)

    def _accepted(self, stream: _Stream) -> None:
        task = asyncio.ensure_future(self._handle(stream))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _handle(self, stream: _Stream) -> None:
        transport = stream.transport
        if isinstance(transport.get_extra_info("peername"), tuple):
            local, peer = (_address(transport.get_extra_info(k)) for k in ("sockname", "peername"))
        else:  # through the Unix socket: a peer on this machine
            local = self.contact_address
            peer = PREFIX + unparse_host_port(parse_host_port(local[len(PREFIX):])[0], 0)
        comm = LeanComm(stream, local, peer, self.deserialize)
        comm.allow_offload = self.allow_offload
        if self.server is None:  # stopped after the connection was accepted
            comm.abort()
            return
        try:
            await self.on_connection(comm)
        except CommClosedError:
            return
        await self.comm_handler(comm)

    def stop(self) -> None:
        server, self.server = self.server, None
        localsock.close(self.unix)
        self.unix = None
        if server is not None:
            server.close()

    def get_host_port(self) -> tuple[str, int]:
        if self.bound_address is None:
            raise ValueError("invalid operation on a LeanListener that is not started")
        return self.bound_address

    @property
    def listen_address(self) -> str:
        return PREFIX + unparse_host_port(*self.get_host_port())

    @property
    def contact_address(self) -> str:
        host, port = self.get_host_port()
        host = ensure_concrete_host(host, default_host=self.default_host)
        return PREFIX + unparse_host_port(host, port)


class LeanBackend(TCPBackend):
    """distributed's backend for ``nbtcp://`` (addresses as ``tcp://``'s)."""

    def get_connector(self) -> LeanConnector:
        return LeanConnector()

    def get_listener(self, loc: str, handle_comm: Any, deserialize: bool,
                     **connection_args: Any) -> LeanListener:
        return LeanListener(loc, handle_comm, deserialize, **connection_args)


def available() -> bool:
    """True if processes started from here find ``nbtcp://`` too: the package's entry point
    in ``distributed.comm.backends`` is installed."""
    from importlib.metadata import entry_points
    return any(ep.value.startswith(__name__) for ep in
               entry_points(group="distributed.comm.backends", name=SCHEME))


backends.setdefault(SCHEME, LeanBackend())
