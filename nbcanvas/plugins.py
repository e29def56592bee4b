"""The scheduler plugin (run stage); the worker plugin is ``nbcanvas.workerplugin``.

One record per workflow (structure, node table, keys, states fed by the event topic), kept --
with its results -- until ``forget()``; lookups for re-attaching; the workflow list; race-free
revoke (acknowledged by every worker's plugin).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from .runtime.emit import TOPIC
from .leansend import make_lean
from .schedtune import hands_out_blocks, inline_small_graphs, keep_few_events, send_now

__all__ = ["NbcanvasScheduler", "HOLDER", "summary"]

logger = logging.getLogger("nbcanvas")

#: The pseudo-client that keeps a workflow's results alive on the scheduler until forget().
HOLDER = "nbcanvas-records"
_READY = ("SUCCESS", "FAILURE", "REVOKED", "NOT_RUN")
#: a task's row before its first event: (state, meta, started, finished, retries, info)
_PENDING_ROW = ("PENDING", None, None, None, 0, None)
_TASK_KINDS = ("signature", "xmap", "foreach", "branch", "callback")


def summary(rec: dict[str, Any]) -> dict[str, Any]:
    """The row of ``nc.workflows()``: name, state, done/total, times."""
    states = rec["states"]
    ids = [i for i, n in rec["nodes"].items() if n[0] in _TASK_KINDS]
    ids += [i for i, n in rec["dyn"].items() if n[0] in _TASK_KINDS]
    counts: dict[str, int] = {}
    for i in ids:
        s = states.get(i, ["PENDING"])[0]
        counts[s] = counts.get(s, 0) + 1
    done = sum(v for k, v in counts.items() if k in _READY)
    if rec.get("revoked"):
        state = "REVOKED" if done == len(ids) else "REVOKING"
    elif done == len(ids) and ids:
        state = "FAILURE" if counts.get("FAILURE") else "SUCCESS"
    elif any(k not in ("PENDING",) for k in counts):
        state = "FAILURE" if counts.get("FAILURE") else "STARTED"
    else:
        state = "PENDING"
    finished = max((s[3] or 0 for s in states.values() if s[3]), default=None) \
        if done == len(ids) else None
    started = min((s[2] for s in states.values() if s[2]), default=None)
    return {"id": rec["id"], "name": rec["name"], "state": state, "done": done,
            "total": len(ids), "counts": counts, "created": rec["created"], "started": started,
            "finished": finished}


def _guarded(fn: Any) -> Any:
    def handler(**kwargs: Any) -> None:
        try:
            fn(**kwargs)
        except Exception:
            logger.exception("nbcanvas: %s failed", getattr(fn, "__name__", "handler"))
    return handler


class NbcanvasScheduler(SchedulerPlugin):
    """Workflow records on the scheduler."""

    name = "nbcanvas"
    idempotent = True

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.index: dict[str, str] = {}          # any node id -> workflow id
        self.revoked: set[str] = set()
        self.groups: set[str] = set()            # saved GroupResult ids
        self._pending_keys: dict[str, str] = {}  # key -> workflow id, until the graph arrives
        self.unit_wf: dict[str, str] = {}        # every unit key -> its workflow id
        self.expiring: set[str] = set()          # workflow ids with result_expires
        self._sweep: Any = None                  # the timer of the next expire() (or None)
        self._cadence = float("inf")
        self.sweeps = 0

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        inline_small_graphs()
        keep_few_events(scheduler)
        # A stream handler that raises would close the client's stream: never let one raise.
        scheduler.stream_handlers["nbcanvas-register"] = _guarded(self.register)
        scheduler.stream_handlers["nbcanvas-retry"] = _guarded(self.retry)
        scheduler.handlers.update({
            "nbcanvas_lookup": self.lookup, "nbcanvas_list": self.list,
            "nbcanvas_revoke": self.revoke, "nbcanvas_forget": self.forget,
            "nbcanvas_revoked": self.get_revoked, "nbcanvas_save_group": self.save_group,
            "nbcanvas_tune": self.tune, "nbcanvas_hands_out_blocks": self.hands_out_blocks})

    # -- records -----------------------------------------------------------------------------
    def register(self, client: str | None = None, record: dict[str, Any] | None = None,
                 **_: Any) -> None:
        """Stream handler: the record arrives just before the graph, on the same stream."""
        assert record is not None
        wf = record["id"]
        record.setdefault("states", {})
        record.setdefault("dyn", {})
        record.setdefault("branches", {})
        record["client"] = client
        self.records[wf] = record
        for node_id in record["nodes"]:
            self.index[node_id] = wf
        for key in record["keys"]:
            self._pending_keys[key] = wf
            self.unit_wf[key] = wf
        self.expiring.discard(wf)  # (a workflow sent again with its ids may not expire now)
        if record.get("expires") is not None:
            self.expiring.add(wf)
            self._arm(record["expires"])

    def retry(self, client: str | None = None, wf: str | None = None, token: str | None = None,
              keys: dict[str, str] | None = None, reset: list[str] | None = None,
              result: Any = None, **_: Any) -> None:
        """Stream handler: a retry of ``wf`` runs as ``token``; ``keys`` maps old unit keys to
        the new ones; the states of ``reset`` nodes start again from PENDING."""
        rec = self.records.get(wf)  # type: ignore[arg-type]
        if rec is None or token is None:
            return
        rec["token"] = token
        rec.pop("revoked", None)
        rec.pop("finished_at", None)  # it runs again: its expiry counts from its new end
        for node_id in reset or ():
            rec["states"].pop(node_id, None)
        keys = keys or {}
        for node_id, row in list(rec["nodes"].items()):
            if row[4] in keys:
                row = list(row)
                row[4] = keys[row[4]]
                rec["nodes"][node_id] = row
        old = [k for k in keys if k in self.scheduler.tasks]
        rec["keys"] = [keys.get(k, k) for k in rec["keys"]]
        if result is not None:
            rec["result"] = result
        for new in keys.values():
            self._pending_keys[new] = wf  # type: ignore[assignment]
            self.unit_wf[new] = wf  # type: ignore[assignment]
        if old:
            self.scheduler.client_releases_keys(old, HOLDER, stimulus_id=f"nbcanvas-retry-{token}")

    def update_graph(self, scheduler: Any, *, keys: Any = None, tasks: Any = None,
                     **kwargs: Any) -> None:
        mine = [k for k in (tasks or ()) if k in self._pending_keys]
        if mine:
            for k in mine:
                del self._pending_keys[k]
            scheduler.client_desires_keys(mine, HOLDER)

    def _send_now(self, key: Any, finish: str) -> None:
        """A unit was sent to a worker (``processing``) or finished (``memory``): once this
        transition's messages are in the streams, that worker, or the workflow's client (the
        unit's events and result), gets them now, not after the stream's batching interval."""
        wf = self.unit_wf.get(key)
        if wf is None:
            return
        sch, stream = self.scheduler, None
        if finish == "processing":
            ts = sch.tasks.get(key)
            ws = getattr(ts, "processing_on", None)
            stream = sch.stream_comms.get(ws.address) if ws is not None else None
        else:
            rec = self.records.get(wf)
            stream = sch.client_comms.get(rec.get("client")) if rec is not None else None
        if stream is not None and stream.interval:
            asyncio.get_running_loop().call_soon(send_now, stream)

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        """A unit the cluster could not finish (e.g. ``KilledWorker``): its steps that had not
        ended are reported -- FAILURE where the unit was running, NOT_RUN where it never started
        -- so no state store (and no live view) shows them running for ever. (And _send_now.)"""
        if finish == "processing" or finish == "memory":
            self._send_now(key, finish)
            return
        if finish != "erred":
            return
        wf = self.unit_wf.get(key)
        rec = self.records.get(wf) if wf is not None else None
        if rec is None:
            return
        ran = start == "processing"
        text = str(kwargs.get("exception_text") or "the cluster could not finish it")[:200]
        now, evs = time.time(), []
        for node_id, row in rec["nodes"].items():
            if row[4] == key and row[0] in _TASK_KINDS:
                st = rec["states"].get(node_id)
                if st is not None and st[0] in _READY:
                    continue
                if ran and st is not None and st[0] != "PENDING":  # it was running
                    evs.append(["D", node_id, now, "FAILURE", f"lost by the cluster: {text}"])
                else:
                    evs.append(["D", node_id, now, "NOT_RUN",
                                "an earlier step was lost by the cluster"])
        if evs:
            self.scheduler.log_event(TOPIC, {"wf": wf, "ev": evs})

    # -- expiry (Celery's result_expires) -----------------------------------------------------
    def _arm(self, expires: float | None) -> None:
        """Time the next :meth:`expire` at a quarter of ``expires`` (between 0.05 and 5 s),
        unless the timer already set comes sooner; None: nothing expires, no timer."""
        if expires is None:
            return
        cadence = min(max(expires / 4, 0.05), 5.0)
        if self._sweep is not None:
            if cadence >= self._cadence:
                return
            self._sweep.cancel()
        self._sweep = asyncio.get_running_loop().call_later(cadence, self.expire)
        self._cadence = cadence

    def expire(self) -> list[str]:
        """Forget each workflow that finished ``expires`` seconds ago or more, and tell every
        client (their handles drop its results too); returns their ids."""
        self._sweep, self._cadence = None, float("inf")
        self.sweeps += 1
        now, gone = time.time(), []
        try:
            for wf in list(self.expiring):
                rec = self.records[wf]
                if rec.get("finished_at") is None:
                    if not self._finished(rec):
                        continue
                    rec["finished_at"] = now  # the scheduler's clock, not the workers'
                if now - rec["finished_at"] >= rec["expires"]:
                    self.forget(wf)
                    self.scheduler.log_event(TOPIC, {"wf": wf, "expired": True})
                    gone.append(wf)
        except Exception:  # a timer's error would go unseen, and stop expiry for good
            logger.exception("nbcanvas: expiring workflows failed")
        finally:
            self._arm(min((self.records[w]["expires"] for w in self.expiring), default=None))
        return gone

    def _finished(self, rec: dict[str, Any]) -> bool:
        """No unit of it waits or runs, and every step has reported its end."""
        tasks = self.scheduler.tasks
        for key in rec["keys"]:
            ts = tasks.get(key)
            if ts is not None and ts.state in ("waiting", "queued", "processing", "no-worker"):
                return False
        s = summary(rec)
        return s["done"] == s["total"]

    def log_event(self, topic: str, msg: Any) -> None:
        if topic != TOPIC or not isinstance(msg, dict) or "ev" not in msg:
            return
        rec = self.records.get(msg.get("wf"))
        if rec is None:
            return
        states = rec["states"]
        for ev in msg["ev"]:
            code, id, t = ev[0], ev[1], ev[2]
            if code == "N":
                rec["dyn"][id] = [ev[5], ev[4], 0, ev[3]]
                self.index[id] = rec["id"]
                continue
            if code == "B":
                rec["branches"][id] = ev[3]
                continue
            row = states.get(id, _PENDING_ROW)
            if row[0] in _READY:
                continue
            state, meta, started, finished, retries, info = row
            if code == "E":  # started and ended (see runtime.emit)
                state, retries, started = ev[6], ev[3], started or t
                finished, info = ev[5], ev[7]
            elif code == "S":
                state, retries, started = "STARTED", ev[3], started or t
            elif code == "R":
                state, info = "RETRY", ev[3]
            elif code == "U":
                state, meta = ev[3], ev[4]
            elif code == "D":
                state, info, finished = ev[3], ev[4], t
            # a new tuple, not a list changed in place: the garbage collector stops tracking a
            # tuple of plain values, and a 10k-task workflow keeps one per task
            states[id] = (state, meta, started, finished, retries, info)

    # -- handlers ------------------------------------------------------------------------------
    def lookup(self, id: str | None = None, **_: Any) -> dict[str, Any] | None:
        wf = self.index.get(id) if id not in self.records else id
        return None if wf is None else self.records.get(wf)

    def list(self, **_: Any) -> list[dict[str, Any]]:
        return [summary(r) for r in self.records.values()]

    def get_revoked(self, **_: Any) -> list[str]:
        return sorted(self.revoked)

    def save_group(self, id: str | None = None, **_: Any) -> bool:
        if id not in self.index:
            return False
        self.groups.add(id)
        return True

    async def revoke(self, wf: str | None = None, terminate: bool = False, **_: Any) -> int:
        """Tell every worker, wait for all acknowledgements; then no step of ``wf`` can start."""
        assert wf is not None
        rec = self.records.get(wf)
        token = rec.get("token", wf) if rec is not None else wf
        self.revoked.add(token)
        if rec is not None:
            rec["revoked"] = time.time()
        addrs = list(self.scheduler.workers)
        acks = await asyncio.gather(*[
            self.scheduler.rpc(a).nbcanvas_revoke(wf=token, terminate=terminate) for a in addrs],
            return_exceptions=True)
        return sum(1 for a in acks if a == "OK")

    def forget(self, wf: str | None = None, **_: Any) -> bool:
        rec = self.records.pop(wf, None)  # type: ignore[arg-type]
        if rec is None:
            return False
        self.expiring.discard(wf)  # type: ignore[arg-type]
        for node_id in list(rec["nodes"]) + list(rec["dyn"]):
            self.index.pop(node_id, None)
        for key in rec["keys"]:
            self.unit_wf.pop(key, None)
        keys = [k for k in rec["keys"] if k in self.scheduler.tasks]
        if keys:
            self.scheduler.client_releases_keys(keys, HOLDER, stimulus_id=f"nbcanvas-forget-{wf}")
        return True

    def hands_out_blocks(self, **_: Any) -> bool:
        """``schedtune.hands_out_blocks`` of this scheduler (batches need per-workflow names)."""
        return hands_out_blocks(self.scheduler)

    def tune(self, client: str | None = None, interval: float = 0.0, **_: Any) -> None:
        """Send to ``client``, to every worker and to every client and worker that connects
        later (a worker's own client, another kernel, a restarted worker) without batching
        delay (embedded cluster)."""
        self._interval = interval
        comm = self.scheduler.client_comms.get(client)
        for bcomm in [comm, *self.scheduler.stream_comms.values()]:
            _no_delay(bcomm, interval)

    def add_client(self, scheduler: Any, client: str) -> None:
        """Its stream is made right after this hook: tune it then, if :meth:`tune` ran."""
        interval = getattr(self, "_interval", None)
        if interval is not None:
            asyncio.get_running_loop().call_soon(self.tune, client, interval)

    def add_worker(self, scheduler: Any = None, worker: str = "") -> None:
        """A worker that joins later (a restart gets a new stream): as :meth:`tune` set."""
        interval = getattr(self, "_interval", None)
        if interval is not None:
            _no_delay(self.scheduler.stream_comms.get(worker), interval)


def _no_delay(stream: Any, interval: float) -> None:
    if stream is not None:
        stream.interval = interval
        make_lean(stream)  # with no interval: writes without a coroutine
