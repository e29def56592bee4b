"""nbcanvas.runtime.taskctx: the bound task's ``self``, retry delays, time limits, interrupts."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from nbcanvas.compile.programs import Step
from nbcanvas.errors import (MaxRetriesExceededError, Retry, SoftTimeLimitExceeded,
                             TaskRevokedError, TimeLimitExceeded)
from nbcanvas.runtime.taskctx import BoundTask, TimeLimits, interrupt_thread, retry_delay
from nbcanvas.task import Request


def bound(retries: int = 0, **opts: Any) -> tuple[BoundTask, list[tuple]]:
    reports: list[tuple] = []
    step = Step("step-1", "fetch", None, True, (), {}, False, opts)
    req = Request("step-1", retries, (1,), {}, "wf-1", "tcp://w:1", eager=False)
    return BoundTask(step, req, lambda *a: reports.append(a)), reports


def busy(seconds: float) -> int:
    """A Python loop: interruptible at the next bytecode."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


# -- BoundTask ------------------------------------------------------------------------------


def test_bound_task_request_and_defaults():
    me, _ = bound()
    assert me.name == "fetch" and me.request.id == "step-1" and me.request.hostname == "tcp://w:1"
    assert me.request.workflow_id == me.request.root_id == "wf-1" and not me.request.is_eager
    assert (me.max_retries, me.default_retry_delay) == (3, 180)
    assert repr(me) == "<bound task fetch id=step-1>"
    me2, _ = bound(max_retries=None, default_retry_delay=5)
    assert (me2.max_retries, me2.default_retry_delay) == (None, 5)


def test_update_state_reports_to_the_runtime():
    me, reports = bound()
    me.update_state(meta={"i": 1})
    me.update_state(state="CUSTOM", meta=2)
    me.update_state(task_id="other", state="X")
    assert reports == [("step-1", "PROGRESS", {"i": 1}), ("step-1", "CUSTOM", 2),
                       ("other", "X", None)]


def test_retry_raises_retry_with_its_countdown_and_cause():
    me, _ = bound(default_retry_delay=7)
    cause = OSError("down")
    with pytest.raises(Retry) as info:
        me.retry(exc=cause, countdown=2)
    assert info.value.when == 2 and info.value.exc is cause and "down" in str(info.value)
    with pytest.raises(Retry) as info:
        me.retry()
    assert info.value.when == 7  # default_retry_delay
    r = me.retry(throw=False)
    assert isinstance(r, Retry)


def test_retry_past_max_retries_raises_the_cause_or_max_retries_exceeded():
    me, _ = bound(retries=3, max_retries=3)
    with pytest.raises(OSError, match="down"):
        me.retry(exc=OSError("down"))
    with pytest.raises(MaxRetriesExceededError, match="max_retries=3"):
        me.retry()
    with pytest.raises(Retry):
        me.retry(max_retries=5)  # the call's own limit wins
    unlimited, _ = bound(retries=1000, max_retries=None)
    with pytest.raises(Retry):
        unlimited.retry()


def test_retry_with_other_arguments_is_refused():
    me, _ = bound()
    with pytest.raises(TypeError, match="not supported"):
        me.retry(args=(1,))


# -- retry_delay ----------------------------------------------------------------------------


def test_without_backoff_the_delay_is_the_default():
    assert retry_delay({}, 5) == 180.0
    assert retry_delay({"default_retry_delay": 3}, 0) == 3.0


def test_backoff_doubles_up_to_its_cap():
    opts = {"retry_backoff": True, "retry_jitter": False, "retry_backoff_max": 20}
    assert [retry_delay(opts, n) for n in range(7)] == [1, 2, 4, 8, 16, 20, 20]
    opts = {"retry_backoff": 3, "retry_jitter": False}
    assert [retry_delay(opts, n) for n in range(3)] == [3, 6, 12]
    assert retry_delay({"retry_backoff": True, "retry_jitter": False}, 20) == 600  # default cap


def test_jitter_draws_within_zero_and_the_backoff():
    random.seed(1234)
    opts = {"retry_backoff": 2, "retry_backoff_max": 100}
    for n in range(8):
        cap = min(100, 2 * 2 ** n)
        draws = [retry_delay(opts, n) for _ in range(200)]
        assert all(0 <= d <= cap for d in draws)
        assert max(draws) > cap / 2 and min(draws) < cap / 2  # spread, not a constant


# -- interrupting a thread --------------------------------------------------------------------


def test_interrupt_thread_raises_in_a_busy_thread():
    caught: list[BaseException] = []
    running = threading.Event()

    def work() -> None:
        try:
            running.set()
            busy(60)
        except TaskRevokedError as e:
            caught.append(e)

    t = threading.Thread(target=work)
    t.start()
    assert running.wait(10)
    assert interrupt_thread(t.ident, TaskRevokedError) is True
    t.join(30)
    assert not t.is_alive() and len(caught) == 1


def test_interrupt_of_an_unknown_thread_is_not_delivered():
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    assert interrupt_thread(t.ident, TaskRevokedError) is False


# -- TimeLimits -----------------------------------------------------------------------------


def test_a_hard_limit_interrupts_a_busy_loop():
    with pytest.raises(TimeLimitExceeded):
        with TimeLimits(None, 0.1):
            busy(60)


def test_a_soft_limit_can_be_caught_and_the_hard_one_then_does_not_fire():
    cleaned = False
    with TimeLimits(0.05, 0.5) as tl:
        try:
            busy(60)
        except SoftTimeLimitExceeded:
            cleaned = True
    assert cleaned
    for timer in tl._timers:
        timer.join(10)  # cancelled: they end without firing
    assert all(not t.is_alive() for t in tl._timers)
    busy(0.05)  # a pending async exception would be raised here


def test_no_limit_fires_after_the_step_left():
    with TimeLimits(0.05, 0.05) as tl:
        pass
    for timer in tl._timers:
        timer.join(10)
    busy(0.1)  # longer than both limits: nothing is raised in this thread any more
    tl._fire(threading.get_ident(), TimeLimitExceeded)  # a timer that lost the race
    busy(0.01)


def test_no_timers_without_limits():
    tl = TimeLimits(None, None)
    assert tl._timers == []
    with tl:
        pass
