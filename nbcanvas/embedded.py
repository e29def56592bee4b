"""nbcanvas's own cluster: a ``LocalCluster`` started on first use and closed at exit.

Its shape is chosen for small, latency-bound workflows on a laptop: one single-threaded worker
per core, ``worker-saturation: inf``, event loops on uvloop, this process's client talking
to the scheduler in memory, the worker processes over ``nbtcp://`` (:mod:`nbcanvas.comm`;
dask's config ``nbcanvas.embedded.comm: tcp`` puts distributed's ``tcp://`` back), and a
task that comes alone going to the idle worker that ran the last one
(``schedtune.warm_worker_first``). dask's config ``nbcanvas.embedded.pool`` (read
when it starts, also as ``DASK_NBCANVAS__EMBEDDED__POOL``) chooses the workers, as Celery's
``--pool`` does:

- ``"processes"`` (the default; Celery's name ``"prefork"`` is accepted): one worker process
  per core. Pure-Python tasks run in parallel and apart from the kernel: a task that crashes
  or leaks takes its worker process, not the notebook.
- ``"threads"``: the workers run in this process and reach the scheduler in memory, which
  takes about a third off a single task's round trip. Tasks share the kernel's GIL (pure-Python
  CPU-bound tasks do not run in parallel, and the notebook is slower while they run), its
  memory (no worker memory limit or spilling) and its fate (a crash in a task ends the kernel).
"""
from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import dask
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

from .errors import ImproperlyConfigured
from .schedtune import warm_worker_first
from .shipping import workers_here

__all__ = ["POOLS", "embedded_pool", "start", "running", "close"]

#: ``nbcanvas.embedded.pool`` values: Celery's pool name (or ours) -> the embedded workers' kind
POOLS = {"processes": "processes", "prefork": "processes", "threads": "threads"}
_lock = threading.RLock()
_embedded: list[Any] = []  # [LocalCluster, Client, pool]


def running() -> Client | None:
    """The embedded cluster's client if it is running, else None (never starts it)."""
    with _lock:
        return _embedded[1] if _embedded and _embedded[1].status == "running" else None


def start() -> Client:
    """The embedded LocalCluster's client, started on first use: one single-threaded worker per
    core this process may use, in its own process or (``embedded_pool() == "threads"``) in
    this one."""
    with _lock:
        pool = embedded_pool()
        if _embedded and _embedded[1].status == "running":
            if pool != _embedded[2] and dask.config.get("nbcanvas.embedded.pool", None):
                raise ImproperlyConfigured(
                    f"nbcanvas.embedded.pool asks for {pool}, but the embedded cluster already "
                    f"runs with {_embedded[2]}: the pool is read when it starts. Restart the "
                    f"kernel, or call nbcanvas.cluster.close_embedded() first")
            return _embedded[1]
        from distributed import LocalCluster
        # the cores this process may use (affinity, a container's CPU quota as on Binder),
        # not the host's: os.cpu_count() would start one worker per core of the whole node
        from dask.system import CPU_COUNT as n
        threads = pool == "threads"
        # Threads: the workers share this process, so they reach the scheduler in memory too;
        # no memory limit, since the process's memory is the kernel's (its data would pause
        # or spill the workers).
        shape: dict[str, Any] = ({"processes": False, "protocol": "inproc://", "memory_limit": 0}
                                 if threads else {"processes": True, **_worker_comm()})
        # No task is root-ish (dask would give a task name's root tasks to one worker in
        # blocks sized by every task of that name it holds): batches need no per-workflow
        # names to spread over the workers (see nbcanvas.compile.lower.Lowering).
        restore = _kernel_environ()
        with dask.config.set({"distributed.scheduler.worker-saturation": "inf",
                              "distributed.scheduler.rootish-taskgroup": 0,
                              **_fast_event_loop()}):
            try:
                cluster = LocalCluster(n_workers=n, threads_per_worker=1,
                                       dashboard_address=":0", silence_logs=logging.ERROR,
                                       **shape)
            finally:
                restore()
            if "protocol" in shape:  # in memory or nbtcp://: others reach it over TCP
                _reachable_over_tcp(cluster)
            client = _in_memory_client(cluster)
        cluster.sync(cluster.scheduler.register_scheduler_plugin, _NoMessageLogs(restore),
                     idempotent=True)
        warm_worker_first(cluster.scheduler)  # one task after another: the same warm worker
        if threads:
            for worker in cluster.workers.values():
                # tasks that send workflows use this client (dask's get_client() would make
                # one per worker and set it as this process's default)
                worker._client = client
                _no_message_log(worker.batched_stream)
            # task functions run as themselves (nbcanvas.shipping) while every worker is one of
            # these: an in-memory address is in this process
            scheduler = cluster.scheduler
            workers_here(client, lambda: all(a.startswith("inproc://")
                                             for a in list(scheduler.workers)))
        _embedded[:] = [cluster, client, pool]
        # Close before Python shuts its thread pools down (the scheduler offloads graph
        # deserialization to one); atexit alone runs after that.
        early = getattr(threading, "_register_atexit", None)
        if early is not None:
            try:
                early(_close_at_exit)
            except RuntimeError:  # first use while the interpreter is already shutting down
                pass
        atexit.register(_close_at_exit)
        return client


