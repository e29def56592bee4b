"""nbcanvas.canvas.ids: random ids in the UUID4 text form, made in blocks."""
from __future__ import annotations

import os
import threading
import uuid

import pytest

from nbcanvas.canvas import new_id, new_ids
from nbcanvas.canvas.ids import IdPool


def test_new_ids_are_uuid4_text():
    import uuid
    ids = new_ids(1000)
    assert len(set(ids)) == 1000 and new_ids(0) == []
    for i in ids + [new_id()]:
        u = uuid.UUID(i)
        assert u.version == 4 and u.variant == uuid.RFC_4122 and str(u) == i
    # every digit but the version's is random: none is stuck at one value
    fixed = {8, 13, 14, 18, 23}
    for pos in set(range(36)) - fixed:
        assert len({i[pos] for i in ids}) >= (4 if pos == 19 else 12), pos


def test_the_pool_never_hands_an_id_out_twice_across_threads():
    pool, got = IdPool(), [[] for _ in range(4)]

    def take(out: list[str]) -> None:
        for _ in range(3000):  # each thread empties the 512-id block several times
            out.append(pool())
    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    ids = [i for out in got for i in out]
    assert len(ids) == 12000 and len(set(ids)) == 12000
    assert all(uuid.UUID(i).version == 4 for i in ids[:100])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_pooled_ids():
    pool = IdPool()
    pool()  # the pool now holds ids the parent will hand out
    held = set(IdPool._pool)
    assert held
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids must not be among the parent's
        os.close(r)
        os.write(w, "\n".join(pool() for _ in range(50)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = set(f.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 50 and not child & held
