"""The interpreter: runs the programs of one unit, step by step, on a worker or in process.

Every step gets its own id, state events, retries, time limits, revoke check and result.
A failure becomes a value that flows downstream: later steps record ``NOT_RUN`` and the
errback of the node that failed (or of the container that holds it) runs exactly once.
"""
from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from ..compile.programs import Batch, Dyn, MapStep, Par, Seq, Step
from ..errors import Retry, TaskRevokedError
from ..shipping import Shipped
from ..task import Request
from .emit import Sink, jsonable
from .outcome import Failed, GroupOutcome, NotTaken, Revoked, Skipped, failed_from, value_of
from .taskctx import BoundTask, TimeLimits, interrupt_thread, retry_delay

__all__ = ["NO_INPUT", "Ctx", "run_prog", "resolve", "REVOKED", "revoke_local", "RUNNING"]


class _NoInput:
    def __repr__(self) -> str:
        return "NO_INPUT"

    def __reduce__(self):
        return "NO_INPUT"


NO_INPUT = _NoInput()

#: Workflow ids revoked in this process (filled by the worker plugin, read before each step).
REVOKED: set[str] = set()
#: Threads running a step, by workflow id (for revoke(terminate=True)).
RUNNING: dict[str, set[int]] = {}
#: run token -> [its wake-up, how many waits use it]; gone with the last wait
_wake: dict[str, list[Any]] = {}
_lock = threading.Lock()


def revoke_local(wf: str, interrupt: type[BaseException] | None = None) -> list[int]:
    """Mark run ``wf`` (a workflow id or retry token) revoked here; wake its retry waits;
    return the threads running its steps.

    With ``interrupt`` (``revoke(terminate=True)``), raise it in those threads, under the lock
    their steps leave by: a thread is interrupted only while it is still in its step, and only
    once, even when several workers share this process (a threads-only cluster) and each
    handles the same revoke.
    """
    with _lock:
        REVOKED.add(wf)
        waiting = _wake.get(wf)
        threads = list(RUNNING.get(wf, ()))
        if interrupt is not None:
            for tid in RUNNING.pop(wf, ()):
                interrupt_thread(tid, interrupt)
    if waiting is not None:
        waiting[0].set()
    return threads


