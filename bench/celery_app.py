"""The Celery app of the bench (runs in ``bench/.celery-venv``; never imports nbcanvas or dask).

The worker is ``celery -A bench.celery_app worker --pool prefork --concurrency 2``; broker and
result backend are the Redis server at ``$BENCH_REDIS_URL`` that the bench started.
"""
from __future__ import annotations

import os

from celery import Celery, group, signature

from . import tasks

__all__ = ["app", "add", "tsum", "sleep_ms", "upto", "dmap"]

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")

app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    result_expires=3600,
)

add = app.task(name="bench.add")(tasks.add)
tsum = app.task(name="bench.tsum")(tasks.tsum)
sleep_ms = app.task(name="bench.sleep_ms")(tasks.sleep_ms)
upto = app.task(name="bench.upto")(tasks.upto)


@app.task(name="bench.dmap", bind=True)
def dmap(self, items, sig):
    """Celery's way to map a task over a result: replace this task by a group of ``sig``
    with each item prepended (the result is the group's list)."""
    return self.replace(group(signature(sig).clone((x,)) for x in items))
