"""Walking a canvas: freezing ids into every node, and visiting nodes (stdlib only).

>>> from nbcanvas import App, group
>>> app = App("doc-walk")
>>> @app.task
... def inc(x):
...     return x + 1
>>> g = group(inc.s(1), inc.s(2)).freeze()
>>> g.id is not None and all(t.id for t in g.tasks)
True
>>> sum(1 for _ in iter_nodes(g))
3
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Signature, no_gc
from .ids import IdPool
from .primitives import branch, chain, chord, chunks, foreach, group

__all__ = ["freeze", "iter_nodes", "count_nodes", "rekey", "no_gc", "title"]


def freeze(sig: Signature, _id: str | None = None) -> Any:
    """A copy of ``sig`` in which every node has an id; ``_id`` names the result of the whole."""
    with no_gc():
        return _freeze(sig, _id, IdPool())


def _cbs(sig: Signature, ids: IdPool) -> dict[str, Any]:
    if not sig.links and not sig.errbacks:
        return {}
    return {"links": tuple(_freeze(c, None, ids) for c in sig.links),
            "errbacks": tuple(_freeze(c, None, ids) for c in sig.errbacks)}


def _freeze(sig: Signature, _id: str | None, ids: IdPool) -> Any:
    if type(sig) is Signature and not sig.links and not sig.errbacks:  # most nodes of a canvas
        return sig._with_id(_id or sig.options.get("task_id") or sig._id or ids())
    want = _id or sig.options.get("task_id")
    if isinstance(sig, chain):
        steps = sig.tasks
        if not steps:
            return sig._replace(_id=want or sig._id or ids(), **_cbs(sig, ids))
        new = [_freeze(s, None, ids) for s in steps[:-1]]
        new.append(_freeze(steps[-1], want, ids))
        return sig._replace(tasks=new, **_cbs(sig, ids))
    if isinstance(sig, chord):
        body = None if sig.body is None else _freeze(sig.body, want, ids)
        return sig._replace(header=_freeze(sig.header, None, ids), body=body, **_cbs(sig, ids))
    if isinstance(sig, chunks):
        return _freeze(sig.group(), want, ids)
    fields: dict[str, Any] = {"_id": want or sig._id or ids()}
    if isinstance(sig, group):
        fields["tasks"] = tuple(_freeze(t, None, ids) for t in sig.tasks)
    elif isinstance(sig, foreach):
        fields["body"] = _freeze(sig.body, None, ids)
    elif isinstance(sig, branch):
        fields["cond"] = _freeze(sig.cond, None, ids)
        fields["then"] = _freeze(sig.then, None, ids)
        fields["otherwise"] = None if sig.otherwise is None else _freeze(sig.otherwise, None, ids)
    return sig._replace(**fields, **_cbs(sig, ids))


def iter_nodes(sig: Signature, include_callbacks: bool = True) -> Iterator[Signature]:
    """Every node of the canvas, parents before children (iterative: no recursion limit)."""
    stack = [sig]
    while stack:
        node = stack.pop()
        yield node
        kids = list(node.children())
        if include_callbacks:
            kids += [*node.links, *node.errbacks]
        stack.extend(reversed(kids))


def title(sig: Signature) -> str:
    """``chord: add → inc → tsum``: the canvas's kind and its first three task names (the
    name of a workflow in records, listings and live views).

    >>> from nbcanvas import App, chain
    >>> app = App("title-doc", set_as_current=False)
    >>> add = app.task(lambda x, y: x + y, name="add")
    >>> title(chain(add.s(1, 1), add.s(2)))
    'chain: add'
    """
    names: list[str] = []
    for node in iter_nodes(sig, include_callbacks=False):
        if node._type is not None and node.name not in names:
            names.append(node.name)
            if len(names) == 3:
                break
    kind = sig.kind if sig.kind != "signature" else ""
    return (f"{kind}: " if kind else "") + " → ".join(names)


def count_nodes(sig: Signature) -> int:
    """How many nodes ``iter_nodes`` yields."""
    return sum(1 for _ in iter_nodes(sig))


def rekey(sig: Signature, suffix: str) -> Any:
    """A copy of a frozen canvas with ``:suffix`` added to every id (ids stay unique and
    predictable for copies made at run time, e.g. one per ``foreach`` element)."""
    def new(s: Signature) -> Any:
        fields: dict[str, Any] = {}
        if s._id is not None:
            fields["_id"] = f"{s._id}:{suffix}"
        if s.links or s.errbacks:
            fields["links"] = tuple(new(c) for c in s.links)
            fields["errbacks"] = tuple(new(c) for c in s.errbacks)
        if isinstance(s, (chain, group)):
            fields["tasks"] = tuple(new(t) for t in s.tasks)
        elif isinstance(s, chord):
            fields["header"] = new(s.header)
            fields["body"] = None if s.body is None else new(s.body)
        elif isinstance(s, foreach):
            fields["body"] = new(s.body)
        elif isinstance(s, branch):
            fields.update(cond=new(s.cond), then=new(s.then),
                          otherwise=None if s.otherwise is None else new(s.otherwise))
        return s._replace(**fields)
    return new(sig)
