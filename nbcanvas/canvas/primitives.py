"""chain, group, chord, xmap, chunks, foreach and branch: canvases built from signatures.

All are immutable values (subclasses of :class:`Signature`); none of them runs anything.

>>> from nbcanvas import App, chain, group, chord
>>> app = App("doc-prim")
>>> @app.task
... def add(x, y):
...     return x + y
>>> @app.task
... def tsum(xs):
...     return sum(xs)
>>> add.s(2, 2) | add.s(4)
add.s(2, 2) | add.s(4)
>>> group(add.s(i, i) for i in range(3)) | tsum.s()
chord([add.s(0, 0), add.s(1, 1), add.s(2, 2)], tsum.s())
>>> chord([add.s(1, 1)])(tsum.s()).apply().get()
2
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .base import Signature, _suffix, maybe_signature, no_gc
from ..options import check_call_options

if TYPE_CHECKING:
    from ..task import Task

__all__ = ["chain", "group", "chord", "xmap", "chunks", "foreach", "branch", "check_entry"]

_BASE = dict(args=(), kwargs={}, immutable=False, links=(), errbacks=(), _id=None, _type=None)
_SHOW = 10  # members shown in a group's repr


def _opts(options: dict[str, Any], what: str) -> dict[str, Any]:
    link, link_error = options.pop("link", None), options.pop("link_error", None)
    if link is not None or link_error is not None:
        raise TypeError(f"{what}(): pass link/link_error to .link()/.link_error() or apply_async()")
    return check_call_options(options, where=what) if options else {}


def _members(items: tuple[Any, ...], what: str) -> tuple[Any, ...]:
    if len(items) == 1 and not isinstance(items[0], Signature):
        only = items[0]
        if isinstance(only, (str, bytes)) or not isinstance(only, Iterable):
            maybe_signature(only, f"{what}() argument")
        items = tuple(only)
    for i, t in enumerate(items):
        if not isinstance(t, Signature):
            maybe_signature(t, f"{what}() member {i}")
    return items


def check_entry(sig: Signature, extra: int) -> None:
    """Check that the entry tasks of ``sig`` accept ``extra`` more prepended arguments."""
    if sig.immutable or extra == 0:
        return
    if type(sig) is Signature:
        spec = sig._type.argspec if sig._type is not None else None
        if spec is not None:
            spec.check(sig.task, sig.args, sig.kwargs, extra=extra)
    elif isinstance(sig, chain):
        if sig.tasks:
            check_entry(sig.tasks[0], extra)
    elif isinstance(sig, group):
        for m in sig.tasks:
            check_entry(m, extra)
    elif isinstance(sig, chord):
        check_entry(sig.header, extra)
    elif isinstance(sig, branch):
        check_entry(sig.cond, extra)


class chain(Signature):
    """Run signatures one after another; each result is prepended to the next one's arguments.

    ``chain(a, b, c)``, ``chain([a, b, c])`` or ``a | b | c``. Nested chains flatten.
    """

    __slots__ = ("_steps", "_n", "_tuple")
    kind = "chain"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        opts = _opts(options, "chain")
        steps: list[Signature] = []
        for t in _members(tasks, "chain"):
            if isinstance(t, chain) and _plain(t):
                if steps and t.tasks:
                    check_entry(t.tasks[0], 1)
                steps.extend(t.tasks)
            else:
                if steps:
                    check_entry(t, 1)
                steps.append(t)
        obj = chain._from_steps(steps, len(steps), **{**_BASE, "options": opts})
        for f in ("task", *Signature.__slots__[1:], *chain.__slots__):
            object.__setattr__(self, f, getattr(obj, f))

    @classmethod
    def _from_steps(cls, steps: list[Signature], n: int, **fields: Any) -> chain:
        fields.setdefault("options", {})
        for k, v in _BASE.items():
            fields.setdefault(k, v)
        return cls._new(task="nbcanvas.chain", _steps=steps, _n=n, _tuple=None, **fields)

    @property
    def tasks(self) -> tuple[Signature, ...]:
        """The steps, in order."""
        if self._tuple is None:
            object.__setattr__(self, "_tuple", tuple(self._steps[:self._n]))
        return self._tuple  # type: ignore[return-value]

    def _replace(self, **changes: Any) -> Any:
        if "tasks" in changes:
            steps = list(changes.pop("tasks"))
            changes.update(_steps=steps, _n=len(steps), _tuple=None)
        return super()._replace(**changes)

    @staticmethod
    def _join(a: Signature, b: Signature) -> Signature:
        """``a | b`` in amortised O(1) for ``chain | sig`` (building a chain by ``|=`` is linear)."""
        if isinstance(a, group) and type(b) is Signature or isinstance(a, group) and \
                isinstance(b, (xmap, foreach)):
            return chord(a, b)
        if isinstance(a, chain) and _plain(a):
            if isinstance(b, chain) and _plain(b):
                return chain(*a.tasks, *b.tasks)
            if a._n:
                check_entry(b, 1)
            steps = a._steps
            if len(steps) != a._n:  # someone else appended to the shared list: copy our view
                steps = steps[:a._n]
            steps.append(b)
            return chain._from_steps(steps, a._n + 1)
        if isinstance(b, chain) and _plain(b):
            return chain(a, *b.tasks)
        return chain(a, b)

    @property
    def id(self) -> str | None:
        """A chain's result is its last step's result."""
        return self.tasks[-1].id if self._n else self._id

    def _partial(self, args: tuple, kwargs: dict[str, Any]) -> chain:
        if not self._n or (not args and not kwargs):
            return self._replace()
        first = self.tasks[0]._partial(args, kwargs)
        return self._replace(tasks=(first, *self.tasks[1:]))

    def _fields(self) -> tuple:
        return (*super()._fields(), self.tasks)

    def children(self) -> tuple[Signature, ...]:
        return self.tasks

    def __repr__(self) -> str:
        if not self._n:
            return "chain()" + _suffix(self)
        body = " | ".join(repr(t) if not isinstance(t, chain) else f"({t!r})" for t in self.tasks)
        return (f"({body})" + _suffix(self)) if (self.options or self.links or self.errbacks) \
            else body


def _plain(c: chain) -> bool:
    return not (c.options or c.links or c.errbacks)


class group(Signature):
    """Run signatures in parallel; the result is the list of their results, in order.

    ``group(a, b)``, ``group([a, b])`` or ``group(sig for x in xs)``.
    """

    __slots__ = ("tasks",)
    kind = "group"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        opts = _opts(options, "group")
        with no_gc():  # a large group allocates many small, acyclic objects
            members = _members(tasks, "group")
        obj = group._new(task="nbcanvas.group", tasks=tuple(members), **{**_BASE, "options": opts})
        for f in ("task", *Signature.__slots__[1:], "tasks"):
            object.__setattr__(self, f, getattr(obj, f))

    def _partial(self, args: tuple, kwargs: dict[str, Any]) -> group:
        if not args and not kwargs:
            return self._replace()
        return self._replace(tasks=tuple(t._partial(args, kwargs) for t in self.tasks))

    def _fields(self) -> tuple:
        return (*super()._fields(), self.tasks)

    def children(self) -> tuple[Signature, ...]:
        return self.tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        shown = ", ".join(map(repr, self.tasks[:_SHOW]))
        if len(self.tasks) > _SHOW:
            shown += f", … {len(self.tasks) - _SHOW:,} more"
        return f"group([{shown}])" + _suffix(self)


class chord(Signature):
    """A group (the header) whose list of results is passed to one more signature (the body).

    ``chord(header, body)`` and ``chord(header)(body)`` both return a lazy chord.
    """

    __slots__ = ("header", "body")
    kind = "chord"

    def __init__(self, header: Any, body: Any = None, **options: Any) -> None:
        opts = _opts(options, "chord")
        hdr = header if isinstance(header, group) else group(header)
        bdy = None if body is None else maybe_signature(body, "chord body")
        if bdy is not None:
            check_entry(bdy, 1)
        obj = chord._new(task="nbcanvas.chord", header=hdr, body=bdy, **{**_BASE, "options": opts})
        for f in ("task", *Signature.__slots__[1:], "header", "body"):
            object.__setattr__(self, f, getattr(obj, f))

    def __call__(self, body: Any = None, **options: Any) -> chord:
        """``chord(header)(body)``: the chord with its body; lazy (nothing is sent)."""
        if body is None:
            raise TypeError("chord(header)(body): the body signature is missing")
        return chord(self.header, body, **{**self.options, **options})

    @property
    def tasks(self) -> tuple[Signature, ...]:
        """The header's signatures (Celery's ``chord.tasks``)."""
        return self.header.tasks

    @property
    def id(self) -> str | None:
        """A chord's result is its body's result."""
        return self.body.id if self.body is not None else self._id

    def _partial(self, args: tuple, kwargs: dict[str, Any]) -> chord:
        return self._replace(header=self.header._partial(args, kwargs))

    def _fields(self) -> tuple:
        return (*super()._fields(), self.header, self.body)

    def children(self) -> tuple[Signature, ...]:
        return (self.header,) if self.body is None else (self.header, self.body)

    def __repr__(self) -> str:
        inner = repr(self.header)[len("group("):-1] if not self.header.options else repr(self.header)
        return f"chord({inner}, {self.body!r})" + _suffix(self)


class xmap(Signature):
    """One task calling ``task`` on each item in turn (``add.map(xs)``, ``add.starmap(pairs)``)."""

    __slots__ = ("items", "star")
    kind = "xmap"

    def __init__(self, task: Task, it: Iterable[Any], star: bool = False) -> None:
        items = tuple(tuple(x) for x in it) if star else tuple(it)
        spec = task.argspec
        if spec is not None:
            for x in items:
                spec.check(task.name, x if star else (x,), {}, complete=True)
        obj = xmap._new(**{**_BASE, "immutable": True, "options": {}, "_type": task},
                        task=task.name, items=items, star=star)
        for f in (*Signature.__slots__, "items", "star"):
            object.__setattr__(self, f, getattr(obj, f))

    def _fields(self) -> tuple:
        return (*super()._fields(), self.items, self.star)

    def __repr__(self) -> str:
        return f"{self.name}.{'starmap' if self.star else 'map'}({list(self.items)!r})" + _suffix(self)


class chunks(Signature):
    """``add.chunks(pairs, n)``: the items split in chunks of ``n``, one starmap task each.

    Runs as ``.group()``; its result is a list of lists.
    """

    __slots__ = ("items", "n")
    kind = "chunks"

    def __init__(self, task: Task, it: Iterable[Any], n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"chunks(): n must be a positive int, got {n!r}")
        items = tuple(tuple(x) for x in it)
        obj = chunks._new(**{**_BASE, "immutable": True, "options": {}, "_type": task},
                          task=task.name, items=items, n=n)
        for f in (*Signature.__slots__, "items", "n"):
            object.__setattr__(self, f, getattr(obj, f))
        self.group()  # check every item now, not at run time

    def group(self) -> group:
        """The group of ``xstarmap`` tasks this stands for."""
        t, n = self._type, self.n
        return group([xmap(t, self.items[i:i + n], star=True)
                      for i in range(0, len(self.items), n)], **self.options)

    def _fields(self) -> tuple:
        return (*super()._fields(), self.items, self.n)

    def __repr__(self) -> str:
        return f"{self.name}.chunks({list(self.items)!r}, {self.n})" + _suffix(self)


class foreach(Signature):
    """A chain step that maps ``body`` over the previous step's result at run time.

    One task per element, in parallel; the step's result is the list of results.
    """

    __slots__ = ("body",)
    kind = "foreach"

    def __init__(self, body: Any, **options: Any) -> None:
        opts = _opts(options, "foreach")
        bdy = maybe_signature(body, "foreach body")
        check_entry(bdy, 1)
        obj = foreach._new(task="nbcanvas.foreach", body=bdy, **{**_BASE, "options": opts})
        for f in ("task", *Signature.__slots__[1:], "body"):
            object.__setattr__(self, f, getattr(obj, f))

    def _partial(self, args: tuple, kwargs: dict[str, Any]) -> foreach:
        if len(args) > 1 or kwargs:
            raise TypeError("foreach takes one input (the sequence to map over)")
        return self._replace(args=args or self.args)

    def _fields(self) -> tuple:
        return (*super()._fields(), self.body)

    def children(self) -> tuple[Signature, ...]:
        return (self.body,)

    def __repr__(self) -> str:
        inp = f"({self.args[0]!r})" if self.args else ""
        return f"foreach({self.body!r}){inp}" + _suffix(self)


class branch(Signature):
    """Choose at run time: ``cond`` gets the previous result; ``then`` or ``otherwise`` runs on
    that same previous result and gives the step's result. ``otherwise=None`` passes it through.
    """

    __slots__ = ("cond", "then", "otherwise")
    kind = "branch"

    def __init__(self, cond: Any, then: Any, otherwise: Any = None, **options: Any) -> None:
        opts = _opts(options, "branch")
        c = maybe_signature(cond, "branch condition")
        t = maybe_signature(then, "branch 'then'")
        o = None if otherwise is None else maybe_signature(otherwise, "branch 'otherwise'")
        check_entry(c, 1)
        check_entry(t, 1)
        if o is not None:
            check_entry(o, 1)
        obj = branch._new(task="nbcanvas.branch", cond=c, then=t, otherwise=o,
                          **{**_BASE, "options": opts})
        for f in ("task", *Signature.__slots__[1:], "cond", "then", "otherwise"):
            object.__setattr__(self, f, getattr(obj, f))

    def _partial(self, args: tuple, kwargs: dict[str, Any]) -> branch:
        if len(args) > 1 or kwargs:
            raise TypeError("branch takes one input (the value to test)")
        return self._replace(args=args or self.args)

    def _fields(self) -> tuple:
        return (*super()._fields(), self.cond, self.then, self.otherwise)

    def children(self) -> tuple[Signature, ...]:
        return tuple(c for c in (self.cond, self.then, self.otherwise) if c is not None)

    def __repr__(self) -> str:
        inp = f"({self.args[0]!r})" if self.args else ""
        return (f"branch({self.cond!r}, {self.then!r}, {self.otherwise!r}){inp}"
                + _suffix(self))
