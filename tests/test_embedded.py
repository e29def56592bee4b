"""nbcanvas.embedded, unit level: choosing the pool and the event loop.

The embedded cluster itself runs in tests/integration/test_cluster.py (worker processes, in a
fresh interpreter) and tests/integration/test_threads_pool.py (threads, in this one).
"""
from __future__ import annotations

import dask
import pytest

import nbcanvas as nc
from nbcanvas.embedded import POOLS, _fast_event_loop, embedded_pool


def test_the_default_pool_is_worker_processes():
    with dask.config.set({"nbcanvas.embedded.pool": None}):
        assert embedded_pool() == "processes"


@pytest.mark.parametrize("name, kind", [("processes", "processes"), ("prefork", "processes"),
                                        ("threads", "threads"), (" Threads ", "threads")])
def test_pool_names_ours_and_celerys(name, kind):
    with dask.config.set({"nbcanvas.embedded.pool": name}):
        assert embedded_pool() == kind


@pytest.mark.parametrize("name", ["solo", "gevent", "eventlet", "thread", 2])
def test_a_pool_that_means_nothing_here_is_refused_with_the_choices(name):
    with dask.config.set({"nbcanvas.embedded.pool": name}):
        with pytest.raises(nc.ImproperlyConfigured) as e:
            embedded_pool()
    assert repr(name) in str(e.value) and "'processes'" in str(e.value)
    assert "'threads'" in str(e.value) and "'prefork'" in str(e.value)


def test_the_environment_variable_reaches_the_config(monkeypatch):
    monkeypatch.setenv("DASK_NBCANVAS__EMBEDDED__POOL", "threads")
    assert dask.config.collect(paths=[])["nbcanvas"]["embedded"]["pool"] == "threads"
    assert set(POOLS.values()) == {"processes", "threads"}


def test_embedded_event_loop_is_uvloop_unless_the_user_chose_one():
    assert _fast_event_loop() == {"distributed.admin.event-loop": "uvloop"}
    with dask.config.set({"distributed.admin.event-loop": "asyncio"}):
        assert _fast_event_loop() == {}


def test_in_memory_comms_merge_values_a_tcp_hop_split_into_shards():
    """distributed's in-memory comm gave split values to ``deserialize()`` unmerged (a task
    result over 64 MiB failed to reach the kernel); nbcanvas's replacement merges them."""
    import numpy as np
    from distributed.comm import inproc
    from distributed.protocol.serialize import (Serialized, ToPickle, serialize_and_split,
                                                to_serialize)

    from nbcanvas.embedded import _merge_shards_in_memory
    _merge_shards_in_memory()
    _merge_shards_in_memory()  # once is enough; again is a no-op
    assert inproc._nested_deserialize.nbcanvas
    value = np.arange(5_000, dtype="int64")  # 40 kB, split into 1 kB shards
    header, frames = serialize_and_split(value, size=1_000)
    assert len(frames) > 1 and "split-num-sub-frames" in header
    msg = [{"op": "gather", "data": {"k": Serialized(header, frames)},
            "more": [to_serialize(7), ToPickle({"a": 1})]}]
    out = inproc._nested_deserialize(msg, True)
    assert np.array_equal(out[0]["data"]["k"], value)
    assert out[0]["more"] == [7, {"a": 1}] and out[0]["op"] == "gather"
    assert isinstance(msg[0]["data"]["k"], Serialized)  # the message itself is left as it was
    kept = inproc._nested_deserialize(msg, False)  # a comm that does not deserialise
    assert kept[0]["data"]["k"] is msg[0]["data"]["k"] and kept[0]["more"][1] == {"a": 1}
