"""Steps decided at run time: ``foreach`` fans out over a result, ``branch`` picks a canvas.

Both run inside the workflow's own unit: a flat canvas runs right here, and so does one
whose tasks the client knows to be tiny (all of them less work than one dask task: see
``compile.lower.cheap_in_place``); any other with fan-out is lowered into units and run by
``ctx.execute`` (on the cluster: submitted from the worker, no client round trip). Nodes
made at run time are announced with ``N`` events.
"""
from __future__ import annotations

from typing import Any

from ..canvas import Signature, foreach, group, iter_nodes, rekey
from ..compile.flat import is_flat, to_prog
from ..compile.lower import cheap_in_place
from ..compile.programs import Dyn
from .outcome import Failed, GroupOutcome, NotTaken, Revoked, Skipped, failed_from, value_of

__all__ = ["run_dynamic", "skip_canvas", "run_canvas"]


def skip_canvas(sig: Signature, cause: Any, ctx: Any) -> None:
    """Record every node of ``sig`` as not run (a branch not taken, a skipped foreach)."""
    from .interp import _reason, _state_for
    state, reason = _state_for(cause), _reason(cause)
    for node in iter_nodes(sig):
        if isinstance(node, foreach):
            ctx.record(node.id, Skipped(cause))
            ctx.emit("D", node.id, state, reason)
            continue  # its body is a template: it has no nodes until it runs
        if node.kind == "chain" or node.id is None:
            continue
        ctx.record(node.id, Skipped(cause))
        if node.kind != "group":
            ctx.emit("D", node.id, state, reason)


def run_canvas(sig: Signature, value: Any, ctx: Any) -> Any:
    """Run ``sig`` with ``value`` prepended to its entry tasks; return its outcome."""
    from .interp import NO_INPUT, run_prog
    if value is not NO_INPUT:
        sig = sig.clone((value,))
    if is_flat(sig):
        return run_prog(to_prog(sig, False, {}), NO_INPUT, ctx)
    if cheap_in_place(sig, ctx.tiny):  # less work than one hop: no fan-out through dask
        from . import execute_local
        return execute_local(sig, ctx, in_place=True)
    return ctx.execute(sig, ctx)


def _foreach(prog: Dyn, value: Any, ctx: Any) -> Any:
    try:
        items = list(value)
    except TypeError as e:
        raise TypeError(f"foreach needs an iterable input, got {type(value).__name__}") from e
    body = prog.canvas.body
    members, todo, outcomes = [], [], {}
    for i, x in enumerate(items):
        m = rekey(body, str(i))
        members.append(m)
        _announce(m, prog.id, i, ctx)
        if m.id in ctx.known and type(m) is Signature:  # succeeded in an earlier run
            outcomes[i] = ctx.record(m.id, ctx.known[m.id])
            ctx.emit("D", m.id, "SUCCESS", "reused")
        else:
            todo.append(i)
    if todo:
        from .interp import NO_INPUT
        grp = group([members[i] for i in todo])._replace(_id=f"{prog.id}:all")
        out = run_canvas(_with_items(grp, [items[i] for i in todo]), NO_INPUT, ctx)
        run = out.items if isinstance(out, GroupOutcome) else [out]
        outcomes.update(zip(todo, run))
    return GroupOutcome([outcomes[i] for i in range(len(items))])


def _announce(element: Signature, parent: str, index: int, ctx: Any) -> None:
    """``N`` events for every node of one foreach element (its steps, not only its top)."""
    for node in iter_nodes(element):
        if node.kind != "chain" and node.id is not None:
            ctx.emit("N", node.id, parent, node.name, node.kind, index)


def _with_items(grp: Any, items: list[Any]) -> Any:
    """The group whose member ``i`` gets ``items[i]`` prepended."""
    return grp._replace(tasks=tuple(t.clone((x,)) for t, x in zip(grp.tasks, items)))


def _branch(prog: Dyn, value: Any, ctx: Any) -> Any:
    b = prog.canvas
    verdict = run_canvas(b.cond, value, ctx)
    v, cause = value_of(verdict)
    if cause is not None:
        for part in (b.then, b.otherwise):
            if part is not None:
                skip_canvas(part, cause, ctx)
        return Skipped(cause)
    taken, other = (b.then, b.otherwise) if v else (b.otherwise, b.then)
    ctx.emit("B", prog.id, "then" if v else "otherwise")
    if other is not None:
        skip_canvas(other, NotTaken("branch not taken"), ctx)
    return value if taken is None else run_canvas(taken, value, ctx)


def run_dynamic(prog: Dyn, inp: Any, ctx: Any) -> Any:
    """Run a ``foreach`` or ``branch`` step; record and report it like any step."""
    from .interp import NO_INPUT, _inline, skip
    if prog.input:
        inp = prog.input[0]
    value, cause = value_of(inp)
    if cause is not None:
        return skip(prog, cause, ctx)
    if ctx.revoked():
        return skip(prog, Revoked(), ctx)
    ctx.emit("S", prog.id, 0, ctx.host)
    try:
        if prog.kind == "foreach":
            if value is NO_INPUT:
                raise TypeError("foreach has no input to map over")
            out = _foreach(prog, value, ctx)
        else:
            out = _branch(prog, value, ctx)
    except Exception as e:  # noqa: BLE001 - reported as this step's failure
        failed = ctx.record(prog.id, failed_from(e, prog.id, prog.kind, not ctx.eager))
        ctx.emit("D", prog.id, "FAILURE", f"{type(e).__name__}: {e}"[:300],
                 *_inline(ctx, prog.id, failed))
        return failed
    ctx.record(prog.id, out)
    _, cause = value_of(out)
    if cause is None:  # a small workflow result rides in the event (no gather round trip)
        ctx.emit("D", prog.id, "SUCCESS", None, *_inline(ctx, prog.id, out))
    elif isinstance(cause, Failed):
        ctx.emit("D", prog.id, "FAILURE", f"{cause.name} failed", *_inline(ctx, prog.id, out))
    else:
        ctx.emit("D", prog.id, "REVOKED" if isinstance(cause, Revoked) else "NOT_RUN",
                 getattr(cause, "reason", ""))
    return out
