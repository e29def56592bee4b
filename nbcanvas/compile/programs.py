"""Programs: the frozen canvas in the form the runtime interprets (compile stage, stdlib only).

A program is plain data (picklable, no closures): ``Step`` (a task call), ``MapStep``
(``add.map``), ``Seq`` (a chain, or a chord run in one place), ``Par`` (a group run in one
place) and ``Dyn`` (``foreach``/``branch``, decided at run time). Callbacks are programs too.
"""
from __future__ import annotations

import functools
from typing import Any, Final

from ..shipping import travelling

__all__ = ["Step", "MapStep", "Seq", "Par", "Dyn", "Batch", "Prog", "UnitProgram",
           "RUN_OPTIONS"]

#: Options the runtime reads (retries, limits, timing). Routing options go to dask instead.
RUN_OPTIONS: Final = frozenset({"max_retries", "autoretry_for", "dont_autoretry_for",
                                "retry_backoff", "retry_backoff_max", "retry_jitter",
                                "default_retry_delay", "time_limit", "soft_time_limit",
                                "countdown", "eta", "expires"})


class _Prog:
    __slots__ = ("id", "links", "errbacks")
    id: str
    links: tuple[Any, ...]
    errbacks: tuple[Any, ...]

    def __reduce__(self):
        cls = type(self)
        values = [getattr(self, f) for f in _all_slots(cls)]
        at = _fn_at(cls)
        if at is not None:  # the task's function: see nbcanvas.shipping
            values[at] = travelling(values[at])
        return (_rebuild, (cls, tuple(values)))

    def __dask_tokenize__(self) -> object:
        return (type(self).__name__, self.id)  # ids are unique: no need to hash the contents


@functools.cache
def _all_slots(cls: type) -> tuple[str, ...]:
    return tuple(f for c in reversed(cls.__mro__) for f in getattr(c, "__slots__", ()))


@functools.cache
def _fn_at(cls: type) -> int | None:
    slots = _all_slots(cls)
    return slots.index("fn") if "fn" in slots else None


def _rebuild(cls: type, values: tuple) -> Any:
    obj = object.__new__(cls)
    for f, v in zip(_all_slots(cls), values):
        object.__setattr__(obj, f, v)
    return obj


class Step(_Prog):
    """One task call: the function itself travels (cloudpickle ships notebook functions)."""

    __slots__ = ("name", "fn", "bind", "args", "kwargs", "immutable", "opts")

    def __init__(self, id: str, name: str, fn: Any, bind: bool, args: tuple, kwargs: dict,
                 immutable: bool, opts: dict, links: tuple = (), errbacks: tuple = ()) -> None:
        self.id, self.name, self.fn, self.bind = id, name, fn, bind
        self.args, self.kwargs, self.immutable, self.opts = args, kwargs, immutable, opts
        self.links, self.errbacks = links, errbacks


class MapStep(_Prog):
    """``task.map(items)`` / ``task.starmap(items)``: one task, a loop inside."""

    __slots__ = ("name", "fn", "bind", "items", "star", "opts")

    def __init__(self, id: str, name: str, fn: Any, bind: bool, items: tuple, star: bool,
                 opts: dict, links: tuple = (), errbacks: tuple = ()) -> None:
        self.id, self.name, self.fn, self.bind = id, name, fn, bind
        self.items, self.star, self.opts = items, star, opts
        self.links, self.errbacks = links, errbacks


class Seq(_Prog):
    """Items run one after another, each result prepended to the next (chain / inline chord)."""

    __slots__ = ("items",)

    def __init__(self, id: str, items: tuple, links: tuple = (), errbacks: tuple = ()) -> None:
        self.id, self.items, self.links, self.errbacks = id, items, links, errbacks


class Par(_Prog):
    """Members that all get the same input; the result is the list of theirs (inline group)."""

    __slots__ = ("members",)

    def __init__(self, id: str, members: tuple, links: tuple = (), errbacks: tuple = ()) -> None:
        self.id, self.members, self.links, self.errbacks = id, members, links, errbacks


class Dyn(_Prog):
    """A step decided at run time: ``foreach`` or ``branch``. ``canvas`` is the frozen canvas."""

    __slots__ = ("kind", "canvas", "input")

    def __init__(self, id: str, kind: str, canvas: Any, input: tuple = (), links: tuple = (),
                 errbacks: tuple = ()) -> None:
        self.id, self.kind, self.canvas, self.input = id, kind, canvas, input
        self.links, self.errbacks = links, errbacks


class Batch(_Prog):
    """Many calls of one task that share an input, stored by column (cheap to pickle).

    Each member is still its own step (id, events, retries, result); ``id`` is the first's.
    """

    __slots__ = ("name", "fn", "bind", "immutable", "opts", "ids", "args", "kwargs")

    def __init__(self, name: str, fn: Any, bind: bool, immutable: bool, opts: dict,
                 ids: list, args: list, kwargs: list | None) -> None:
        self.id, self.name, self.fn, self.bind = ids[0], name, fn, bind
        self.immutable, self.opts, self.ids, self.args, self.kwargs = immutable, opts, ids, args, kwargs
        self.links, self.errbacks = (), ()

    def steps(self) -> list[Step]:
        kw = self.kwargs or [{}] * len(self.ids)
        return [Step(i, self.name, self.fn, self.bind, a, k, self.immutable, self.opts)
                for i, a, k in zip(self.ids, self.args, kw)]


Prog = Step | MapStep | Seq | Par | Dyn | Batch


class UnitProgram:
    """The programs of one unit with their input selectors: the payload of one dask task.

    dask tokenizes a graph's task arguments; the unit's key already names it uniquely, so the
    token is the key (hashing thousands of programs would cost seconds on a 10k group).
    """

    __slots__ = ("key", "progs", "reuse", "inline", "tiny")

    def __init__(self, key: str, progs: tuple, reuse: bool = False,
                 inline: frozenset[str] = frozenset(),
                 tiny: dict[str, float] | None = None) -> None:
        self.key, self.progs, self.reuse, self.inline = key, progs, reuse, inline
        #: for a unit with a step decided at run time: the tasks the client knows to be very
        #: short (task name -> typical seconds), so its fan-outs are sized as the client's are
        self.tiny = tiny

    def __reduce__(self):
        return (UnitProgram, (self.key, self.progs, self.reuse, self.inline, self.tiny))

    def __dask_tokenize__(self) -> object:
        return ("nbcanvas-unit", self.key)
