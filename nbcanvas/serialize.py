"""Canvas <-> plain JSON types, with a type tag and a schema version (stdlib only).

``from_dict`` resolves task names through the registry and nothing else: it never imports a
module or evaluates a string.

>>> import json
>>> from nbcanvas import App, Signature
>>> app = App("doc-ser")
>>> @app.task
... def add(x, y):
...     return x + y
>>> c = add.s(1, 2) | add.s((3, 4)[0])
>>> d = json.loads(json.dumps(c.to_dict()))
>>> Signature.from_dict(d) == c, d["type"], d["nbcanvas"]
(True, 'chain', 1)
>>> Signature.from_dict({"nbcanvas": 1, "type": "signature", "task": "os.system", "args": ["ls"]})
Traceback (most recent call last):
...
nbcanvas.errors.NotRegistered: no task named 'os.system'...
"""
from __future__ import annotations

import builtins
import sys
from collections.abc import Mapping
from typing import Any, Final

from .app import lookup_task
from .canvas import Signature, branch, chain, chord, chunks, foreach, group, xmap

__all__ = ["SCHEMA_VERSION", "to_dict", "from_dict", "encode_value", "decode_value"]

SCHEMA_VERSION: Final = 1
_JSON_SCALARS = (str, int, float, bool, type(None))


def encode_value(v: Any, where: str, strict: bool = True) -> Any:
    """A JSON-safe form of ``v``; tuples and non-str-keyed dicts are tagged so they come back."""
    if isinstance(v, _JSON_SCALARS):
        return v
    if isinstance(v, list):
        return [encode_value(x, where, strict) for x in v]
    if isinstance(v, tuple):
        return {"__tuple__": [encode_value(x, where, strict) for x in v]}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in v):
            return {k: encode_value(x, where, strict) for k, x in v.items()}
        return {"__dict__": [[encode_value(k, where, strict), encode_value(x, where, strict)]
                             for k, x in v.items()]}
    if isinstance(v, type) and issubclass(v, BaseException):
        return {"__exception__": f"{v.__module__}.{v.__qualname__}"}
    if isinstance(v, Signature):
        return {"__signature__": to_dict(v, strict=strict, _top=False)}
    if strict:
        raise TypeError(f"{where}: {type(v).__name__} value {v!r:.80} has no JSON form; "
                        f"to_dict() takes JSON types, tuples and signatures only "
                        f"(to_dict(strict=False) records its repr instead)")
    return {"__repr__": repr(v)[:200]}


def decode_value(v: Any) -> Any:
    """Inverse of :func:`encode_value` (``__repr__`` placeholders stay strings)."""
    if isinstance(v, list):
        return [decode_value(x) for x in v]
    if isinstance(v, dict):
        if len(v) == 1:
            (k, x), = v.items()
            if k == "__tuple__":
                if not isinstance(x, list):
                    raise ValueError(f"from_dict: a __tuple__ value should be a list, "
                                     f"got {x!r:.60}")
                return tuple(decode_value(y) for y in x)
            if k == "__dict__":
                if not (isinstance(x, list) and all(isinstance(p, list) and len(p) == 2
                                                    for p in x)):
                    raise ValueError(f"from_dict: a __dict__ value should be a list of "
                                     f"[key, value] pairs, got {x!r:.60}")
                out = {}
                for a, b in x:
                    key = decode_value(a)
                    try:
                        out[key] = decode_value(b)
                    except TypeError:
                        raise ValueError(f"from_dict: unhashable __dict__ key {key!r:.60}") \
                            from None
                return out
            if k == "__exception__":
                return _exception_type(x)
            if k == "__signature__":
                return from_dict(x)
            if k == "__repr__":
                return f"<{x}>"
        return {k: decode_value(x) for k, x in v.items()}
    return v


def _exception_type(path: str) -> type:
    mod, _, name = str(path).rpartition(".")
    owner = builtins if mod == "builtins" else sys.modules.get(mod)  # never import
    t = getattr(owner, name, None) if owner is not None else None
    if not (isinstance(t, type) and issubclass(t, BaseException)):
        raise ValueError(f"from_dict: exception type {path!r} is not loaded here")
    return t


#: types whose values are their own JSON form (exact types: subclasses take the long way)
_PLAIN: Final = frozenset(_JSON_SCALARS)


def _encoded(values: Any, sig: Signature, what: str, strict: bool) -> list[Any]:
    """The JSON forms of ``values``: plain values as they are (no label is made for them),
    the rest through :func:`encode_value`, which names ``sig`` when one cannot be encoded."""
    if all(type(v) in _PLAIN for v in values):
        return list(values)
    where = f"{sig.kind} {sig.name!r} {what}"
    return [encode_value(v, f"{where} {i}", strict) for i, v in enumerate(values)]


def _encoded_map(values: Mapping[str, Any], sig: Signature, what: str,
                 strict: bool) -> dict[str, Any]:
    if all(type(v) in _PLAIN for v in values.values()):
        return dict(values)
    where = f"{sig.kind} {sig.name!r} {what}"
    return {k: encode_value(a, f"{where} {k!r}", strict) for k, a in values.items()}


def _common(sig: Signature, strict: bool) -> dict[str, Any]:
    d: dict[str, Any] = {"type": sig.kind}
    if type(sig) in (Signature, xmap, chunks):
        d["task"] = sig.task
    if sig.args:
        d["args"] = _encoded(sig.args, sig, "argument", strict)
    if sig.kwargs:
        d["kwargs"] = _encoded_map(sig.kwargs, sig, "argument", strict)
    if sig.options:
        d["options"] = _encoded_map(sig.options, sig, "option", strict)
    if sig.immutable and type(sig) is Signature:
        d["immutable"] = True
    if sig._id is not None:
        d["id"] = sig._id
    if sig.links:
        d["links"] = [to_dict(c, strict, _top=False) for c in sig.links]
    if sig.errbacks:
        d["errbacks"] = [to_dict(c, strict, _top=False) for c in sig.errbacks]
    return d


