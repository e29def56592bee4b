"""Signature: an immutable, lazy task call, and the base class of every canvas (stdlib only).

Builders return copies; nothing runs until ``delay`` / ``apply_async`` / ``apply``.

>>> from nbcanvas import App
>>> app = App("doc-sig")
>>> @app.task
... def add(x, y):
...     return x + y
>>> s = add.s(2)
>>> s.clone(args=(3,)), s.set(countdown=1), s is s.set()
(add.s(3, 2), add.s(2).set(countdown=1), False)
>>> s.apply(args=(3,)).get()
5
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from ..arity import call_repr
from ..options import check_call_options
from .ids import new_id, new_ids

if TYPE_CHECKING:
    from ..task import Task

__all__ = ["Signature", "signature", "new_id", "new_ids", "maybe_signature", "no_gc"]

# bound once: the copy in Signature._replace sets every slot of every node it copies
_alloc = object.__new__
_set = object.__setattr__


_gc_lock = threading.Lock()
_gc_inside = 0  # threads inside no_gc
_gc_was_on = False  # whether the collector was on when the first of them came in


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many small objects.

    Building a 10k canvas allocates ~100k objects and nothing cyclic; a full collection in a
    process holding a scheduler's state costs 60 ms or more each time it triggers. The pause
    is the process's: it lasts until the last thread inside ``no_gc`` leaves (a thread that
    left first must not switch it back on under another still building).
    """
    global _gc_inside, _gc_was_on
    with _gc_lock:
        if not _gc_inside:
            _gc_was_on = gc.isenabled()
            gc.disable()
        _gc_inside += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_inside -= 1
            if not _gc_inside and _gc_was_on:
                gc.enable()


