"""Where workflows run, first match wins (run stage):

1. ``App(client=...)`` / ``App(address=...)`` / ``app.connect(address | client)``;
2. a ``distributed.Client`` that is already current;
3. ``DASK_SCHEDULER_ADDRESS`` or dask's ``scheduler-address`` config;
4. otherwise nbcanvas's embedded ``LocalCluster`` (``embedded.py``), started on first use and
   closed at interpreter exit.

Each client gets the nbcanvas scheduler/worker plugins and one event subscription, once.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, overload

import dask
from distributed import Client

from . import embedded
from .errors import ImproperlyConfigured
from .events import dispatch
from .leansend import make_lean
from .plugins import NbcanvasScheduler
from .runtime.emit import TOPIC
from .schedtune import send_now
from .workerplugin import NbcanvasWorker

__all__ = ["Connection", "connection", "connect", "close_embedded", "in_task", "off_the_pool",
           "scheduler_address", "CONNECT_TIMEOUT"]

CONNECT_TIMEOUT = 5.0
_lock = threading.RLock()
_connections: dict[str, Connection] = {}


class Connection:
    """A client with the nbcanvas plugins registered and the event topic subscribed."""

    def __init__(self, client: Client, embedded: bool = False) -> None:
        self.client = client
        self.embedded = embedded
        try:
            client.register_plugin(NbcanvasScheduler())
            #: whether batch units are named per workflow (``compile_canvas(batch_tags=)``):
            #: for a scheduler that hands a name's root-ish tasks out in blocks, or can't say
            self.batch_tags = not embedded and client.sync(
                client.scheduler.nbcanvas_hands_out_blocks) is not False
            client.register_plugin(NbcanvasWorker(0.0 if embedded else None,
                                                  batch_tags=self.batch_tags))
        except Exception as e:  # e.g. nbcanvas not installed where the scheduler runs
            raise ImproperlyConfigured(
                f"could not install nbcanvas on the cluster at {scheduler_address(client)}: "
                f"{type(e).__name__}: {e}. nbcanvas must be installed on the scheduler and the "
                f"workers (like any library your tasks import)") from e
        client.subscribe_topic(TOPIC, dispatch)
        _hold_messages(client)
        if embedded:
            self._tune()

    def _tune(self) -> None:
        """No batching delay on the embedded cluster's streams: lower latency, more messages.

        distributed batches messages every 10 ms (client), 5 ms (scheduler) and 2 ms (worker);
        for a laptop-sized cluster the round trip of a small workflow is dominated by those waits.
        """
        self.client.scheduler_comm.interval = 0.0
        self.client.loop.add_callback(make_lean, self.client.scheduler_comm)
        self.client.sync(self.client.scheduler.nbcanvas_tune, client=self.client.id, interval=0.0)

    @property
    def address(self) -> str:
        """The scheduler's address as other processes reach it (TCP for the embedded cluster,
        whose own client talks to it in memory)."""
        return scheduler_address(self.client)

    @property
    def nthreads(self) -> int:
        """Total worker threads, from the client's cached scheduler identity (no round trip)."""
        info = getattr(self.client, "_scheduler_identity", None) or {}
        if info.get("total_threads"):
            return int(info["total_threads"])
        info = self._identity()
        return sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()) or 1

    def _identity(self) -> dict[str, Any]:
        info = getattr(self.client, "_scheduler_identity", None)
        if not info or not info.get("workers"):
            info = self.client.scheduler_info()
        return info

    def worker_resources(self) -> set[str]:
        info = self.client.scheduler_info()
        return {r for w in info.get("workers", {}).values() for r in (w.get("resources") or {})}

    def rpc(self, name: str, **kwargs: Any) -> Any:
        """Call a handler of the nbcanvas scheduler plugin."""
        return self.client.sync(getattr(self.client.scheduler, name), **kwargs)

    def send(self, msg: dict[str, Any]) -> None:
        """Send on the client's ordered stream (the record goes just before its graph)."""
        self.client._send_to_scheduler(msg)

    @property
    def holds(self) -> bool:
        """Whether :meth:`together` can hold messages on this client."""
        return getattr(self.client._send_to_scheduler, "nbcanvas_holds", False)

    @contextmanager
    def together(self) -> Iterator[bool]:
        """The messages this thread sends to the scheduler in the block (``send``, and dask's
        ``update-graph``) go to the client's event loop in one callback, in order, when the
        block ends; none if it raises (nothing of it reached the scheduler). dask hands each
        message to its loop on its own, and each wakes the loop: a workflow's record and its
        graph were two wake-ups of the thread that runs the scheduler (0.05-0.3 ms of a single
        task's round trip, more in its tail). Yields whether it holds them: without
        :attr:`holds` (or inside another ``together``), messages go as before."""
        if not self.holds or getattr(_held, "msgs", None) is not None:
            yield False
            return
        client, msgs = self.client, []
        _held.client, _held.msgs = client, msgs
        try:
            yield True
        finally:
            _held.client = _held.msgs = None
        if msgs:
            if client.status not in ("running", "closing", "connecting", "newly-created"):
                from distributed.client import ClosedClientError
                raise ClosedClientError(f"Client is {client.status}: nothing was sent")
            client.loop.add_callback(_send_all, client, msgs)


