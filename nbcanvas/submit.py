"""One workflow, one submission (run stage).

``submit`` compiles the frozen canvas, sends its record to the scheduler plugin and its graph
with one ``client.get(..., sync=False)`` on the same ordered stream: no client round trip
between steps. ``reattach`` rebuilds a handle from the scheduler's record in another process.
"""
from __future__ import annotations

import asyncio
import builtins
import pickle
import time
from typing import Any

from dask.system import CPU_COUNT
from distributed.protocol import ToPickle

from .canvas import Signature
from .canvas.base import no_gc
from .canvas.walk import title
from .cluster import Connection, connection
from .compile import Lst, NodeInfo, Ref, compile_canvas
from .compile.taskspec import send_graph, to_dask_graph
from .eager import _app_of, node_rows
from .errors import ImproperlyConfigured, ResultNotFound, TimeoutError, WorkflowLost
from .events import drop_store, get_store, register_store
from .handle import WorkflowHandle, find_handle, register_handle, supersede
from .states import READY_STATES
from .store import TASK_KINDS, StateStore, tiny_tasks

__all__ = ["submit", "reattach", "save_group", "ClusterBackend", "encode_where", "decode_where",
           "structure_of"]


class ClusterBackend:
    """Results held as futures on the cluster (and by the scheduler plugin until forget)."""

    def __init__(self, conn: Connection, futures: dict[str, Any], wf: str = "?",
                 rows: dict[str, Any] | None = None, store: StateStore | None = None) -> None:
        self.conn = conn
        self.futures = futures
        self.wf = wf
        self.rows = rows or {}
        self.store = store

    def gather(self, keys: list[str], timeout: float | None) -> dict[str, dict[str, Any]]:
        from distributed.client import _wait
        futs = [self.futures[k] for k in keys]
        client = self.conn.client
        if timeout is not None and not all(f.done() for f in futs):
            try:
                client.sync(_wait, futs, timeout=timeout)
            except (Exception, asyncio.CancelledError) as e:  # CancelledError: BaseException
                if isinstance(e, (TimeoutError, builtins.TimeoutError)) and \
                        client.status == "running" and not any(f.cancelled() for f in futs):
                    raise TimeoutError(f"the result was not ready after {timeout} s "
                                       f"(nothing was cancelled)") from None
                raise self._lost(futs, e) from e
        try:
            values = client.gather(futs)
        except (Exception, asyncio.CancelledError) as e:
            raise self._lost(futs, e) from e
        return dict(zip(keys, values))

    def _lost(self, futs: list[Any], error: BaseException) -> WorkflowLost:
        """Why the cluster cannot deliver: the scheduler is gone, or a unit could not run."""
        client = self.conn.client
        try:
            address = self.conn.address
        except Exception:
            address = "?"
        cancelled = [f for f in futs if f.cancelled()]
        if client.status != "running" or cancelled:
            reasons = {getattr(getattr(f._state, "exception", None), "reason", None)
                       for f in cancelled} - {None}
            why = f"; dask: {', '.join(sorted(map(str, reasons)))}" if reasons else ""
            return WorkflowLost(
                f"workflow {self.wf} is lost: the connection to the scheduler at {address} "
                f"is gone (client {client.status}{why}), and its tasks and results lived "
                f"there. Send the canvas again once a scheduler is reachable")
        bad = [f.key for f in futs if f.status == "error"] or [f.key for f in futs
                                                                if not f.done()]
        key = bad[0] if bad else "?"
        ids = [i for i, r in self.rows.items() if r[4] == key and r[0] in TASK_KINDS]
        steps = list(dict.fromkeys(self.rows[i][1] for i in ids))
        running = [self.rows[i][1] for i in ids if self.store is not None and _was_running(
            self.store, i)]
        named = f" (step {', '.join(steps[:3])}{', …' if len(steps) > 3 else ''}" \
            f"{'; running when it was lost: ' + ', '.join(running[:3]) if running else ''})" \
            if steps else ""
        text = (str(error).strip().splitlines() or [""])[0]
        return WorkflowLost(f"workflow {self.wf}: the cluster could not finish unit "
                            f"{key}{named}: {type(error).__name__}: {text}")

    def done(self, keys: list[str]) -> bool:
        return all(self.futures[k].done() for k in keys)

    def revoke(self, handle: WorkflowHandle, terminate: bool) -> None:
        self.conn.rpc("nbcanvas_revoke", wf=handle.id, terminate=terminate)

    def forget(self, handle: WorkflowHandle) -> None:
        self.conn.rpc("nbcanvas_forget", wf=handle.id)

    def release(self, handle: WorkflowHandle) -> None:
        for f in self.futures.values():
            f.release()
        self.futures.clear()

    def future(self, key: str) -> Any:
        return self.futures.get(key)


