"""Ids: random ids in the UUID4 text form, made in blocks (stdlib only).

A 10k canvas needs 10,001 ids when it is frozen; ``uuid.uuid4()`` makes one ``urandom`` call
and a ``UUID`` object per id. Here one call makes a block of ids, and a process-wide pool hands
them out.

>>> import uuid
>>> pool = IdPool()
>>> a, b = pool(), pool()
>>> a != b and uuid.UUID(a).version == 4
True
"""
from __future__ import annotations

import os
import threading
from typing import Final

__all__ = ["new_id", "new_ids", "IdPool"]


def _ids_layout() -> tuple[tuple[int, int, bytes], ...]:
    """(byte, text position, table) of each hex digit of a UUID's text form."""
    hi = bytes(b"0123456789abcdef"[x >> 4] for x in range(256))
    lo = bytes(b"0123456789abcdef"[x & 15] for x in range(256))
    variant = bytes(b"89ab"[(x >> 4) & 3] for x in range(256))  # RFC 4122: 10xx
    starts = (0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34)  # 8-4-4-4-12
    out = []
    for byte, pos in enumerate(starts):
        out.append((byte, pos, variant if byte == 8 else hi))
        out.append((byte, pos + 1, lo))
    return tuple(out)


_ID_DIGITS: Final = _ids_layout()


def new_ids(n: int) -> list[str]:
    """``n`` random ids in the UUID4 text form (fast: one ``urandom`` call, and each digit
    position filled for all ``n`` ids at once).

    >>> import uuid
    >>> a, b = new_ids(2)
    >>> a != b and uuid.UUID(a).version == 4 and str(uuid.UUID(a)) == a
    True
    """
    if n <= 0:
        return []
    raw = os.urandom(16 * n)
    text = bytearray(b"-" * 36 + b" ") * n  # the dashes stay; a space ends each id
    for byte, pos, table in _ID_DIGITS:
        text[pos::37] = raw[byte::16].translate(table)
    text[14::37] = b"4" * n  # version 4
    return text.decode("ascii").split()


def new_id() -> str:
    """One random id in the UUID4 text form."""
    return new_ids(1)[0]


class IdPool:
    """Hands out fresh ids from one process-wide pool, refilled in blocks (one ``urandom``
    call per block): a single task's ``delay()`` must not pay for 512 ids."""

    _pool: list[str] = []
    _lock = threading.Lock()

    def __call__(self) -> str:
        try:
            return self._pool.pop()  # atomic: threads never get the same id
        except IndexError:
            with self._lock:
                if not self._pool:
                    self._pool.extend(new_ids(512))
            return self()


# A forked child must not hand out the ids its parent still holds in the pool.
os.register_at_fork(after_in_child=IdPool._pool.clear)