def embedded_pool() -> str:
    """The embedded cluster's workers, from dask's ``nbcanvas.embedded.pool`` config.

    >>> import dask
    >>> with dask.config.set({"nbcanvas.embedded.pool": "prefork"}):
    ...     embedded_pool()
    'processes'
    >>> with dask.config.set({"nbcanvas.embedded.pool": "solo"}):
    ...     embedded_pool()
    Traceback (most recent call last):
    ...
    nbcanvas.errors.ImproperlyConfigured: nbcanvas.embedded.pool is 'solo'; choose one of ...
    """
    pool = dask.config.get("nbcanvas.embedded.pool", None) or "processes"
    kind = POOLS.get(str(pool).strip().lower())
    if kind is None:
        raise ImproperlyConfigured(
            f"nbcanvas.embedded.pool is {pool!r}; choose one of 'processes' (the default; "
            f"Celery's 'prefork'), 'threads'")
    return kind


def _reachable_over_tcp(cluster: Any) -> None:
    """Give a cluster whose workers talk in memory (threads) or over ``nbtcp://`` (worker
    processes) a ``tcp://`` listener for other processes (kernels re-attaching, dask clients
    and workers started elsewhere), and make it the address the scheduler gives out
    (``scheduler_info()``): any dask reaches it, nbcanvas installed or not.

    Its own workers keep the listener they were started with.
    """
    scheduler = cluster.scheduler
    cluster.sync(scheduler.listen, "tcp://127.0.0.1:0")
    # Server.address is the first listener's, cached on first use: point it at TCP.
    scheduler._address = scheduler.listeners[-1].contact_address


def _worker_comm() -> dict[str, str]:
    """The comm between the scheduler and the worker processes: ``nbtcp://``
    (:mod:`nbcanvas.comm`, about 0.1 ms less per message exchange than ``tcp://``) when the
    worker processes will find it, else distributed's ``tcp://``. dask's config
    ``nbcanvas.embedded.comm`` (``"nbtcp"`` or ``"tcp"``) chooses; encryption required by
    dask's config keeps ``tcp://`` (``nbtcp://`` has no TLS).

    >>> import dask
    >>> with dask.config.set({"nbcanvas.embedded.comm": "tcp"}):
    ...     _worker_comm()
    {}
    >>> with dask.config.set({"nbcanvas.embedded.comm": "udp"}):
    ...     _worker_comm()
    Traceback (most recent call last):
    ...
    nbcanvas.errors.ImproperlyConfigured: nbcanvas.embedded.comm is 'udp'; choose 'nbtcp' (the default) or 'tcp'
    """
    choice = str(dask.config.get("nbcanvas.embedded.comm", None) or "nbtcp").strip().lower()
    if choice not in ("nbtcp", "tcp"):
        raise ImproperlyConfigured(f"nbcanvas.embedded.comm is {choice!r}; choose 'nbtcp' "
                                   f"(the default) or 'tcp'")
    if choice == "tcp" or dask.config.get("distributed.comm.require-encryption", None):
        return {}
    from . import comm
    return {"protocol": comm.PREFIX} if comm.available() else {}