class Signature:
    """A task call: task name, arguments, options, callbacks. Also the base of chain, group, ...

    ``Signature("tasks.add", args=(2, 2))`` looks the task up by name (see ``nc.signature``).
    """

    __slots__ = ("task", "args", "kwargs", "options", "immutable", "links", "errbacks", "_id",
                 "_type")
    kind: ClassVar[str] = "signature"

    task: str
    args: tuple
    kwargs: dict[str, Any]
    options: dict[str, Any]
    immutable: bool
    links: tuple[Signature, ...]
    errbacks: tuple[Signature, ...]

    def __init__(self, task: str | Task, args: Iterable[Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                 immutable: bool = False, **more_options: Any) -> None:
        from ..app import lookup_task
        t = lookup_task(task) if isinstance(task, str) else task
        if not hasattr(t, "run") or not hasattr(t, "name"):
            raise TypeError(f"Signature() needs a task or a task name, got {task!r}")
        opts = {**(options or {}), **more_options}
        link = opts.pop("link", None)
        link_error = opts.pop("link_error", None)
        sig = Signature._of(t, tuple(args or ()), dict(kwargs or {}), opts, bool(immutable))
        sig = sig._with_callbacks(link, link_error)
        for f in self.__slots__:
            object.__setattr__(self, f, getattr(sig, f))

    @classmethod
    def _of(cls, t: Task, args: tuple, kwargs: dict[str, Any], options: dict[str, Any],
            immutable: bool) -> Signature:
        """Build and check a task call (the fast path used by ``task.s``)."""
        if options:
            options = check_call_options(options, where=f"task {t.name!r}")
        spec = t.argspec
        if spec is not None:
            spec.check(t.name, args, kwargs, complete=immutable)
        return _plain(t.name, args, kwargs, options, immutable, (), (), options.get("task_id"), t)

    def _with_id(self, id: str) -> Signature:
        """A copy of a plain task call with id ``id`` (the hot path of ``freeze``)."""
        return _plain(self.task, self.args, self.kwargs, self.options, self.immutable,
                      self.links, self.errbacks, id, self._type)

    @classmethod
    def _new(cls, **fields: Any) -> Any:
        obj = _alloc(cls)
        for k, v in fields.items():
            _set(obj, k, v)
        return obj

    def _replace(self, **changes: Any) -> Any:
        # (every builder's copy: a 10k group's members are copied when it is built)
        cls = type(self)
        obj = _alloc(cls)
        for f, put in _SLOTS.get(cls) or _slots(cls):
            put(obj, changes[f] if f in changes else getattr(self, f))
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .set(), .clone() or "
                             f".link() to get a changed copy")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; use .set(), .clone() or "
                             f".link() to get a changed copy")

    # -- identity and the task -------------------------------------------------------------
    @property
    def id(self) -> str | None:
        """The id of this call's result; set by ``freeze()`` (or ``task_id=``)."""
        return self._id

    @property
    def type(self) -> Task:
        """The :class:`~nbcanvas.task.Task` this signature calls."""
        return self._type

    @property
    def name(self) -> str:
        """Short name for labels and reprs (``shadow=`` overrides it)."""
        opts = self.options
        shadow = opts.get("shadow") if opts else None
        if shadow:
            return shadow
        short = _SHORT_NAMES.get(self.task)
        if short is None:  # (once per task name: a 10k canvas asks some 50,000 times)
            short = _SHORT_NAMES[self.task] = self.task.rsplit(".", 1)[-1]
        return short

    # -- builders (all return copies) ------------------------------------------------------
    def set(self, **options: Any) -> Any:
        """A copy with ``options`` merged in (validated: unknown or meaningless ones raise)."""
        link = options.pop("link", None)
        link_error = options.pop("link_error", None)
        if options:
            opts = check_call_options(options, where=f"{self.kind} {self.name!r}")
            new = self._set_options(opts)
        else:
            new = self._replace()
        return new._with_callbacks(link, link_error)

    def _set_options(self, opts: dict[str, Any]) -> Any:
        changes: dict[str, Any] = {"options": {**self.options, **opts}}
        if "task_id" in opts:
            changes["_id"] = opts["task_id"]
        return self._replace(**changes)

    def clone(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        """A copy with ``args`` prepended and ``kwargs`` overriding (ignored if immutable)."""
        new = self._partial(tuple(args or ()), dict(kwargs or {}))
        return new.set(**options) if options else new

    def _partial(self, args: tuple, kwargs: dict[str, Any]) -> Signature:
        if self.immutable or (not args and not kwargs):
            return self._replace()
        new_args, new_kwargs = args + self.args, {**self.kwargs, **kwargs}
        if self._type is not None and self._type.argspec is not None:
            self._type.argspec.check(self.task, new_args, new_kwargs)
        return self._replace(args=new_args, kwargs=new_kwargs)

    def link(self, callback: Signature) -> Any:
        """A copy that calls ``callback`` with this call's result when it succeeds."""
        return self._with_callbacks(callback, None)

    def link_error(self, errback: Signature) -> Any:
        """A copy that calls ``errback`` with the exception (and traceback) when it fails."""
        return self._with_callbacks(None, errback)

    def on_error(self, errback: Signature) -> Any:
        """Celery's alias of :meth:`link_error`."""
        return self.link_error(errback)

    def _with_callbacks(self, link: Any, link_error: Any) -> Any:
        if link is None and link_error is None:
            return self
        links = self.links + _callbacks(link, "link")
        errbacks = self.errbacks + _callbacks(link_error, "link_error")
        return self._replace(links=links, errbacks=errbacks)

    def freeze(self, _id: str | None = None) -> Any:
        """A copy in which every node has an id (this node gets ``_id`` if given)."""
        from .walk import freeze
        return freeze(self, _id)

    # -- composition -----------------------------------------------------------------------
    def __or__(self, other: Any) -> Any:
        from .primitives import chain
        if not isinstance(other, Signature):
            return NotImplemented
        return chain._join(self, other)

    def __invert__(self) -> Any:
        """``~sig`` = ``sig.delay().get()``, as in Celery."""
        return self.delay().get()

    # -- running ---------------------------------------------------------------------------
    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Send the canvas to the cluster, ``args`` prepended; returns an AsyncResult/GroupResult."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                    link: Any = None, link_error: Any = None, **options: Any) -> Any:
        """Compile the whole canvas into one dask graph and submit it at once."""
        from ..submit import submit  # the run stage: reached only when asked to run
        return submit(self._prepared(args, kwargs, link, link_error, options))

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              link: Any = None, link_error: Any = None, **options: Any) -> Any:
        """Run the whole canvas here, eagerly, with no cluster; returns a finished result."""
        from ..eager import run_eager
        return run_eager(self._prepared(args, kwargs, link, link_error, options))

    def _prepared(self, args: Any, kwargs: Any, link: Any, link_error: Any,
                  options: dict[str, Any]) -> Signature:
        sig = self.clone(args, kwargs) if (args or kwargs) else self
        if options:
            sig = sig.set(**options)
        return sig._with_callbacks(link, link_error).freeze()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """A canvas has no result until it is sent: this says so."""
        raise RuntimeError(f"{self!r} has not been sent: call .delay() (or .apply_async(), or "
                           f".apply() to run it here) and call .get() on the result")

    # -- JSON ------------------------------------------------------------------------------
    def to_dict(self, strict: bool = True) -> dict[str, Any]:
        """Plain JSON types with a type tag and schema version (see ``nbcanvas.serialize``)."""
        from ..serialize import to_dict
        return to_dict(self, strict=strict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Rebuild any canvas from :meth:`to_dict` output; task names go through the registry
        only (nothing is imported or evaluated)."""
        from ..serialize import from_dict
        return from_dict(d)

    # -- showing ---------------------------------------------------------------------------
    def graph(self, **kwargs: Any) -> Any:
        """The canvas as a ``graphviz.Digraph``."""
        from ..dot import canvas_graph
        return canvas_graph(self, **kwargs)

    def to_dot(self, **kwargs: Any) -> str:
        """The canvas as DOT text (needs no ``dot`` binary)."""
        return self.graph(**kwargs).source

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ..display import canvas_mimebundle
        return canvas_mimebundle(self, include, exclude)

    # -- values ----------------------------------------------------------------------------
    def _fields(self) -> tuple:
        return (self.task, self.args, self.kwargs, self.options, self.immutable, self.links,
                self.errbacks, self._id)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        r = call_repr(f"{self.name}.{'si' if self.immutable else 's'}", self.args, self.kwargs)
        return r + _suffix(self)

    def __reduce__(self):
        return (_rebuild, (type(self), {f: getattr(self, f) for f, _ in _slots(type(self))}))

    def __iter__(self) -> Iterator[Any]:
        raise TypeError(f"{type(self).__name__} is not iterable (it is a lazy canvas)")

    def children(self) -> tuple[Signature, ...]:
        """The canvases directly inside this one (none for a task call)."""
        return ()


#: class -> (name, setter) of every slot of it and its bases; a slot's own setter goes past
#: the class's ``__setattr__`` (which refuses) at half the cost of ``object.__setattr__``
_SLOTS: dict[type, tuple[tuple[str, Any], ...]] = {}
#: task name -> its short name (the part after the last dot)
_SHORT_NAMES: dict[str, str] = {}


def _slots(cls: type) -> tuple[tuple[str, Any], ...]:
    """Every slot of ``cls`` and its bases, with its setter (cached)."""
    names = _SLOTS.get(cls)
    if names is None:
        names = _SLOTS[cls] = tuple((f, c.__dict__[f].__set__) for c in reversed(cls.__mro__)
                                    for f in getattr(c, "__slots__", ()))
    return names


_p_task, _p_args, _p_kwargs, _p_options, _p_immutable, _p_links, _p_errbacks, _p_id, _p_type = (
    put for _, put in _slots(Signature))


def _plain(task: str, args: tuple, kwargs: dict[str, Any], options: dict[str, Any],
           immutable: bool, links: tuple, errbacks: tuple, id: str | None, typ: Any) -> Any:
    """A :class:`Signature` from its fields (``task.s()`` and ``freeze()`` make one per call)."""
    obj = _alloc(Signature)
    _p_task(obj, task)
    _p_args(obj, args)
    _p_kwargs(obj, kwargs)
    _p_options(obj, options)
    _p_immutable(obj, immutable)
    _p_links(obj, links)
    _p_errbacks(obj, errbacks)
    _p_id(obj, id)
    _p_type(obj, typ)
    return obj


def _rebuild(cls: type, fields: dict[str, Any]) -> Any:
    return cls._new(**fields)


def _suffix(sig: Signature) -> str:
    opts = {k: v for k, v in sig.options.items() if k not in ("task_id", "shadow")}
    out = f".set({', '.join(f'{k}={v!r}' for k, v in opts.items())})" if opts else ""
    out += "".join(f".link({cb!r})" for cb in sig.links)
    out += "".join(f".link_error({cb!r})" for cb in sig.errbacks)
    return out


def maybe_signature(obj: Any, where: str) -> Signature:
    """``obj`` if it is a canvas, else a ``TypeError`` that says what was wrong and where."""
    if isinstance(obj, Signature):
        return obj
    hint = ""
    if callable(obj) and hasattr(obj, "s"):
        hint = f" (did you mean {getattr(obj, '__name__', 'task')}.s()?)"
    elif isinstance(obj, (list, tuple)):
        hint = " (a list of signatures is a group: wrap it in nc.group(...))"
    raise TypeError(f"{where} is not a signature: {obj!r}{hint}")


def _callbacks(obj: Any, what: str) -> tuple[Signature, ...]:
    if obj is None:
        return ()
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    return tuple(maybe_signature(o, f"{what} callback") for o in items)


def signature(varies: str | Task | Signature | Mapping[str, Any], args: Iterable[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None, immutable: bool = False,
              **options: Any) -> Any:
    """``signature('tasks.add', args=(2, 2))``; also accepts a signature or a ``to_dict`` dict.

    An unknown name raises :class:`~nbcanvas.NotRegistered` with the closest names.
    """
    if isinstance(varies, Signature):
        return varies.clone(args, kwargs, **options) if (args or kwargs or options) else varies
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies)
    return Signature(varies, args, kwargs, immutable=immutable, **options)


