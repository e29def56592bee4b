"""Which options mean something here, and the clear error for those that don't (stdlib only).

>>> check_task_options({"max_retries": 3}, where="task 'add'")
{'max_retries': 3}
>>> check_task_options({"acks_late": True}, where="task 'add'")
Traceback (most recent call last):
...
nbcanvas.errors.ImproperlyConfigured: task 'add': option 'acks_late' means nothing here: there is no broker and no message to acknowledge; a task whose worker dies is re-run by dask
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Final

from .errors import ImproperlyConfigured

__all__ = ["TASK_OPTIONS", "CALL_OPTIONS", "REFUSED", "check_task_options", "check_call_options"]

_ROUTING: Final = frozenset({"priority", "resources", "workers", "queue"})
_RETRY: Final = frozenset({"max_retries", "autoretry_for", "retry_backoff", "retry_backoff_max",
                           "retry_jitter", "default_retry_delay", "dont_autoretry_for"})
_LIMITS: Final = frozenset({"time_limit", "soft_time_limit"})

#: Options of ``@app.task(...)`` (besides ``name``, ``bind`` and ``typing``).
TASK_OPTIONS: Final = _ROUTING | _RETRY | _LIMITS | {"pure"}
#: Options of a signature and of ``apply_async`` (``link``/``link_error`` are handled apart).
CALL_OPTIONS: Final = _ROUTING | _RETRY | _LIMITS | {"task_id", "countdown", "eta", "expires",
                                                      "shadow"}

#: Celery options that have no meaning here, with the reason given to the user.
REFUSED: Final[Mapping[str, str]] = {
    "acks_late": "there is no broker and no message to acknowledge; a task whose worker dies "
                 "is re-run by dask",
    "acks_on_failure_or_timeout": "there is no broker and no message to acknowledge",
    "reject_on_worker_lost": "there is no broker; a task whose worker dies is re-run by dask",
    "serializer": "dask chooses the serialization (pickle, cloudpickle for notebook code)",
    "compression": "dask compresses transfers itself",
    "exchange": "there is no broker",
    "routing_key": "there is no broker; route with resources= or workers=",
    "delivery_mode": "there is no broker",
    "mandatory": "there is no broker",
    "immediate": "there is no broker",
    "headers": "there is no message; pass data as arguments",
    "rate_limit": "rate limits are not implemented; limit concurrency with resources=",
    "ignore_result": "results are kept on the cluster until forget(); call .forget() instead",
    "store_errors_even_if_ignored": "results are kept on the cluster until forget()",
    "track_started": "STARTED is always reported here",
    "send_events": "events are always sent here",
    "retry": "this is Celery's publish retry; there is no broker to retry publishing to",
    "retry_policy": "this is Celery's publish retry; there is no broker to retry publishing to",
    "base": "custom Task base classes are not supported; use bind=True",
    "backend": "dask.distributed is the result store",
    "chord": "build chords with nc.chord(header, body)",
    "group_id": "group ids are assigned by freeze()",
    "add_to_parent": "there is no parent request to add to",
    "producer": "there is no broker",
    "connection": "connect with App(client=...) or app.connect(...)",
    "stamped_headers": "stamping is not supported",
}


def _refuse(name: str, where: str, allowed: frozenset[str]) -> ImproperlyConfigured:
    if name in REFUSED:
        return ImproperlyConfigured(f"{where}: option {name!r} means nothing here: {REFUSED[name]}")
    close = difflib.get_close_matches(name, sorted(allowed), n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return ImproperlyConfigured(
        f"{where}: unknown option {name!r}{hint} (known: {', '.join(sorted(allowed))})")


def _check_values(opts: Mapping[str, Any], where: str) -> None:
    for key in ("max_retries",):
        v = opts.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            raise ImproperlyConfigured(f"{where}: {key} must be an int >= 0 or None, got {v!r}")
    for key in ("time_limit", "soft_time_limit", "countdown", "default_retry_delay",
                "retry_backoff_max"):
        v = opts.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ImproperlyConfigured(f"{where}: {key} must be a number >= 0, got {v!r}")
    for key in ("autoretry_for", "dont_autoretry_for"):
        v = opts.get(key)
        if v is not None:
            items = v if isinstance(v, tuple) else (v,)
            if not all(isinstance(t, type) and issubclass(t, BaseException) for t in items):
                raise ImproperlyConfigured(f"{where}: {key} must be exception types, got {v!r}")
    res = opts.get("resources")
    if res is not None and not (isinstance(res, Mapping) and all(
            isinstance(k, str) and isinstance(n, (int, float)) for k, n in res.items())):
        raise ImproperlyConfigured(f"{where}: resources must be a dict like {{'GPU': 1}}, "
                                   f"got {res!r}")
    prio = opts.get("priority")
    if prio is not None and (isinstance(prio, bool) or not isinstance(prio, int)):
        raise ImproperlyConfigured(f"{where}: priority must be an int, got {prio!r}")


def check_task_options(opts: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate ``@task(...)`` options; return them as a new dict or raise ``ImproperlyConfigured``."""
    for name in opts:
        if name not in TASK_OPTIONS:
            raise _refuse(name, where, TASK_OPTIONS)
    _check_values(opts, where)
    out = dict(opts)
    if isinstance(out.get("autoretry_for"), type):
        out["autoretry_for"] = (out["autoretry_for"],)
    return out


def check_call_options(opts: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validate signature / ``apply_async`` options; return them as a new dict."""
    for name in opts:
        if name not in CALL_OPTIONS:
            raise _refuse(name, where, CALL_OPTIONS)
    _check_values(opts, where)
    if "task_id" in opts and not isinstance(opts["task_id"], str):
        raise ImproperlyConfigured(f"{where}: task_id must be a str, got {opts['task_id']!r}")
    return dict(opts)