def _fast_event_loop() -> dict[str, str]:
    """uvloop for the embedded cluster's event loops (its scheduler's thread, and its worker
    processes when it has them), when installed and dask's ``distributed.admin.event-loop`` is left at its
    default: each hop of a message wakes up sooner (about 0.3 ms of a single task's round
    trip here). The kernel's own event loop is not touched.
    """
    if dask.config.get("distributed.admin.event-loop", "tornado") != "tornado":
        return {}  # the user chose one
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"distributed.admin.event-loop": "uvloop"}


def _in_memory_client(cluster: Any) -> Client:
    """A client that reaches the embedded scheduler in memory, not over TCP.

    The scheduler lives in this process on the loop the client uses, so the client connects
    through an extra ``inproc://`` listener: messages are handed over as objects on one event
    loop, with no framing, serialisation of the envelope or socket wake-up (about 0.9 ms of a
    single task's 3.5 ms round trip here). Workers, other processes and other kernels still
    reach the scheduler over TCP at ``client.scheduler_info()["address"]``.
    """
    memory = [ln.contact_address for ln in cluster.scheduler.listeners
              if ln.contact_address.startswith("inproc://")]
    if not memory:  # worker processes: the scheduler listens on TCP only
        cluster.sync(cluster.scheduler.listen, "inproc://")
        memory = [cluster.scheduler.listeners[-1].contact_address]
    _merge_shards_in_memory()
    client = Client(memory[0], loop=cluster.loop, set_as_default=False)
    # the dashboard link, scheduler_info() and wait_for_workers(), as with Client(cluster)
    client.cluster = cluster
    _no_message_log(client.scheduler_comm)  # client -> scheduler, and back:
    _no_message_log(cluster.scheduler.client_comms.get(client.id))
    return client


def _merge_shards_in_memory() -> None:
    """Values over 64 MiB (dask's ``distributed.comm.shard``) reach the in-memory client whole.

    A worker process sends such a value to the scheduler in shards; over TCP the receiving
    side merges them, but distributed's in-memory comm hands the scheduler's still-serialised
    value to ``deserialize()``, which does not (``merge_and_deserialize()`` does): the result
    of a task over 64 MiB failed to come back to the kernel ("pickle data was truncated"; a
    plain dask ``Client`` on ``inproc://`` fails the same way). This process's in-memory comms
    deserialise with the merging function from now on (it does the same for unsplit values).
    """
    from distributed.comm import inproc
    from distributed.protocol.serialize import (Serialize, Serialized, ToPickle,
                                                merge_and_deserialize)
    if getattr(inproc._nested_deserialize, "nbcanvas", False):
        return

    def nested_deserialize(x: Any, emulate_deserialize: bool = True) -> Any:
        def inner(x: Any) -> Any:
            if type(x) is dict:
                x, items = x.copy(), x.items()
            elif type(x) is list:
                x, items = list(x), enumerate(x)
            else:
                return x
            for k, v in items:
                typ = type(v)
                if typ is dict or typ is list:
                    x[k] = inner(v)
                elif typ is ToPickle or (typ is Serialize and emulate_deserialize):
                    x[k] = v.data
                elif typ is Serialized and emulate_deserialize:
                    x[k] = merge_and_deserialize(v.header, v.frames)
            return x
        return inner(x)
    nested_deserialize.nbcanvas = True  # type: ignore[attr-defined]
    inproc._nested_deserialize = nested_deserialize


def _no_message_log(stream: Any) -> None:
    """Keep no copy of what a stream of the embedded cluster sent.

    distributed's BatchedSend keeps its last 1,000 messages for debugging, those over 1 MB
    replaced by a marker. Messages under 1 MB still add up (the scheduler's to a worker hold
    the programs of whole units), and an in-memory comm reports every message as 1 byte, so
    whole workflow records, graphs and event batches stayed in this process: about 12 MB
    per 10,000-task workflow, up to 1,000 messages per stream.
    """
    if stream is not None and hasattr(stream, "recent_message_log"):
        stream.recent_message_log = deque(maxlen=0)