class Ctx:
    """Everything a unit needs while it runs: its workflow, the event sink, its results.

    ``token`` names this run of the workflow for revoke: the workflow id, or ``<id>~<n>`` for
    its n-th ``retry()``; events always go to the workflow id. ``known`` holds results of
    steps that already succeeded in an earlier run: those steps are not run again.
    """

    def __init__(self, token: str, sink: Sink, execute: Callable[..., Any], host: str = "local",
                 eager: bool = False, known: dict[str, Any] | None = None) -> None:
        self.token, self.wf = token, token.partition("~")[0]
        self.sink, self.execute, self.host, self.eager = sink, execute, host, eager
        self.known: dict[str, Any] = known or {}
        self.results: dict[str, Any] = {}
        #: ids whose small outcome travels inside their "done" event (the workflow's result)
        self.inline: frozenset[str] = frozenset()
        #: task name -> typical seconds of tasks the client knows to be tiny (fan-out sizing)
        self.tiny: dict[str, float] = {}

    def emit(self, code: str, id: str, *fields: Any) -> None:
        self.sink.emit(self.wf, [code, id, time.time(), *fields])

    def record(self, id: str, outcome: Any) -> Any:
        self.results[id] = outcome
        return outcome

    def revoked(self) -> bool:
        return self.token in REVOKED

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the workflow is revoked meanwhile; True if revoked."""
        if seconds <= 0:
            return self.revoked()
        with _lock:  # a revoke either came before this, or finds the wake-up to set
            if self.token in REVOKED:
                return True
            waiting = _wake.setdefault(self.token, [threading.Event(), 0])
            waiting[1] += 1
        try:
            return waiting[0].wait(seconds) or self.revoked()
        finally:
            with _lock:
                waiting[1] -= 1
                if not waiting[1] and _wake.get(self.token) is waiting:
                    del _wake[self.token]


def resolve(sel: Any, deps: tuple[dict[str, Any], ...]) -> Any:
    """The input a selector (see ``compile.lower.selector``) points at."""
    if sel is None:
        return NO_INPUT
    tag = sel[0]
    if tag == "r":
        return deps[sel[1]][sel[2]]
    items: list[Any] = []
    for part in sel[1]:
        if part[0] == "x":
            res = deps[part[1]]
            items.extend([res[i] for i in part[2]])
        else:
            items.append(resolve(part, deps))
    return GroupOutcome(items)


# -- skipping ---------------------------------------------------------------------------------
def _state_for(cause: Any) -> str:
    return "REVOKED" if isinstance(cause, Revoked) else "NOT_RUN"


def _reason(cause: Any) -> str:
    if isinstance(cause, Failed):
        return f"{cause.name} failed: {type(cause.exc).__name__}"
    return cause.reason


def skip(prog: Any, cause: Any, ctx: Ctx) -> Skipped:
    """Record ``prog`` and everything inside it as not run because of ``cause``."""
    out = Skipped(cause)
    if isinstance(prog, Batch):
        return GroupOutcome([skip(step, cause, ctx) for step in prog.steps()])
    if isinstance(prog, Seq):
        for item in prog.items:
            skip(item, cause, ctx)
    elif isinstance(prog, Par):
        ctx.record(prog.id, GroupOutcome([skip(m, cause, ctx) for m in prog.members]))
    else:
        ctx.record(prog.id, out)
        ctx.emit("D", prog.id, _state_for(cause), _reason(cause))
        if isinstance(prog, Dyn):
            from .dynamic import skip_canvas
            skip_canvas(prog.canvas, cause, ctx)
    _callbacks_not_run(prog, cause if isinstance(cause, Revoked) else
                       NotTaken("callback not triggered"), ctx)
    return out


def _callbacks_not_run(prog: Any, cause: Any, ctx: Ctx, links: bool = True,
                       errbacks: bool = True) -> None:
    for cb in (prog.links if links else ()) + (prog.errbacks if errbacks else ()):
        skip(cb, cause, ctx)


def _callbacks(prog: Any, outcome: Any, ctx: Ctx) -> None:
    if not prog.links and not prog.errbacks:
        return
    value, cause = value_of(outcome)
    if cause is None:
        for cb in prog.links:
            run_prog(cb, value, ctx)
        _callbacks_not_run(prog, NotTaken("callback not triggered"), ctx, links=False)
    elif isinstance(cause, Failed):
        for cb in prog.errbacks:
            if isinstance(cb, Step) and cb.opts.get("errback_traceback"):
                run_step(cb, NO_INPUT, ctx, prepend=(cause.exc, cause.traceback))
            else:
                run_prog(cb, cause.exc, ctx)
        _callbacks_not_run(prog, NotTaken("callback not triggered"), ctx, errbacks=False)
    else:
        _callbacks_not_run(prog, cause, ctx)


# -- running ----------------------------------------------------------------------------------
def run_prog(prog: Any, inp: Any, ctx: Ctx) -> Any:
    """Run one program on ``inp`` (``NO_INPUT``, a value or an outcome); return its outcome."""
    if isinstance(prog, Step):
        return run_step(prog, inp, ctx)
    if isinstance(prog, Seq):
        out = inp
        for item in prog.items:
            out = run_prog(item, out, ctx)
        _callbacks(prog, out, ctx)
        return out
    if isinstance(prog, Par):
        value, cause = value_of(inp)
        if cause is not None:
            return skip(prog, cause, ctx)
        out = ctx.record(prog.id, GroupOutcome([run_prog(m, value, ctx) for m in prog.members]))
        _callbacks(prog, out, ctx)
        return out
    if isinstance(prog, MapStep):
        return run_step(prog, inp, ctx)
    if isinstance(prog, Batch):
        return GroupOutcome([run_step(step, inp, ctx) for step in prog.steps()])
    if isinstance(prog, Dyn):
        from .dynamic import run_dynamic
        out = run_dynamic(prog, inp, ctx)
        _callbacks(prog, out, ctx)
        return out
    raise TypeError(f"not a program: {prog!r}")


INLINE_LIMIT = 16_384


def _inline(ctx: Ctx, id: str, outcome: Any) -> tuple[bytes, ...]:
    """The pickled outcome of the workflow's result node, if small: the client's ``.get()``
    then needs no extra round trip to fetch it from the worker."""
    if id not in ctx.inline:
        return ()
    try:  # pickle first, as dask does: cloudpickle's pickler costs ~10 us just to make
        data: bytes | None = pickle.dumps(outcome, 5)
    except Exception:  # noqa: BLE001 - e.g. a lambda, a notebook's class
        data = None
    if data is None or b"__main__" in data:  # by value (the kernel's __main__ is not ours)
        try:
            import cloudpickle
            data = cloudpickle.dumps(outcome, 5)
        except Exception:
            return ()
    return (data,) if len(data) <= INLINE_LIMIT else ()


_COPIED = (dict, list, set, bytearray)


def handoff(value: Any) -> Any:
    """The value a step receives from the step before it.

    Celery serialises every result between steps, so a step that mutates its input (the
    seed's ``process_data`` does) cannot change the result recorded for the step before it.
    Here steps share a process: builtin mutable containers are handed over as copies
    (pickle round trip, C speed); other objects (arrays, frames) are shared as in dask.
    """
    if type(value) in _COPIED:
        return pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
    return value


_PLAIN = frozenset({int, float, complex, bool, str, bytes, type(None)})


def check_sendable(value: Any, name: str) -> None:
    """On a cluster a step's result must leave its worker: if it cannot be pickled, fail the
    step now with a TypeError naming it (the failure then flows like any other) instead of
    letting dask fail later to send it -- an opaque error, or a hang when a unit on another
    worker waits for it. Protocol 5 keeps large buffers (arrays) out of band: no copy."""
    if type(value) in _PLAIN:
        return
    try:
        pickle.dumps(value, 5, buffer_callback=_out_of_band)
    except Exception:
        try:
            import cloudpickle
            cloudpickle.dumps(value, 5, buffer_callback=_out_of_band)
        except Exception as e:
            raise TypeError(
                f"task {name!r} returned a {type(value).__qualname__} that cannot be sent from "
                f"the worker ({type(e).__name__}: {e}); return picklable data (apply() runs "
                f"in-process and pickles nothing)") from e


def _out_of_band(buffer: Any) -> None:
    return None


def _call(step: Any, args: tuple, kwargs: dict, retries: int, ctx: Ctx) -> Any:
    fn = step.fn
    if type(fn) is Shipped:  # sent by value: made here, once per unit
        fn = fn.load()
    if step.bind:
        req = Request(step.id, retries, args, kwargs, ctx.wf, ctx.host, ctx.eager)
        me = BoundTask(step, req, lambda i, s, m: ctx.emit("U", i, s, jsonable(m)))
        if isinstance(step, MapStep):
            return [fn(me, *x) if step.star else fn(me, x) for x in step.items]
        return fn(me, *args, **kwargs)
    if isinstance(step, MapStep):
        return [fn(*x) if step.star else fn(x) for x in step.items]
    return fn(*args, **kwargs)


def _autoretry(opts: dict[str, Any], exc: BaseException, retries: int) -> float | None:
    """The countdown of an automatic retry of ``exc``, or None if there is none."""
    kinds = opts.get("autoretry_for")
    if not kinds or not isinstance(exc, kinds):
        return None
    if opts.get("dont_autoretry_for") and isinstance(exc, opts["dont_autoretry_for"]):
        return None
    limit = opts.get("max_retries", 3)
    if limit is not None and retries >= limit:
        return None
    return retry_delay(opts, retries)


def run_step(step: Any, inp: Any, ctx: Ctx, prepend: tuple | None = None) -> Any:
    """Run a task call with its retries; record and report its outcome; run its callbacks."""
    if step.id in ctx.known:  # succeeded in an earlier run: reuse, never run it twice
        result = ctx.record(step.id, ctx.known[step.id])
        ctx.emit("D", step.id, "SUCCESS", "reused")
        _callbacks(step, result, ctx)
        return result
    if prepend is None:
        value, cause = value_of(inp)
        if cause is not None:
            return skip(step, cause, ctx)
        prepend = () if value is NO_INPUT or getattr(step, "immutable", True) else \
            (handoff(value),)
    opts = step.opts
    args = prepend + step.args if isinstance(step, Step) else ()
    kwargs = step.kwargs if isinstance(step, Step) else {}
    if "expires_at" in opts and time.time() > opts["expires_at"]:
        return skip(step, Revoked("expired before it started"), ctx)
    if "not_before" in opts and ctx.wait(opts["not_before"] - time.time()):
        return skip(step, Revoked(), ctx)
    retries = 0
    tid = threading.get_ident()
    while True:
        with _lock:  # admit the step atomically with respect to revoke_local()
            if ctx.token in REVOKED:
                admitted = False
            else:
                admitted = True
                RUNNING.setdefault(ctx.token, set()).add(tid)
                ctx.emit("S", step.id, retries, ctx.host)
        if not admitted:
            return skip(step, Revoked(), ctx)
        try:
            if "time_limit" in opts or "soft_time_limit" in opts:
                with TimeLimits(opts.get("soft_time_limit"), opts.get("time_limit")):
                    result = _call(step, args, kwargs, retries, ctx)
            else:
                result = _call(step, args, kwargs, retries, ctx)
            if not ctx.eager:
                check_sendable(result, step.name)
        except Retry as r:
            delay = float(r.when or 0)
            ctx.emit("R", step.id, repr(r.exc) if r.exc is not None else "retry", delay)
        except BaseException as e:  # noqa: BLE001 - every failure is reported, not lost
            if isinstance(e, TaskRevokedError) and ctx.revoked():
                return skip(step, Revoked("revoked while running (terminate=True)"), ctx)
            if isinstance(e, (KeyboardInterrupt, SystemExit)) and not ctx.eager:
                raise
            delay_or_none = _autoretry(opts, e, retries)
            if delay_or_none is None:
                failed = ctx.record(step.id, failed_from(e, step.id, step.name, not ctx.eager))
                ctx.emit("D", step.id, "FAILURE", f"{type(e).__name__}: {e}"[:300],
                         *_inline(ctx, step.id, failed))
                _callbacks(step, failed, ctx)
                return failed
            delay = delay_or_none
            ctx.emit("R", step.id, f"{type(e).__name__}: {e}"[:300], delay)
        else:
            ctx.record(step.id, result)
            ctx.emit("D", step.id, "SUCCESS", None, *_inline(ctx, step.id, result))
            _callbacks(step, result, ctx)
            return result
        finally:
            with _lock:  # a run's entry goes with its last running step (workers live long)
                running = RUNNING.get(ctx.token)
                if running is not None:
                    running.discard(tid)
                    if not running:
                        del RUNNING[ctx.token]
        retries += 1
        if ctx.eager:  # as Celery's eager mode: a retry runs again at once, no countdown
            delay = 0.0
        if ctx.wait(delay):
            return skip(step, Revoked(), ctx)