def _was_running(store: StateStore, id: str) -> bool:
    """Running when its unit was lost: still running here, or reported lost by the plugin."""
    st = store.get(id)
    if st is None:
        return False
    if st.state == "FAILURE":
        return str(st.info or "").startswith("lost by the cluster")
    return st.state not in READY_STATES and st.state != "PENDING"


def encode_where(w: Ref | Lst) -> Any:
    """Where a workflow's result is, in plain types (tuples: the garbage collector stops
    tracking a tuple of strings, and a 10k group has one per member).

    >>> encode_where(Lst((Ref("k1", "a"), Ref("k2", "b"))))
    ('l', (('r', 'k1', 'a'), ('r', 'k2', 'b')))
    >>> decode_where(encode_where(Ref("k1", "a"))) == Ref("k1", "a")
    True
    """
    return ("r", w.key, w.id) if isinstance(w, Ref) else \
        ("l", tuple([encode_where(i) for i in w.items]))


def decode_where(x: Any) -> Ref | Lst:
    return Ref(x[1], x[2]) if x[0] == "r" else Lst(tuple(decode_where(i) for i in x[1]))


def _check_routing(conn: Connection, cg: Any) -> None:
    wanted = {r for u in cg.units.values() for r in (u.routing.get("resources") or {})}
    wanted |= {str(u.routing["queue"]) for u in cg.units.values() if u.routing.get("queue")}
    if wanted:
        have = conn.worker_resources()
        missing = sorted(wanted - have)
        if missing:
            raise ImproperlyConfigured(
                f"no worker has the resource(s) {', '.join(map(repr, missing))} that the "
                f"workflow asks for (queue=/resources=); start workers with e.g. "
                f"`dask worker ADDRESS --resources \"{missing[0]}=1\"`")


def _name_unpicklable(cg: Any, error: Exception) -> Exception:
    """Find the function or argument that cannot be pickled, to name it with its task."""
    import cloudpickle

    from .compile.programs import Batch, Dyn, MapStep, Par, Seq
    fns: set[int] = set()
    for unit in cg.units.values():
        for prog, _ in unit.progs:
            stack = [prog]
            while stack:
                p = stack.pop()
                if isinstance(p, Batch):  # columnar group members: look at each one
                    stack.extend(p.steps())
                    continue
                stack.extend(p.links + p.errbacks)
                if isinstance(p, Seq):
                    stack.extend(p.items)
                    continue
                if isinstance(p, Par):
                    stack.extend(p.members)
                    continue
                fn = getattr(p, "fn", None)
                if fn is not None and id(fn) not in fns:
                    fns.add(id(fn))
                    try:
                        cloudpickle.dumps(fn)
                    except Exception as e:
                        return TypeError(
                            f"task {p.name!r}: its function cannot be sent to the cluster's "
                            f"worker processes: {type(e).__name__}: {e}. Something it uses "
                            f"cannot be pickled (a lock, a connection, an open file: create it "
                            f"inside the task), or, on the embedded cluster, run its workers "
                            f"in this process (nbcanvas.embedded.pool: threads)")
                if isinstance(p, MapStep):
                    args = [(f"item {i}", a) for i, a in enumerate(p.items)]
                elif isinstance(p, Dyn):
                    args = [(f"of {p.kind}", p.canvas)]
                else:
                    args = [(str(i), a) for i, a in enumerate(p.args)]
                    args += [(repr(k), v) for k, v in p.kwargs.items()]
                for i, a in args:
                    try:
                        cloudpickle.dumps(a)
                    except Exception as e:
                        return TypeError(f"task {getattr(p, 'name', '?')!r}: argument {i} "
                                         f"({type(a).__name__}: {a!r:.60}) cannot be sent to the "
                                         f"cluster: {type(e).__name__}: {e}")
    return error