def to_dict(sig: Signature, strict: bool = True, _top: bool = True) -> dict[str, Any]:
    """``sig`` as plain JSON types. ``strict=False`` records reprs of non-JSON arguments."""
    d = _common(sig, strict)
    if isinstance(sig, (chain, group)):
        d["tasks"] = [to_dict(t, strict, _top=False) for t in sig.tasks]
    elif isinstance(sig, chord):
        d["header"] = to_dict(sig.header, strict, _top=False)
        d["body"] = None if sig.body is None else to_dict(sig.body, strict, _top=False)
    elif isinstance(sig, xmap):
        d["items"] = [encode_value(x, f"{sig.name}.map item", strict) for x in sig.items]
        d["star"] = sig.star
    elif isinstance(sig, chunks):
        d["items"] = [encode_value(x, f"{sig.name}.chunks item", strict) for x in sig.items]
        d["n"] = sig.n
    elif isinstance(sig, foreach):
        d["body"] = to_dict(sig.body, strict, _top=False)
    elif isinstance(sig, branch):
        d["cond"] = to_dict(sig.cond, strict, _top=False)
        d["then"] = to_dict(sig.then, strict, _top=False)
        d["otherwise"] = None if sig.otherwise is None else to_dict(sig.otherwise, strict, _top=False)
    elif type(sig) is not Signature:
        raise TypeError(f"to_dict: unknown canvas type {type(sig).__name__}")
    if _top:
        d = {"nbcanvas": SCHEMA_VERSION, **d}
    return d


def _need(d: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise ValueError(f"from_dict: {where} has no {key!r} field")
    v = d[key]
    if not isinstance(v, typ):
        raise ValueError(f"from_dict: {where} field {key!r} should be {typ}, got {v!r:.60}")
    return v


def _optional(d: Mapping[str, Any], key: str, typ: type | tuple[type, ...], where: str,
              default: Any) -> Any:
    return _need(d, key, typ, where) if key in d else default


def from_dict(d: Mapping[str, Any]) -> Any:
    """Rebuild a canvas from :func:`to_dict` output (validated; task names via the registry)."""
    if not isinstance(d, Mapping):
        raise ValueError(f"from_dict: expected a dict, got {type(d).__name__}")
    version = d.get("nbcanvas", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise ValueError(f"from_dict: schema version {version!r} is not supported "
                         f"(this nbcanvas reads version {SCHEMA_VERSION})")
    kind = _need(d, "type", str, "canvas")
    args = tuple(decode_value(a) for a in _optional(d, "args", list, kind, []))
    kwargs = {k: decode_value(v) for k, v in _optional(d, "kwargs", Mapping, kind, {}).items()}
    options = {k: decode_value(v) for k, v in _optional(d, "options", Mapping, kind, {}).items()}
    for what, keys in (("kwargs", kwargs), ("options", options)):
        if not all(isinstance(k, str) for k in keys):
            raise ValueError(f"from_dict: {kind} field {what!r} should have str keys")
    if kind == "signature":
        t = lookup_task(_need(d, "task", str, "signature"))
        sig: Signature = Signature._of(t, args, kwargs, options, bool(d.get("immutable", False)))
    elif kind == "chain":
        sig = chain(*[from_dict(t) for t in _need(d, "tasks", list, "chain")], **options)
    elif kind == "group":
        sig = group([from_dict(t) for t in _need(d, "tasks", list, "group")], **options)
    elif kind == "chord":
        body = d.get("body")
        sig = chord(from_dict(_need(d, "header", Mapping, "chord")),
                    None if body is None else from_dict(body), **options)
    elif kind == "xmap":
        t = lookup_task(_need(d, "task", str, "xmap"))
        sig = xmap(t, [decode_value(x) for x in _need(d, "items", list, "xmap")],
                   star=bool(d.get("star")))
        sig = sig.set(**options) if options else sig
    elif kind == "chunks":
        t = lookup_task(_need(d, "task", str, "chunks"))
        items = [decode_value(x) for x in _need(d, "items", list, "chunks")]
        if not all(isinstance(x, (list, tuple)) for x in items):
            raise ValueError("from_dict: chunks items should be lists of arguments")
        sig = chunks(t, items, _need(d, "n", int, "chunks"))
        sig = sig.set(**options) if options else sig
    elif kind == "foreach":
        sig = foreach(from_dict(_need(d, "body", Mapping, "foreach")), **options)
    elif kind == "branch":
        other = d.get("otherwise")
        sig = branch(from_dict(_need(d, "cond", Mapping, "branch")),
                     from_dict(_need(d, "then", Mapping, "branch")),
                     None if other is None else from_dict(other), **options)
    else:
        raise ValueError(f"from_dict: unknown canvas type {kind!r}")
    changes: dict[str, Any] = {}
    if kind in ("foreach", "branch") and args:
        changes["args"] = args
    if "id" in d:
        changes["_id"] = _need(d, "id", str, kind)
    if "links" in d:
        changes["links"] = tuple(from_dict(c) for c in _need(d, "links", list, kind))
    if "errbacks" in d:
        changes["errbacks"] = tuple(from_dict(c) for c in _need(d, "errbacks", list, kind))
    return sig._replace(**changes) if changes else sig
