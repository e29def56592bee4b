"""Frozen canvas -> program, for the parts that run in one place (compile stage, stdlib only).

Also checks, before anything is sent, that every task call can be completed: a step that
will get its parent's result must accept one more argument, a first step must be complete.
"""
from __future__ import annotations

import time
from typing import Any, Final

from ..canvas import Signature, branch, chain, chord, foreach, group, xmap
from .programs import RUN_OPTIONS, Dyn, MapStep, Par, Prog, Seq, Step

__all__ = ["to_prog", "is_flat", "split_options", "ROUTING_OPTIONS"]

ROUTING_OPTIONS: Final = frozenset({"priority", "resources", "workers", "queue"})


def split_options(sig: Signature, inherited: dict[str, Any]) -> tuple[dict, dict]:
    """(run options, routing options) of a node: task defaults < containers < the call's own."""
    task_opts = sig._type.options if sig._type is not None else {}
    merged = {**task_opts, **inherited, **sig.options} if (task_opts or inherited) else sig.options
    run = {k: v for k, v in merged.items() if k in RUN_OPTIONS}
    route = {k: v for k, v in merged.items() if k in ROUTING_OPTIONS}
    if "countdown" in run or "eta" in run or "expires" in run:
        _absolute_times(run)
    if "max_retries" not in run and sig._type is not None:
        run["max_retries"] = sig._type.max_retries
    return run, route


def _epoch(v: Any, now: float) -> float:
    if hasattr(v, "timestamp"):
        return float(v.timestamp())
    return now + float(v)  # seconds from now


def _absolute_times(run: dict[str, Any]) -> None:
    """countdown/eta/expires -> absolute times, fixed when the workflow is sent."""
    now = time.time()
    if run.get("countdown") is not None:
        run["not_before"] = now + float(run.pop("countdown"))
    if run.get("eta") is not None:
        run["not_before"] = _epoch(run.pop("eta"), 0.0)
    if run.get("expires") is not None:
        run["expires_at"] = _epoch(run.pop("expires"), now)


def _inherit(sig: Signature, inherited: dict[str, Any]) -> dict[str, Any]:
    own = {k: v for k, v in sig.options.items() if k not in ("task_id", "shadow")}
    return {**inherited, **own} if own else inherited


def is_flat(sig: Signature) -> bool:
    """True if ``sig`` has nothing that should run in parallel (no group of 2+, no foreach)."""
    if type(sig) is Signature or isinstance(sig, xmap):
        return True
    if isinstance(sig, chain):
        return all(is_flat(t) for t in sig.tasks)
    if isinstance(sig, group):
        return len(sig.tasks) <= 1 and all(is_flat(t) for t in sig.tasks)
    if isinstance(sig, chord):
        return is_flat(sig.header) and (sig.body is None or is_flat(sig.body))
    if isinstance(sig, branch):
        return all(is_flat(c) for c in sig.children())
    return False  # foreach fans out


def _callbacks(sig: Signature, inherited: dict[str, Any]) -> tuple[tuple, tuple]:
    links = tuple(to_prog(c, True, {}) for c in sig.links)
    errbacks = tuple(_errback(c) for c in sig.errbacks)
    return links, errbacks


def _errback(sig: Signature) -> Prog:
    """An errback gets the exception, and the traceback text too if it takes one more
    positional argument (``handle_error(self, exc, traceback)``)."""
    spec = sig._type.argspec if type(sig) is Signature and not sig.immutable else None
    if spec is None:
        return to_prog(sig, True, {})
    try:
        spec.check(sig.task, sig.args, sig.kwargs, extra=1, complete=True)
        return to_prog(sig, True, {})
    except TypeError as first:
        try:
            spec.check(sig.task, sig.args, sig.kwargs, extra=2, complete=True)
        except TypeError:
            raise first from None
    step = to_prog(sig.clone(args=(None,)), True, {})  # checked with the extra slot filled
    assert isinstance(step, Step)
    step.args = sig.args
    step.opts = {**step.opts, "errback_traceback": True}
    return step


def to_prog(sig: Signature, has_input: bool, inherited: dict[str, Any]) -> Prog:
    """The program for a frozen canvas run in one place, checking every call's arguments."""
    links, errbacks = _callbacks(sig, inherited)
    if type(sig) is Signature:
        run, _ = split_options(sig, inherited)
        spec = sig._type.argspec
        if spec is not None:
            spec.check(sig.task, sig.args, sig.kwargs,
                       extra=1 if has_input and not sig.immutable else 0, complete=True)
        return Step(sig.id, sig.name, sig._type.run, sig._type.bind, sig.args, sig.kwargs,
                    sig.immutable, run, links, errbacks)
    if isinstance(sig, xmap):
        run, _ = split_options(sig, inherited)
        return MapStep(sig.id, sig.name, sig._type.run, sig._type.bind, sig.items, sig.star,
                       run, links, errbacks)
    inner = _inherit(sig, inherited)
    if isinstance(sig, chain):
        if not sig.tasks:
            raise ValueError("an empty chain cannot run: add a signature to it")
        items = []
        for i, t in enumerate(sig.tasks):
            items.append(to_prog(t, has_input or i > 0, inner))
        return Seq(sig.id, tuple(items), links, errbacks)
    if isinstance(sig, group):
        return Par(sig.id, tuple(to_prog(t, has_input, inner) for t in sig.tasks), links, errbacks)
    if isinstance(sig, chord):
        if sig.body is None:
            raise ValueError("a chord without a body cannot run: chord(header)(body)")
        hdr = to_prog(sig.header, has_input, inner)
        return Seq(sig.id, (hdr, to_prog(sig.body, True, inner)), links, errbacks)
    if isinstance(sig, (branch, foreach)):
        check_dynamic(sig, has_input)
        return Dyn(sig.id, sig.kind, sig, sig.args, links, errbacks)
    raise TypeError(f"cannot compile {type(sig).__name__}")


def check_dynamic(sig: Signature, has_input: bool) -> None:
    """Check the parts of a ``foreach``/``branch`` now, though they are lowered at run time."""
    fed = has_input or bool(sig.args)
    if isinstance(sig, foreach):
        if not fed:
            raise TypeError(f"{sig!r} has nothing to map over: use it after a step, or "
                            f"give the sequence: foreach(...).delay(items)")
        to_prog(sig.body, True, {}) if is_flat(sig.body) else None
    elif isinstance(sig, branch):
        for part in sig.children():
            if is_flat(part):
                to_prog(part, fed, {})