def submit(sig: Signature) -> Any:
    """Send a frozen canvas as one graph; returns its AsyncResult or GroupResult.

    The cyclic garbage collector waits until it is sent (see ``no_gc``): the node table,
    record, store and handle of a 10k-task workflow are some 40,000 long-lived objects, and
    collecting while they are made walks them young, again and again (about 40 collections
    for a 10k group), and brings the next full collection of the whole kernel sooner.
    """
    with no_gc():
        return _submit(sig)


def _submit(sig: Signature) -> Any:
    from .result import result_for
    app = _app_of(sig)
    wf = sig.id
    salt = supersede(wf)
    # Compile first: a call that cannot be completed is an error before anything connects.
    guess = getattr(app, "_nthreads", None) or CPU_COUNT
    fusion, batching = getattr(app, "fusion", True), getattr(app, "batching", True)
    tiny = tiny_tasks() if batching else {}
    tags = getattr(app, "_batch_tags", True)  # as for the cluster it last sent to
    cg = compile_canvas(sig, wf, parallelism=guess, fusion=fusion, batching=batching, salt=salt,
                        tiny=tiny, batch_tags=tags)
    used = guess
    conn = connection(app)
    if conn.client.status != "running":  # e.g. "connecting": the scheduler went away
        raise WorkflowLost(f"not connected to the scheduler at {conn.address} "
                           f"(client {conn.client.status}): nothing was sent")
    real, want = conn.nthreads, conn.batch_tags
    again = want != tags
    app._batch_tags = tags = want
    if batching and real != guess:
        app._nthreads = real
        if not guess / 2 <= real <= guess * 2:  # batch sizes follow the cluster's size
            again, used = True, real
    if again:
        cg = compile_canvas(sig, wf, parallelism=used, fusion=fusion, batching=batching,
                            salt=salt, tiny=tiny, batch_tags=tags)
    _check_routing(conn, cg)
    rows = node_rows(cg)
    store = register_store(StateStore(wf, rows))  # it reads (kind, name, step, parent)
    graph = to_dask_graph(cg)
    compile_args = {"parallelism": used, "fusion": fusion, "batching": batching, "salt": salt,
                    "tiny": tiny, "batch_tags": tags}
    # The structure (for re-attaching from elsewhere) goes as one pickled bytes object: as
    # nested dicts it would keep two containers per node alive for the collector to walk.
    record = {"id": wf, "name": title(sig),
              "structure": pickle.dumps(sig.to_dict(strict=False), protocol=5),
              "compile": compile_args,
              "nodes": dict(rows), "result": encode_where(cg.result),  # rows shared, not copied
              "keys": list(cg.units), "created": store.created}
    expires = getattr(app, "result_expires", None)
    if expires is not None:  # the scheduler forgets it that long after it finishes
        record["expires"] = expires
    # as one pickled object: over TCP that is one pickle, and to the embedded scheduler (in
    # memory) the record itself, not the copy of every dict and list that distributed makes of
    # a plain message (about 4.6 MB per 10,000-task workflow)
    keys = list(cg.units)
    held = False  # the record and the graph reach the client's loop together, or not at all
    try:
        with conn.together() as held:
            conn.send({"op": "nbcanvas-register", "record": ToPickle(record)})
            futures = dict(zip(keys, send_graph(conn.client, graph, keys)))
    except Exception as e:
        if held:
            drop_store(wf)
        else:
            _unregister(conn, wf)
        raise _name_unpicklable(cg, e) from e
    handle = WorkflowHandle(wf, rows, cg.result, store,
                            ClusterBackend(conn, futures, wf, rows, store), canvas=sig, app=app,
                            name=record["name"])  # its structure: from the canvas, if asked
    handle.compile_args = compile_args
    return result_for(wf, register_handle(handle))


