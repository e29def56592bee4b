"""AsyncResult and GroupResult: Celery's result interface over a workflow handle (run stage).

States come from the event store; values come from the cluster (or the eager run) when asked.
A result shown as a notebook cell's value renders the live view.
"""
from __future__ import annotations

import asyncio
from typing import Any

from .errors import ResultNotFound
from .handle import WorkflowHandle, find_handle
from .runtime.outcome import Failed, GroupOutcome, value_of
from .states import FAILURE, PENDING, READY_STATES, REVOKED, SUCCESS

__all__ = ["AsyncResult", "GroupResult", "result_for"]


def _raise(cause: Any) -> None:
    __tracebackhide__ = True  # IPython and pytest start the error at the caller's code
    exc = cause.exc
    if isinstance(cause, Failed) and cause.traceback:
        from .tracebacks import with_source
        note = "Remote traceback:\n" + with_source(cause.traceback).rstrip()
        if note not in getattr(exc, "__notes__", ()):
            exc.add_note(note)
    raise exc


def _lookup(id: str, app: Any) -> WorkflowHandle:
    h = find_handle(id)
    if h is not None:
        return h
    from .submit import reattach  # another process sent it: ask the scheduler
    return reattach(id, app)


class _Result:
    """What AsyncResult and GroupResult share: the handle, revoke, forget, await, display."""

    def __init__(self, id: str, app: Any = None, handle: WorkflowHandle | None = None) -> None:
        self.id = id
        self.app = app
        self._handle = handle

    @property
    def handle(self) -> WorkflowHandle:
        """The workflow this result belongs to; after it was sent again (same ids), the latest."""
        if self._handle is None or self._handle.forgotten:
            self._handle = _lookup(self.id, self.app)
        return self._handle

    def _known(self) -> WorkflowHandle | None:
        """The handle, or None if the workflow is unknown or forgotten (state PENDING)."""
        try:
            return self.handle
        except ResultNotFound:
            return None

    def revoke(self, terminate: bool = False, **_: Any) -> None:
        """Revoke the whole workflow: no task of it starts after this returns.

        ``terminate=True`` also interrupts running steps (an exception raised in their thread
        at the next Python bytecode; code blocked inside C returns first). Steps that did not
        run report ``REVOKED`` and ``.get()`` raises ``TaskRevokedError``.
        """
        self.handle.revoke(terminate)

    def forget(self) -> None:
        """Drop the results and the record on the cluster; the id is unknown afterwards."""
        self.handle.forget()

    def retry(self) -> Any:
        """Re-run only the failed, revoked and not-run steps; returns the new result."""
        from .control import retry_workflow
        return retry_workflow(self)

    @property
    def parent(self) -> Any:
        """The result of the previous step (Celery's ``.parent``), or None."""
        from .structure import parent_of
        pid = parent_of(self.handle, self.id)
        return None if pid is None else result_for(pid, self.handle)

    @property
    def children(self) -> list[Any]:
        """Results of the callbacks and run-time steps this task started."""
        from .structure import children_of
        return [result_for(c, self.handle) for c in children_of(self.handle, self.id)]

    def __await__(self) -> Any:
        return self._await().__await__()

    async def _await(self) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.get)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .display import result_mimebundle
        return result_mimebundle(self, include, exclude)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Result) and type(other) is type(self) and other.id == self.id

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.id))

    def __reduce__(self):
        return (type(self), (self.id,))


