"""How the scheduler treats nbcanvas's traffic (run stage).

distributed's scheduler is built for any client's graphs and events; a few things it does cost
nbcanvas's workflows for nothing, and these functions change them for nbcanvas's graphs and
event topic alone: small graphs are unpacked on the scheduler's loop instead of its offload
thread, the scheduler keeps few messages of the event topic, and a workflow's first messages
leave at once instead of at the end of a stream's batching interval. On the embedded cluster,
whose scheduler nbcanvas owns, a task that comes alone goes to the worker that ran the last.
"""
from __future__ import annotations

import math
from collections import deque
from typing import Any

from .runtime.emit import TOPIC

__all__ = ["INLINE_UNITS", "KEEP_EVENTS", "inline_small_graphs", "keep_few_events", "send_now",
           "hands_out_blocks", "WARM_SLACK", "warm_worker_first"]

#: nbcanvas graphs of at most this many units are unpacked on the scheduler's event loop.
INLINE_UNITS = 64


def _small_nbcanvas_graph(expr: Any) -> bool:
    """``expr`` is an nbcanvas graph (``graph_expr`` names it ``nbcanvas-<key>-<units>``) of
    at most ``INLINE_UNITS`` units."""
    token = getattr(expr, "_determ_token", None)
    if not isinstance(token, str) or not token.startswith("nbcanvas-"):
        return False
    units = token.rsplit("-", 1)[-1]
    return units.isdigit() and int(units) <= INLINE_UNITS


def inline_small_graphs() -> bool:
    """Unpack small nbcanvas graphs on the scheduler's event loop, not on its offload thread.

    distributed hands every graph to a one-thread pool to unpack (``_materialize_graph``), so
    that a large graph never blocks the scheduler's loop. For a graph of a few units the
    unpacking takes about 20 µs, and the two thread hand-offs around it cost 0.2 ms of a
    single task's round trip. Other graphs, and nbcanvas graphs of more than
    ``INLINE_UNITS`` units, are offloaded as before. False if this distributed has no such
    step (then nothing changes).
    """
    import distributed.scheduler as ds
    current = getattr(ds, "offload", None)
    if current is None or not hasattr(ds, "_materialize_graph"):
        return False
    if getattr(current, "nbcanvas", False):
        return True

    def offload(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        if func is ds._materialize_graph and _small_nbcanvas_graph(kwargs.get("expr")):
            async def inline() -> Any:
                return func(*args, **kwargs)
            return inline()
        return current(func, *args, **kwargs)

    offload.nbcanvas = True  # type: ignore[attr-defined]
    ds.offload = offload
    return True


#: event messages of the nbcanvas topic the scheduler keeps (dask keeps 1,000 per topic)
KEEP_EVENTS = 50


def keep_few_events(scheduler: Any) -> None:
    """The scheduler keeps the last 1,000 messages of every event topic, for ``get_events``.
    nbcanvas's go to their subscribers and into the workflow records; kept, they only hold
    memory (a 10,000-task workflow sends about 40 batches of events: 150 MB for 1,000 here)."""
    try:
        topic = scheduler._broker._topics[TOPIC]
    except (AttributeError, KeyError, TypeError):  # a distributed without the broker
        return
    if topic.events.maxlen is None or topic.events.maxlen > KEEP_EVENTS:
        topic.events = deque(topic.events, maxlen=KEEP_EVENTS)


def send_now(stream: Any) -> bool:
    """Have a dask ``BatchedSend`` write what it holds now, not at the end of its interval.

    dask's streams write at most once per interval (10 ms from a client, 5 ms from the
    scheduler to a worker): a message that comes less than an interval after the last write
    waits for the rest of it. On a user's cluster, whose intervals nbcanvas leaves alone, that
    wait paced every small workflow (a single task's round trip took 10.6 ms). Called for a
    workflow's own messages only (its graph, a unit handed to a worker, a unit's end): the
    stream writes what it holds (anything else in it goes along), and batches as before
    afterwards. Must run on the stream's event loop. True if it had been waiting; a stream
    without an interval (the embedded cluster's) never waits.

    >>> send_now(object())  # not a BatchedSend: nothing to do
    False
    """
    if (getattr(stream, "interval", 0) or 0) <= 0 or not getattr(stream, "buffer", None) \
            or getattr(stream, "next_deadline", None) is None or not hasattr(stream, "waker"):
        return False
    stream.next_deadline = None
    stream.waker.set()
    return True


def hands_out_blocks(scheduler: Any) -> bool:
    """Whether ``scheduler`` hands a name's root-ish tasks to workers in blocks sized by all it
    holds of that name (``worker-saturation: inf``, root-ish tasks on): batches need
    per-workflow names there. With queuing (dask's default) they go one by one to the least
    busy worker; on the embedded cluster no task is root-ish.

    >>> class Scheduler:
    ...     WORKER_SATURATION, rootish_tg_threshold = 1.1, 5
    >>> hands_out_blocks(Scheduler())
    False
    """
    saturation = getattr(scheduler, "WORKER_SATURATION", float("inf"))
    return math.isinf(saturation) and getattr(scheduler, "rootish_tg_threshold", 1) > 0


#: bytes of kept data the warm worker may hold beyond dask's pick and still get the next task
WARM_SLACK = 64 * 2**20


def warm_worker_first(scheduler: Any) -> bool:
    """Give a task that may run anywhere to the idle worker that ran the last task, when dask
    would take turns among its idle workers.

    With several idle workers and a task free of dependencies and restrictions, dask picks
    the next idle worker in turn. One task after another (a notebook's ``delay().get()``
    loop) then wakes each worker process in turn, each with cold caches after sitting idle:
    0.2-0.35 ms more per round trip than one worker taking them all, measured with
    worker processes (A/B in one process). A worker with work in hand is never picked for
    it: tasks that come together still spread as before. Nor is one that holds
    ``WARM_SLACK`` more data than dask's pick: there dask's turns stand, and the next task
    goes to a worker with room (kept results, a notebook's large frames, do not pile up on
    one worker). True once installed; False if this scheduler has no such step.

    >>> class Scheduler:
    ...     pass
    >>> warm_worker_first(Scheduler())
    False
    """
    choose = getattr(scheduler, "decide_worker_non_rootish", None)
    if choose is None or not hasattr(scheduler, "valid_workers"):
        return False
    if getattr(choose, "nbcanvas", False):
        return True
    last: list[Any] = [None]

    def decide(ts: Any) -> Any:
        ws = choose(ts)
        warm = last[0]
        if (ws is not None and warm is not None and warm is not ws and not ws.processing
                and not warm.processing and warm in scheduler.running
                and warm.nbytes <= ws.nbytes + WARM_SLACK
                and not ts.dependencies and scheduler.valid_workers(ts) is None):
            ws = warm
        last[0] = ws
        return ws

    decide.nbcanvas = True  # type: ignore[attr-defined]
    scheduler.decide_worker_non_rootish = decide
    return True