_held = threading.local()  # .client, .msgs: the messages ``Connection.together`` holds


def _hold_messages(client: Client) -> None:
    """Let ``Connection.together`` hold this client's messages (once per client): its
    ``_send_to_scheduler`` keeps those of a thread inside ``together`` and passes the rest
    on as before. Nothing changes on a distributed without the method it hands them to."""
    real = client._send_to_scheduler
    if getattr(real, "nbcanvas_holds", False) or not hasattr(client, "_send_to_scheduler_safe"):
        return

    def send(msg: dict[str, Any]) -> None:
        msgs = getattr(_held, "msgs", None)
        if msgs is not None and _held.client is client:
            msgs.append(msg)
        else:
            real(msg)
    send.nbcanvas_holds = True  # type: ignore[attr-defined]
    client._send_to_scheduler = send  # type: ignore[method-assign]


def _send_all(client: Client, msgs: list[dict[str, Any]]) -> None:
    """On the client's loop: what ``_send_to_scheduler`` would have done with each; and a
    workflow leaves now, not when the client's batching interval ends (``send_now``)."""
    for msg in msgs:
        client._send_to_scheduler_safe(msg)
    send_now(getattr(client, "scheduler_comm", None))


def _for_client(client: Client, embedded: bool = False) -> Connection:
    with _lock:
        conn = _connections.get(client.id)
        if conn is None or conn.client.status in ("closed", "closing"):
            conn = _connections[client.id] = Connection(client, embedded)
        return conn


def _probe(address: str, timeout: float) -> None:
    """Open one comm to ``address`` and finish dask's handshake, all within ``timeout``.

    distributed bounds the connect but deliberately not the handshake after it, so a client
    whose TLS certificate the scheduler rejects (TLS 1.3 verifies it after the client thinks
    it is connected) can wait forever in ``Client(...)``. This probe runs first, in its own
    event loop and thread, so a refused certificate is a clear error instead of a hang.
    """
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from distributed.comm import connect
    from distributed.security import Security

    try:  # the same credentials Client(address) would use
        from distributed.client import _maybe_call_security_loader
        security = _maybe_call_security_loader(address) or Security()
    except ImportError:  # pragma: no cover - a distributed without security loaders
        security = Security()

    async def attempt() -> None:
        args = security.get_connection_args("client")
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **args), timeout)
        await comm.close()

    with ThreadPoolExecutor(1, thread_name_prefix="nbcanvas-probe") as pool:
        pool.submit(asyncio.run, attempt()).result()