def _unregister(conn: Connection, wf: str, deadline: float = 5.0) -> None:
    """Drop the record of a workflow whose graph could not be sent (and its local store).

    The record went on the client's batched stream; the forget goes by rpc on another
    connection and can overtake it (then it finds nothing and the record, arriving later,
    stays for good). So forget until a record was dropped, for at most ``deadline`` s.
    """
    drop_store(wf)
    end = time.monotonic() + deadline
    try:
        while not conn.rpc("nbcanvas_forget", wf=wf) and time.monotonic() < end:
            time.sleep(0.01)  # the record is in flight on the stream: ask again
    except Exception:  # noqa: BLE001 - the caller reports the original error
        pass


def reattach(id: str, app: Any = None) -> WorkflowHandle:
    """A handle for a workflow sent by another process, from the scheduler's record."""
    from distributed import Future
    h = find_handle(id)
    if h is not None:
        return h
    conn = connection(app, start=False)  # nothing runs anywhere yet: nothing to find
    if conn is None:
        raise ResultNotFound(f"no workflow with a task or result id {id!r} is known here: it "
                             f"was forgotten, or never sent from this process (and no cluster "
                             f"is connected to ask)")
    rec = conn.rpc("nbcanvas_lookup", id=id)
    if rec is None:
        raise ResultNotFound(f"no workflow with a task or result id {id!r} is known to the "
                             f"scheduler at {conn.address}: it was never sent "
                             f"there, or it was forgotten")
    rec = _lists(rec)
    wf = rec["id"]
    rows = {i: NodeInfo(r[0], r[1], r[2], r[3], r[4], tuple(r[5])) for i, r in rec["nodes"].items()}
    store = get_store(wf)
    fresh = store is None
    if store is None:
        store = register_store(StateStore(wf, rows))
    store.load(rec["states"], rec["dyn"])
    store.branches.update(rec.get("branches", {}))
    if fresh:  # events that came between the lookup and the store found no store: ask again
        again = conn.rpc("nbcanvas_lookup", id=wf)
        if again is not None:
            again = _lists(again)
            store.load(again["states"], again["dyn"])
            store.branches.update(again.get("branches", {}))
    futures = {k: Future(k, conn.client) for k in rec["keys"]}
    # A Future made from a key does not tell the scheduler; ask for the keys' state now.
    conn.send({"op": "client-desires-keys", "keys": list(futures)})
    handle = WorkflowHandle(wf, rows, decode_where(rec["result"]), store,
                            ClusterBackend(conn, futures, wf, rows, store),
                            structure=structure_of(rec),
                            app=app,
                            name=rec["name"])
    handle.compile_args = dict(rec.get("compile") or handle.compile_args)
    token = rec.get("token", wf)
    if "~" in token:  # it was retried: live keys carry the attempt number
        handle.attempt = int(token.rpartition("~")[2])
        handle.keymap = {k.rpartition("~")[0]: k for k in rec["keys"] if "~" in k}
    return register_handle(handle)


def structure_of(rec: dict[str, Any]) -> dict[str, Any]:
    """The canvas of a workflow record as ``to_dict(strict=False)`` made it (unpickled: it
    comes from the scheduler, which the client trusts with every result it unpickles)."""
    structure = rec["structure"]
    return pickle.loads(structure) if isinstance(structure, bytes) else structure


def _lists(obj: Any) -> Any:
    """The record as sent: distributed's msgpack turns lists into tuples; JSON forms have no
    tuples (they are tagged), so every tuple here was a list."""
    if isinstance(obj, (list, tuple)):
        return [_lists(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _lists(v) for k, v in obj.items()}
    return obj


def save_group(result: Any) -> None:
    """Mark a GroupResult as saved (its workflow record already keeps it until forget)."""
    backend = result.handle.backend
    if isinstance(backend, ClusterBackend):
        backend.conn.rpc("nbcanvas_save_group", id=result.id)
