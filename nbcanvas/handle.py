"""WorkflowHandle: this process's view of one sent (or eagerly run) workflow (run stage).

It knows the node table, where each node's outcome will be, the state store, and a backend
that holds the results: futures on a cluster, or a dict after ``apply()``.
"""
from __future__ import annotations

import pickle
import threading
import time
from typing import Any, Protocol

from .canvas import new_ids
from .compile import Lst, Ref
from .errors import ResultNotFound
from .events import drop_store, on_expired
from .runtime import outcome_at
from .states import READY_STATES as READY
from .store import TASK_KINDS, StateStore

__all__ = ["WorkflowHandle", "Backend", "EagerBackend", "find_handle", "register_handle",
           "drop_handle", "handles", "supersede"]


class Backend(Protocol):
    def gather(self, keys: list[str], timeout: float | None) -> dict[str, dict[str, Any]]: ...
    def done(self, keys: list[str]) -> bool: ...
    def revoke(self, handle: WorkflowHandle, terminate: bool) -> None: ...
    def forget(self, handle: WorkflowHandle) -> None: ...
    def release(self, handle: WorkflowHandle) -> None: ...
    def future(self, key: str) -> Any: ...


class EagerBackend:
    """Results of ``apply()``: already computed, held in a dict."""

    def __init__(self, done: dict[str, dict[str, Any]]) -> None:
        self._done = done

    def gather(self, keys: list[str], timeout: float | None) -> dict[str, dict[str, Any]]:
        return {k: self._done[k] for k in keys}

    def done(self, keys: list[str]) -> bool:
        return True

    def revoke(self, handle: WorkflowHandle, terminate: bool) -> None:
        """An eager run has already finished: nothing left to revoke."""

    def forget(self, handle: WorkflowHandle) -> None:
        self.release(handle)  # nothing is on a cluster: forgetting is letting go

    def release(self, handle: WorkflowHandle) -> None:
        self._done.clear()

    def future(self, key: str) -> Any:
        return None