def _client_for_address(address: str) -> Client:
    try:
        _probe(address, CONNECT_TIMEOUT)
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as e:
        detail = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        hint = ("Is it running, and does it trust this process's TLS certificate (and this "
                "process its CA; see dask's distributed.comm.tls config)?"
                if address.startswith("tls://") else "Is it running?")
        raise ImproperlyConfigured(
            f"could not reach a dask scheduler at {address!r} within {CONNECT_TIMEOUT:g} s "
            f"({detail}). {hint} Start one with `dask scheduler`, or leave the address unset "
            f"to use an embedded LocalCluster") from e
    except TypeError as e:  # distributed: "TLS expects a `ssl_context` argument ... got None"
        if not address.startswith("tls://"):
            raise
        raise ImproperlyConfigured(
            f"the scheduler at {address!r} speaks TLS and this process has no certificates "
            f"for it: connect with nc.App(client=distributed.Client({address!r}, "
            f"security=distributed.security.Security(tls_ca_file=..., tls_client_cert=..., "
            f"tls_client_key=..., require_encryption=True))), or set dask's "
            f"distributed.comm.tls config") from e


def scheduler_address(client: Client) -> str:
    """Where other processes reach ``client``'s scheduler (not the in-memory ``inproc://``)."""
    cluster = getattr(client, "cluster", None)
    scheduler = getattr(cluster, "scheduler", None)  # a LocalCluster's scheduler object
    for address in (getattr(scheduler, "address_safe", None),
                    getattr(cluster, "scheduler_address", None)):
        if isinstance(address, str) and "://" in address:
            return address
    return str(client.scheduler.address)


def close_embedded() -> None:
    """Close the embedded cluster, if it runs (it closes at exit by itself; tests call this)."""
    client = embedded.close()
    if client is not None:
        with _lock:
            _connections.pop(client.id, None)


def in_task() -> bool:
    """True inside a task running on a dask worker (``delay()`` there goes to its cluster)."""
    from distributed.worker import thread_state
    return getattr(thread_state, "key", None) is not None


@contextmanager
def off_the_pool() -> Iterator[None]:
    """While a task waits for another workflow (``.get()`` inside a task), its thread leaves
    the worker's pool, as dask's ``worker_client`` does (``secede``/``rejoin``): tasks that
    wait can't take every thread from the tasks they wait for. Elsewhere: nothing."""
    if not in_task():
        yield
        return
    from distributed import rejoin, secede
    secede()
    try:
        yield
    finally:
        rejoin()


def _worker_client() -> Client | None:
    """Inside a task on a worker, that worker's client to its own scheduler: a task's
    ``delay()`` goes to the cluster it runs on (never to a new embedded cluster)."""
    if not in_task():
        return None
    from distributed import get_client
    return get_client()


def _current_client() -> Client | None:
    from distributed.client import _get_global_client
    c = _get_global_client()
    return c if c is not None and c.status == "running" else None


@overload
def connection(app: Any = None) -> Connection: ...
@overload
def connection(app: Any, start: Literal[True]) -> Connection: ...
@overload
def connection(app: Any, start: bool) -> Connection | None: ...


def connection(app: Any = None, start: bool = True) -> Connection | None:
    """The connection for ``app`` (or the current app), following the order above.

    With ``start=False``, returns None instead of starting the embedded cluster.
    """
    if app is None:
        from .app import current_app
        app = current_app()
    target = getattr(app, "_target", None)
    if target is not None:
        cached = getattr(app, "_runtime", None)
        if cached is not None and cached.client.status == "running":
            return cached
        client = _client_for_address(target) if isinstance(target, str) else target
        app._runtime = _for_client(client)
        return app._runtime
    client = _worker_client() or _current_client()
    if client is not None:
        return _for_client(client)
    address = os.environ.get("DASK_SCHEDULER_ADDRESS") or dask.config.get("scheduler-address",
                                                                          None)
    if address:
        with _lock:
            for conn in _connections.values():
                if conn.client.scheduler.address == address and conn.client.status == "running":
                    return conn
        return _for_client(_client_for_address(address))
    if not start and embedded.running() is None:
        return None
    return _for_client(embedded.start(), embedded=True)


def connect(target: Any = None) -> Client:
    """``nc.connect("tcp://host:8786")`` or ``nc.connect(client)``: where the current app runs.

    Without a target, returns the client in use (starting the embedded cluster if needed).
    """
    from .app import current_app
    app = current_app()
    if target is not None:
        app.connect(target)
    return connection(app).client
