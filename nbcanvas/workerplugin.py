"""The worker plugin (run stage): revoke on the worker, and a unit's last events with its result.

The revoke handler fills the runtime's local revoked set and, with ``terminate``, interrupts
running steps; a worker that joins later asks the scheduler what is revoked already. On every
task transition, a unit's held events go out first, in the same write as its result.
"""
from __future__ import annotations

import asyncio
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .leansend import make_lean, small_pack_buffers
from .runtime import release_events, run_unit
from .schedtune import send_now

__all__ = ["NbcanvasWorker"]

_RAN, _ENDED = ("executing", "long-running"), ("memory", "error")  # a worker's task states
#: a task leaving one of these states has stopped running here (or will not be reported)
_LEFT = (*_RAN, "cancelled", "resumed")


class NbcanvasWorker(WorkerPlugin):
    """Revoke on the worker: fill the local set, ack; with terminate, interrupt steps. Sends
    a unit's last events with its result (see ``runtime.emit``)."""

    name = "nbcanvas"
    idempotent = True

    def __init__(self, batch_interval: float | None = None, batch_tags: bool = True) -> None:
        self.batch_interval = batch_interval
        #: canvases compiled on these workers (a dynamic fan-out) name their batches per
        #: workflow, as the client does for this cluster (``compile_canvas(batch_tags=)``)
        self.batch_tags = batch_tags

    async def setup(self, worker: Any) -> None:
        from .runtime.interp import revoke_local
        worker.handlers["nbcanvas_revoke"] = self._revoke
        self._worker = worker
        worker._nbcanvas_releases = True
        if self.batch_interval is not None:
            worker.batched_stream.interval = self.batch_interval
            make_lean(worker.batched_stream)  # with no interval: writes without a coroutine
            small_pack_buffers()  # a worker process its nanny started: see there
        try:  # a worker that joins later learns what is already revoked
            for wf in await worker.scheduler.nbcanvas_revoked():
                revoke_local(wf)
        except Exception:
            pass

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """Called on the worker's event loop for every task transition, before the messages it
        makes are sent: as a task stops running, a unit's held events go first, in the same
        message batch as its result (one write to the scheduler and one wake-up there, instead
        of two). Other transitions (a task arriving while a unit returns) leave them held."""
        worker = getattr(self, "_worker", None)  # None: its setup failed, logged by dask
        if worker is None or start not in _LEFT:
            return
        release_events(worker)
        # a unit's result (and its events before it) leave now, not after a 2 ms interval
        if start in _RAN and finish in _ENDED and worker.batched_stream.interval:
            ts = worker.state.tasks.get(key)
            if getattr(getattr(ts, "run_spec", None), "func", None) is run_unit:
                asyncio.get_running_loop().call_soon(send_now, worker.batched_stream)

    @staticmethod
    def _revoke(comm: Any = None, wf: str | None = None, terminate: bool = False) -> str:
        from .errors import TaskRevokedError
        from .runtime.interp import revoke_local
        assert wf is not None
        revoke_local(wf, TaskRevokedError if terminate else None)
        return "OK"
