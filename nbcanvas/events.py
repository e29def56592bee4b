"""Events from workers to this process: the topic, the registry of stores, the dispatcher.

One ``client.subscribe_topic(TOPIC, dispatch)`` per client feeds every workflow's store.
Distributed's scheduler keeps only the last 1,000 events of a topic: events are a live feed;
a process that attaches later loads the scheduler plugin's record first (``store.load``).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .runtime.emit import TOPIC
from .store import StateStore

__all__ = ["TOPIC", "register_store", "get_store", "drop_store", "dispatch", "stores",
           "add_listener", "on_expired"]

_lock = threading.Lock()
_stores: dict[str, StateStore] = {}
_listeners: list[Callable[[str], None]] = []  # called with the workflow id of every message
_on_expired: list[Callable[[str], None]] = []  # called when the scheduler forgot a workflow


def register_store(store: StateStore) -> StateStore:
    """Make ``store`` receive the events of its workflow (the existing one if already there)."""
    with _lock:
        return _stores.setdefault(store.workflow_id, store)


def get_store(workflow_id: str) -> StateStore | None:
    with _lock:
        return _stores.get(workflow_id)


def drop_store(workflow_id: str) -> None:
    with _lock:
        _stores.pop(workflow_id, None)


def stores() -> list[StateStore]:
    with _lock:
        return list(_stores.values())


def dispatch(event: Any) -> None:
    """Handler for ``client.subscribe_topic``: ``event`` is ``(timestamp, msg)``."""
    msg = event[1] if isinstance(event, (tuple, list)) and len(event) == 2 else event
    if isinstance(msg, dict) and msg.get("expired"):  # its result_expires has passed
        for fn in list(_on_expired):
            try:
                fn(msg.get("wf"))
            except Exception:  # noqa: BLE001 - e.g. this client is closing: never break the feed
                pass
    store = get_store(msg.get("wf")) if isinstance(msg, dict) and "ev" in msg else None
    if store is not None:
        store.apply(msg)
    if _listeners and isinstance(msg, dict):
        for fn in list(_listeners):
            try:
                fn(msg.get("wf"))
            except Exception:  # a listener must never break the feed
                pass


def on_expired(fn: Callable[[str], None]) -> None:
    """Call ``fn(workflow_id)`` when the scheduler has forgotten a workflow whose
    ``result_expires`` passed (from distributed's IO-loop thread)."""
    with _lock:
        if fn not in _on_expired:
            _on_expired.append(fn)


def add_listener(fn: Callable[[str], None]) -> Callable[[], None]:
    """Call ``fn(workflow_id)`` for every event message, of any workflow (known here or not),
    from distributed's IO-loop thread: keep it cheap. Returns the function that removes it."""
    with _lock:
        _listeners.append(fn)

    def remove() -> None:
        with _lock:
            if fn in _listeners:
                _listeners.remove(fn)
    return remove