class WorkflowHandle:
    """One workflow as seen from here.

    ``nodes``: id -> (kind, name, step, parent, key, members); ``result``: where the
    workflow's own result will be; ``structure``: the canvas as ``to_dict(strict=False)``.
    """

    def __init__(self, id: str, nodes: dict[str, tuple], result: Ref | Lst, store: StateStore,
                 backend: Backend, canvas: Any = None, structure: dict | None = None,
                 app: Any = None, name: str = "") -> None:
        self.id, self.nodes, self.result, self.store = id, nodes, result, store
        self.backend, self.canvas, self._structure, self.app = backend, canvas, structure, app
        self.name = name or (canvas.name if canvas is not None else id)
        self.forgotten = False
        #: how the canvas was compiled (retry() compiles it again the same way)
        self.compile_args: dict[str, Any] = {"parallelism": 1, "fusion": True, "batching": False}
        #: retries so far, and each unit's key in the latest run (original key -> live key)
        self.attempt = 0
        self.keymap: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.name} {self.id}>"

    @property
    def structure(self) -> dict[str, Any]:
        if self._structure is None and self.canvas is not None:
            self._structure = self.canvas.to_dict(strict=False)
        return self._structure or {}

    # -- where things are -------------------------------------------------------------------
    def kind(self, id: str) -> str | None:
        row = self.nodes.get(id)
        if row is not None:
            return row[0]
        dyn = self.store.nodes.get(id)
        return dyn[0] if dyn is not None else None

    def where(self, id: str) -> Ref | Lst:
        """Where the outcome of node ``id`` is (nodes made at run time included)."""
        if self.forgotten:
            raise ResultNotFound(f"workflow {self.id} was forgotten: its results are gone")
        if id == self.id and self.result is not None:
            return self.result
        row = self.nodes.get(id)
        if row is not None:
            key, members = row[4], row[5]
            if key is not None:
                return Ref(key, id)
            return Lst(tuple(self.where(m) for m in members))
        cur = id  # a node made at run time lives in the unit of its nearest static ancestor
        for _ in range(64):
            dyn = self.store.nodes.get(cur)
            if dyn is None:
                break
            cur = dyn[3]
            if cur in self.nodes and self.nodes[cur][4] is not None:
                return Ref(self.nodes[cur][4], id)
        raise ResultNotFound(f"{id} is not a node of workflow {self.id}")

    def keys_of(self, where: Ref | Lst) -> list[str]:
        if isinstance(where, Ref):
            return [where.key]
        seen: dict[str, None] = {}
        stack: list[Any] = [where]
        while stack:
            w = stack.pop()
            if isinstance(w, Ref):
                seen[w.key] = None
            else:
                stack.extend(w.items)
        return list(seen)

    # -- results -----------------------------------------------------------------------------
    def outcome(self, where: Ref | Lst, timeout: float | None = None) -> Any:
        if not isinstance(self.backend, EagerBackend):  # waiting on the cluster
            from .cluster import off_the_pool
            with off_the_pool():
                return self._outcome(where, timeout)
        return self._outcome(where, timeout)

    def _outcome(self, where: Ref | Lst, timeout: float | None) -> Any:
        shape = self._expand(where)
        refs = self._refs(shape)
        if refs is not None:
            fast = self._inline(shape, refs, timeout)
            if fast is not None:
                return fast[0]
        done = self.backend.gather(self.keys_of(where), timeout)
        return outcome_at(where, done)

    def _expand(self, where: Ref | Lst, depth: int = 0) -> Ref | Lst:
        """``where`` with each group run in one unit replaced by its members (which that unit
        records too), so that a small group's result can come from its members' events."""
        if isinstance(where, Lst):
            return Lst(tuple(self._expand(w, depth + 1) for w in where.items))
        row = self.nodes.get(where.id)
        if row is None or row[0] != "group" or not row[5] or depth > 8:
            return where
        return Lst(tuple(self._expand(Ref(where.key, m), depth + 1) for m in row[5]))

    def _refs(self, where: Ref | Lst) -> list[Ref] | None:
        """The step results ``where`` is made of, if few (else None: gather them)."""
        refs: list[Ref] = []
        stack: list[Any] = [where]
        while stack:
            w = stack.pop()
            if isinstance(w, Ref):
                if self.kind(w.id) not in TASK_KINDS:  # only steps send done events
                    return None
                refs.append(w)
            else:
                stack.extend(w.items)
            if len(refs) > 64:
                return None
        return refs

    def _inline(self, where: Ref | Lst, refs: list[Ref],
                timeout: float | None) -> tuple[Any] | None:
        """The outcome carried by the done events of small workflow results, waiting for those
        events or for the units' futures, whichever comes first."""
        futs = [self.backend.future(k) for k in {r.key for r in refs}]
        if not futs or any(f is None for f in futs):
            return None

        def arrived(s: StateStore) -> bool:
            for r in refs:
                node = s.get(r.id)
                if node is None or (node.inline is None and node.state not in READY):
                    return False
            return True
        # The done events come before the units' results (a unit flushes its events first);
        # the slices only matter if a unit dies without sending them.
        deadline = None if timeout is None else time.monotonic() + timeout
        while not arrived(self.store) and not all(f.done() for f in futs):
            left = 0.25 if deadline is None else min(0.25, deadline - time.monotonic())
            if left <= 0 or self.store.wait(arrived, left):
                break
        found: dict[str, Any] = {}
        for r in refs:
            st = self.store.get(r.id)
            if st is None or st.inline is None:
                return None
            found[r.id] = pickle.loads(st.inline)
        return (_assemble(where, found),)

    def ready(self, where: Ref | Lst) -> bool:
        """Every result in ``where`` is known: reported final by its steps, or fetchable."""
        refs = self._refs(where)
        if refs is not None and all(self.store.state(r.id) in READY for r in refs):
            return True
        return self.backend.done(self.keys_of(where))

    def revoke(self, terminate: bool = False) -> None:
        self.backend.revoke(self, terminate)

    def forget(self) -> None:
        self.backend.forget(self)
        self.expired()

    def expired(self) -> None:
        """The cluster has forgotten this workflow: drop what this process holds of it."""
        self.backend.release(self)
        self.forgotten = True
        drop_handle(self)
        drop_store(self.id)


def _assemble(where: Ref | Lst, found: dict[str, Any]) -> Any:
    from .runtime.outcome import GroupOutcome
    if isinstance(where, Ref):
        return found[where.id]
    return GroupOutcome([_assemble(w, found) for w in where.items])


_lock = threading.Lock()
_handles: dict[str, WorkflowHandle] = {}


def register_handle(h: WorkflowHandle) -> WorkflowHandle:
    with _lock:
        _handles[h.id] = h
    return h


def drop_handle(h: WorkflowHandle) -> None:
    with _lock:
        if _handles.get(h.id) is h:
            del _handles[h.id]


def _expired(workflow_id: str) -> None:
    with _lock:
        h = _handles.get(workflow_id)
    if h is not None and not isinstance(h.backend, EagerBackend):
        h.expired()


on_expired(_expired)


def handles() -> list[WorkflowHandle]:
    with _lock:
        return list(_handles.values())


def supersede(workflow_id: str) -> str:
    """A workflow is sent again with the same ids (a frozen canvas re-sent, as Celery allows
    with a fixed task id): forget the earlier run here; return a key salt for the new one."""
    with _lock:
        old = _handles.get(workflow_id)
    if old is None:
        return ""
    old.forget()
    return f"~s{new_ids(1)[0][:8]}"


def find_handle(node_id: str) -> WorkflowHandle | None:
    """The workflow known here that has node ``node_id`` (newest first)."""
    with _lock:
        hs = list(_handles.values())
    if node_id in _handles:
        return _handles[node_id]
    for h in reversed(hs):
        if node_id in h.nodes or node_id in h.store.nodes:
            return h
    return None
