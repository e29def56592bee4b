"""docs/reliability.md names the test behind each promise: every name it gives must exist."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `test_x.py::test_name`, `::test_name` (the file of the reference before it), `...[case]`
REF = re.compile(r"`((?:[\w/]+\.py)?)::(\w+)(?:\[[^\]`]*\])?`")


def _tests_by_file() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found.setdefault(path.name, set()).update(
            n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return found


def references(text: str) -> list[tuple[str, str]]:
    """(file, test) for each reference; a bare ``::name`` belongs to the file named before it.

    >>> references("`a/test_x.py::test_one`, `::test_two` and `test_y.py::test_z[case]`")
    [('test_x.py', 'test_one'), ('test_x.py', 'test_two'), ('test_y.py', 'test_z')]
    """
    out, last = [], ""
    for m in REF.finditer(text):
        if m.group(1):
            last = m.group(1).rsplit("/", 1)[-1]
        out.append((last, m.group(2)))
    return out


def test_every_test_the_reliability_doc_names_exists():
    refs = references((ROOT / "docs" / "reliability.md").read_text(encoding="utf-8"))
    assert len(refs) >= 30  # the doc's tables are read at all
    tests = _tests_by_file()
    missing = [f"{f}::{name}" for f, name in refs if name not in tests.get(f, ())]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_a_renamed_test_is_caught():
    tests = _tests_by_file()
    refs = references("`test_threads_pool.py::test_exit_does_not_wait_for_running_tasks`, "
                      "`::test_that_was_renamed`")
    assert [name for f, name in refs if name not in tests.get(f, ())] == ["test_that_was_renamed"]
