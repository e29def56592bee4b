"""nbcanvas.tracebacks: source lines back under ``<dynamic-code>`` frames of remote tracebacks."""
from __future__ import annotations

import linecache

import nbcanvas as nc
from nbcanvas.tracebacks import known_code, with_source

app = nc.App("tests.test_tracebacks", set_as_current=False)


@app.task(name="ttb.explode")
def explode(x):
    value = x * 2
    raise ValueError(f"explode {value}")  # the line a traceback points at


def frame(line: int, name: str) -> str:
    return f'  File "<dynamic-code>", line {line}, in {name}'


def line_of(fn, text: str) -> int:
    code = fn.__code__
    for n in range(code.co_firstlineno, code.co_firstlineno + 20):
        if text in linecache.getline(code.co_filename, n):
            return n
    raise AssertionError(text)


def test_the_source_line_goes_under_its_frame():
    n = line_of(explode.run, "raise ValueError")
    text = "\n".join(["Traceback (most recent call last):", frame(n, "explode"),
                      "ValueError: explode 2"]) + "\n"
    out = with_source(text, {"explode": explode.run.__code__})
    assert out.splitlines() == ["Traceback (most recent call last):", frame(n, "explode"),
                                '    raise ValueError(f"explode {value}")  # the line a '
                                'traceback points at', "ValueError: explode 2"]
    assert out.endswith("\n")


def test_registered_tasks_are_known_by_function_name():
    codes = known_code()
    assert codes["explode"] is explode.run.__code__
    n = line_of(explode.run, "value = x * 2")
    assert "    value = x * 2" in with_source(frame(n, "explode"))


def test_a_frame_that_has_its_line_is_left_alone():
    text = "\n".join([frame(3, "explode"), "    already here", "ValueError"])
    assert with_source(text, {"explode": explode.run.__code__}) == text


def test_unknown_functions_and_other_frames_are_left_alone():
    text = "\n".join(['  File "/srv/app.py", line 3, in explode', frame(1, "unknown"), "E"])
    assert with_source(text, {"explode": explode.run.__code__}) == text


def test_text_without_dynamic_code_is_returned_as_is():
    text = "Traceback (most recent call last):\nValueError"
    assert with_source(text) is text
