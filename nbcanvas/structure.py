"""Parent and child links between the results of a workflow, read from its structure (run stage).

Works from the ``to_dict`` form, so a workflow re-attached from another process (whose task
functions may not be registered here) has ``.parent`` and ``.children`` too.
"""
from __future__ import annotations

from typing import Any

__all__ = ["result_id", "parent_map", "parent_of", "children_of"]


def result_id(d: dict[str, Any]) -> str | None:
    """The id whose result is the result of the canvas ``d``."""
    kind = d.get("type")
    if kind == "chain":
        return result_id(d["tasks"][-1]) if d.get("tasks") else d.get("id")
    if kind == "chord":
        return result_id(d["body"]) if d.get("body") else d.get("id")
    return d.get("id")


def parent_map(structure: dict[str, Any]) -> dict[str, str]:
    """child result id -> parent result id (the previous chain step, a chord's header)."""
    out: dict[str, str] = {}
    stack = [structure]
    while stack:
        d = stack.pop()
        kind = d.get("type")
        if kind == "chain":
            steps = d.get("tasks", [])
            for prev, cur in zip(steps, steps[1:]):
                pid, cid = result_id(prev), _entry_ids(cur)
                for c in cid:
                    if pid is not None and c is not None:
                        out[c] = pid
        elif kind == "chord" and d.get("body"):
            hid = d["header"].get("id")
            for c in _entry_ids(d["body"]):
                if hid is not None and c is not None:
                    out[c] = hid
        for key in ("tasks", "links", "errbacks"):
            stack.extend(d.get(key) or [])
        for key in ("header", "body", "cond", "then", "otherwise"):
            if isinstance(d.get(key), dict):
                stack.append(d[key])
    return out


def _entry_ids(d: dict[str, Any]) -> list[str | None]:
    """Ids of the nodes that receive a canvas's input (its result id for a single task)."""
    kind = d.get("type")
    if kind == "chain" and d.get("tasks"):
        return _entry_ids(d["tasks"][0]) if len(d["tasks"]) > 1 else [result_id(d)]
    if kind == "chord":
        return [result_id(d)]
    return [d.get("id")]


def parent_of(handle: Any, id: str) -> str | None:
    cache = getattr(handle, "_parents", None)
    if cache is None:
        cache = parent_map(handle.structure)
        handle._parents = cache
    return cache.get(id)


def children_of(handle: Any, id: str) -> list[str]:
    """Callbacks of ``id`` and nodes made at run time under it."""
    kids = [k for k, row in handle.nodes.items() if row[3] == id and row[0] == "callback"]
    kids += [k for k, row in list(handle.store.nodes.items())
             if row[3] == id and k not in handle.nodes]
    return kids