class AsyncResult(_Result):
    """The result of one task call (or of a chain: its last step; a chord: its body).

    ``AsyncResult(id)`` re-attaches by id, also from another process connected to the same
    scheduler.
    """

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    # -- state -------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED, NOT_RUN or a custom state.

        The result of a whole workflow (the id ``delay()`` returned) reports the workflow's
        progress while its last step waits: e.g. ``PROGRESS`` while a header task of a chord
        reports it with ``update_state``.
        """
        h = self._known()
        if h is None:
            return PENDING
        own = h.store.state(self.id)
        if own == PENDING and self.id == h.id:
            return h.store.progress_state()[0]
        return own

    status = state

    def ready(self) -> bool:
        h = self._known()
        return h is not None and (h.store.state(self.id) in READY_STATES or
                                  h.ready(h.where(self.id)))

    def successful(self) -> bool:
        return self.state == SUCCESS

    def failed(self) -> bool:
        return self.state == FAILURE

    @property
    def info(self) -> Any:
        """The result, the exception, or the latest ``update_state`` meta while running."""
        h = self._known()
        if h is None:
            return None
        st = h.store.get(self.id)
        if (st is None or st.state == PENDING) and self.id == h.id:
            return h.store.progress_state()[1]
        if st is not None and st.state not in READY_STATES:
            return st.meta if st.meta is not None else (
                {"hostname": st.host} if st.host else None)
        if not self.ready():
            return None
        return self.get(propagate=False)

    result = info

    @property
    def traceback(self) -> str | None:
        """The remote traceback text of a failed task."""
        if not self.ready():
            return None
        out = self.handle.outcome(self.handle.where(self.id))
        _, cause = value_of(out)
        if not isinstance(cause, Failed):
            return None
        from .tracebacks import with_source
        return with_source(cause.traceback)

    # -- values --------------------------------------------------------------------------------
    def get(self, timeout: float | None = None, propagate: bool = True, progress: bool = False,
            **_: Any) -> Any:
        """Wait for the result. Raises the task's own exception (with the remote traceback),
        ``nc.TimeoutError`` after ``timeout`` s (cancelling nothing), or ``TaskRevokedError``."""
        __tracebackhide__ = True
        if progress:
            from .progress import progress as show
            show(self)
        h = self.handle
        value, cause = value_of(h.outcome(h.where(self.id), timeout))
        if cause is not None:
            if not propagate:
                return cause.exc
            _raise(cause)
        return value

    wait = get

    @property
    def future(self) -> Any:
        """The dask Future of the unit holding this task's result (None after ``apply()``)."""
        w = self.handle.where(self.id)
        return self.handle.backend.future(w.key) if hasattr(w, "key") else None

    def as_tuple(self) -> tuple:
        """Celery's nested ``((id, parent), None)`` form, built without recursion."""
        ids = []
        node: Any = self
        while node is not None:
            ids.append(node.id)
            node = node.parent
        out = None
        for i in reversed(ids):
            out = ((i, out), None)
        return out  # type: ignore[return-value]


class GroupResult(_Result):
    """The results of a group's members, in order."""

    def __init__(self, id: str, results: list[Any] | None = None, app: Any = None,
                 handle: WorkflowHandle | None = None) -> None:
        super().__init__(id, app, handle)
        self._results = results

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{len(self.results)} results]>"

    @property
    def results(self) -> list[Any]:
        if self._results is None:
            h = self.handle
            members = h.nodes[self.id][5] if self.id in h.nodes else ()
            self._results = [result_for(m, h) for m in members]
        return self._results

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Any:
        return iter(self.results)

    def __getitem__(self, i: int) -> Any:
        return self.results[i]

    @property
    def state(self) -> str:
        states = [r.state for r in self.results]
        if not states or all(s == SUCCESS for s in states):
            return SUCCESS if self.ready() else PENDING
        for s in (FAILURE, REVOKED):
            if s in states and all(x in READY_STATES for x in states):
                return s
        return "STARTED" if any(s != PENDING for s in states) else PENDING

    status = state

    def get(self, timeout: float | None = None, propagate: bool = True, progress: bool = False,
            **_: Any) -> list[Any]:
        """The list of member results, in order; raises the first failure if ``propagate``."""
        __tracebackhide__ = True
        if progress:
            from .progress import progress as show
            show(self)
        h = self.handle
        out = h.outcome(h.where(self.id), timeout)
        if propagate:
            value, cause = value_of(out)
            if cause is not None:
                _raise(cause)
            return value
        return [_value_or_exc(o) for o in out.items] if isinstance(out, GroupOutcome) else out

    join = get
    join_native = get

    def ready(self) -> bool:
        h = self._known()
        return h is not None and h.ready(h.where(self.id))

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        return sum(1 for r in self.results if r.successful())

    def save(self) -> GroupResult:
        """Keep this group findable by id (``GroupResult.restore``) until ``forget()``."""
        from .submit import save_group
        save_group(self)
        return self

    @classmethod
    def restore(cls, id: str, app: Any = None) -> GroupResult:
        """Re-attach to a saved group result by id."""
        h = _lookup(id, app)
        return cls(id, app=app, handle=h)


def _value_or_exc(outcome: Any) -> Any:
    value, cause = value_of(outcome)
    return cause.exc if cause is not None else value


def result_for(id: str, handle: WorkflowHandle) -> Any:
    """AsyncResult or GroupResult for node ``id`` of ``handle``."""
    if handle.kind(id) in ("group",):
        return GroupResult(id, app=handle.app, handle=handle)
    return AsyncResult(id, app=handle.app, handle=handle)