def _kernel_environ() -> Callable[[], None]:
    """What puts this process's environment back after dask's nannies changed it.

    A nanny sets ``distributed.nanny.pre-spawn-environ`` (``OMP_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` = 1, ``MALLOC_TRIM_THRESHOLD_``) and
    ``PYTHONHASHSEED`` in ``os.environ`` to hand them to the worker process it spawns, and
    leaves them there: in a kernel, NumPy or PyTorch imported afterwards, and every program the
    notebook starts, would run on one BLAS thread. The worker processes keep them; the kernel
    gets its own values back once its workers have started, and again when one restarts.
    """
    keys = {*(dask.config.get("distributed.nanny.pre-spawn-environ", None) or {}),
            "PYTHONHASHSEED"}
    saved = {k: os.environ.get(k) for k in keys}

    def restore() -> None:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            elif os.environ.get(k) != v:
                os.environ[k] = v
    return restore


class _NoMessageLogs(SchedulerPlugin):
    """The embedded scheduler's streams to its workers keep no copies either (a worker that
    restarts gets a new stream); once a worker (re)starts, the kernel's environment is put
    back (``restore``, see :func:`_kernel_environ`)."""

    name = "nbcanvas-embedded-streams"

    def __init__(self, restore: Callable[[], None] | None = None) -> None:
        self.restore = restore

    async def start(self, scheduler: Any) -> None:
        for stream in scheduler.stream_comms.values():
            _no_message_log(stream)

    def add_worker(self, scheduler: Any = None, worker: str = "") -> None:
        _no_message_log(scheduler.stream_comms.get(worker))
        if self.restore is not None:
            self.restore()


def _close_at_exit() -> None:
    """Close the embedded cluster at interpreter exit, quietly: graphs still in flight would
    each log an ERROR as the cluster goes; silence distributed and say once what is stopped.
    """
    if not _embedded:
        return
    from .handle import handles
    client = _embedded[1]
    running = [h for h in handles()
               if getattr(getattr(h.backend, "conn", None), "client", None) is client
               and not h.forgotten and not _ready(h)]
    _silence_distributed()
    if _embedded[2] == "processes":
        _quiet_workers(client)
    if running:
        print(f"nbcanvas: {len(running)} workflow(s) still running at exit were stopped with "
              f"the embedded cluster, which lives in this process (call .get() on a result "
              f"to wait for it)", file=sys.stderr)
    close()


def _silence_distributed() -> None:
    """distributed's loggers in this process say nothing more."""
    for name in [n for n in logging.root.manager.loggerDict if n.startswith("distributed")]:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)


def _quiet_workers(client: Client, timeout: float = 2.0) -> None:
    """The worker processes go quiet too, before the cluster closes: a heartbeat that the
    closing cluster cuts off is logged there as an ERROR with a page of traceback (one exit of
    a short script in twelve, here). Bounded by ``timeout``: a worker stuck in a task does not
    hold up the exit."""
    import asyncio

    async def run() -> None:
        await asyncio.wait_for(client._run(_silence_distributed, on_error="ignore"), timeout)
    try:
        client.sync(run)
    except Exception:  # noqa: BLE001 - at exit, a worker we cannot reach stays as it is
        pass


def _ready(h: Any) -> bool:
    try:
        return bool(h.ready(h.result))
    except Exception:  # noqa: BLE001 - at exit, a handle we cannot ask counts as stopped
        return False


def close() -> Client | None:
    """Close the embedded cluster (at exit; tests may call it); returns its client, if any."""
    with _lock:
        if not _embedded:
            return None
        cluster, client, pool = _embedded
        _embedded.clear()
    # each step on its own: one that fails (at exit, under load) must not leave the cluster's
    # event loop thread running while the interpreter finalises
    steps = [client.close, cluster.close,
             # the last of the two loop runners stops the loop; a no-op for one already stopped
             client._loop_runner.stop, cluster._loop_runner.stop]
    if pool == "threads":  # don't wait for running tasks: their threads are daemons
        steps.insert(1, lambda: cluster.sync(_stop_workers, cluster))
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001 - closing what is already half gone
            pass
    return client


async def _stop_workers(cluster: Any) -> None:
    """Close in-process workers without waiting for the tasks they are running (dask waits
    by default: a kernel with a long task running would not exit until it ended)."""
    import asyncio
    await asyncio.gather(*(w.close(executor_wait=False, reason="nbcanvas-close")
                           for w in list(cluster.workers.values())), return_exceptions=True)
