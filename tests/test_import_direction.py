"""The one-way data flow of ARCHITECTURE.md, enforced.

(a) ``import nbcanvas`` and building canvases loads none of the heavy packages (checked in a fresh
    interpreter, so other tests cannot pollute ``sys.modules``);
(b) every module's *module-level* imports point to its own stage or an earlier one (imports inside
    functions are the allowed lazy entry points; imports under ``if TYPE_CHECKING:`` never run);
(c) every module declares ``__all__`` and stays under 400 lines.

The classification below is data: when a module is added, moved or split, edit the tables, not the
checks.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PKG_DIR = Path(__file__).resolve().parents[1] / "nbcanvas"
PKG = "nbcanvas"

# -- the stage table ------------------------------------------------------------------------
# Stages in data-flow order. ARCHITECTURE.md says build < compile < run < observe < show, but the
# run stage reads the observe core: handle.py/eager.py/submit.py/result.py import the store and
# the event feed at module level. That is not a back edge in the data flow -- store.py is a plain
# per-workflow table (node -> state, meta, times) that depends only on states.py, and events.py
# is the topic + dispatch that fills it (it depends on runtime.emit's TOPIC and the store). Neither
# knows anything about clusters, submission or results; they are *fed by* events and *read by*
# results. So they form an "observe-core" stage placed before run. The observe *views*
# (workflows.py) stay after run.
STAGES: list[str] = ["build", "compile", "observe-core", "run", "observe", "show"]

# First path component under nbcanvas/ (a module file or a subpackage) -> stage.
# Anything not listed defaults to DEFAULT_STAGE.
STAGE_OF: dict[str, str] = {
    # build: the pure model
    "__init__": "build",  # the facade: re-exports build names, lazy __getattr__ for the rest
    "errors": "build",
    "states": "build",
    "options": "build",
    "arity": "build",
    "app": "build",
    "task": "build",
    "canvas": "build",
    "serialize": "build",
    "shipping": "build",
    # compile: canvas -> dask graph; worker-side callables
    "compile": "compile",
    "runtime": "compile",
    # observe core: the store and the event feed that fills it (see above)
    "store": "observe-core",
    "events": "observe-core",
    # run
    "cluster": "run",
    "embedded": "run",
    "comm": "run",
    "localsock": "run",
    "leansend": "run",
    "submit": "run",
    "plugins": "run",
    "workerplugin": "run",
    "schedtune": "run",
    "result": "run",
    "handle": "run",
    "eager": "run",
    "structure": "run",
    "control": "run",
    "tracebacks": "run",  # remote traceback + source lines, used lazily by result.py
    # observe views
    "workflows": "observe",
    # show
    "dot": "show",
    "display": "show",
    "widgets": "show",
    "progress": "show",
}
DEFAULT_STAGE = "show"

# Inside the build stage the order of this list also counts: a build module may import (at module
# level) only build modules at its own position or before it. The facade __init__ comes last.
BUILD_ORDER: list[str] = ["errors", "states", "options", "arity", "shipping", "app", "task",
                          "canvas", "serialize", "__init__"]

# Third-party top-level packages a stage may import at module level (None = no restriction).
# cloudpickle: runtime/outcome.py ships exceptions with it when present (try/except, falls back
# to pickle); it is what dask itself uses to ship functions and imports neither dask nor
# distributed.
THIRD_PARTY_ALLOWED: dict[str, set[str] | None] = {
    "build": set(),
    "compile": {"dask", "cloudpickle"},  # dask for dask.task_spec; never distributed here
    "observe-core": set(),  # eager apply() runs through the store: it must not pull a cluster in
    "run": None,
    "observe": None,
    "show": None,
}

# Packages that `import nbcanvas` + building canvases must not load.
HEAVY = ["dask", "distributed", "graphviz", "ipywidgets", "tornado"]


# -- collecting module-level imports ------------------------------------------------------------
@dataclass(frozen=True)
class Imp:
    lineno: int
    target: str  # absolute dotted name


def _modname(path: Path) -> str:
    rel = path.relative_to(PKG_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(src: str, modname: str, is_package: bool) -> list[Imp]:
    """Imports that run when the module is imported: top level, and inside top-level
    if/try/with blocks -- but not function or class bodies, nor ``if TYPE_CHECKING:``."""
    tree = ast.parse(src, filename=modname)
    package = modname if is_package else modname.rpartition(".")[0]
    out: list[Imp] = []

    def visit(stmts: list[ast.stmt]) -> None:
        for node in stmts:
            if isinstance(node, ast.Import):
                out.extend(Imp(node.lineno, a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")
                    if node.level > 1:
                        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts)
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                if mod == "__future__":
                    continue
                out.append(Imp(node.lineno, mod))
                # `from pkg import submodule` imports the submodule too
                for a in node.names:
                    if mod.startswith(PKG) and _is_module(f"{mod}.{a.name}"):
                        out.append(Imp(node.lineno, f"{mod}.{a.name}"))
            elif isinstance(node, ast.If):
                if not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                visit(node.body)
            # FunctionDef / AsyncFunctionDef / ClassDef bodies: lazy, allowed

    visit(tree.body)
    return out


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    base = PKG_DIR.parent / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _key(dotted: str) -> str:
    """nbcanvas.canvas.base -> 'canvas'; nbcanvas -> '__init__'."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def stage_of(dotted: str) -> str:
    return STAGE_OF.get(_key(dotted), DEFAULT_STAGE)


MODULES = sorted(p for p in PKG_DIR.rglob("*.py") if "__pycache__" not in p.parts)
STDLIB = set(sys.stdlib_module_names)


def _violations(path: Path) -> list[str]:
    return _violations_in(path.read_text(encoding="utf-8"), _modname(path), _is_package(path),
                          str(path.relative_to(PKG_DIR.parent)))


def _violations_in(src: str, me: str, is_package: bool, label: str) -> list[str]:
    my_stage = stage_of(me)
    my_rank = STAGES.index(my_stage)
    allowed_3p = THIRD_PARTY_ALLOWED[my_stage]
    found = []
    for imp in _module_level_imports(src, me, is_package):
        where = f"{label}:{imp.lineno} ({my_stage})"
        top = imp.target.split(".")[0]
        if top == PKG:
            if imp.target == me:
                continue
            their_stage = stage_of(imp.target)
            if STAGES.index(their_stage) > my_rank:
                found.append(f"{where} imports {imp.target} ({their_stage}, a later stage)")
            elif my_stage == "build" == their_stage:
                mine, theirs = _key(me), _key(imp.target)
                if mine in BUILD_ORDER and theirs in BUILD_ORDER and \
                        BUILD_ORDER.index(theirs) > BUILD_ORDER.index(mine):
                    found.append(f"{where} imports {imp.target}, later in BUILD_ORDER")
        elif top in STDLIB:
            continue
        elif allowed_3p is not None and top not in allowed_3p:
            found.append(f"{where} imports third-party {imp.target!r} at module level "
                         f"(allowed here: {sorted(allowed_3p) or 'stdlib only'})")
        elif my_stage == "compile" and top == "dask" and imp.target.startswith("dask.distributed"):
            found.append(f"{where} imports {imp.target} (distributed) at module level")
    return found


# -- (a) import purity, in a clean interpreter -------------------------------------------------
PURITY_SCRIPT = textwrap.dedent("""
    import json, sys
    import nbcanvas as nc
    from nbcanvas import Signature, chain, chord, group

    @nc.task(name="purity.add")
    def add(x, y):
        return x + y

    @nc.task(name="purity.tsum")
    def tsum(xs):
        return sum(xs)

    assert add(2, 3) == 5                       # calling a task runs the function
    canvases = [
        add.s(1, 2),
        add.si(1, 2),
        add.s(1, 2) | add.s(3) | add.s(4),
        chain(add.s(1, 1), add.s(2)),
        group(add.s(i, i) for i in range(10)),
        chord((add.s(i, i) for i in range(5)), tsum.s()),
        group(add.s(1, 1), add.s(2, 2)) | tsum.s(),
        chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s()),
    ]
    for c in canvases:
        d = c.to_dict()
        json.dumps(d)
        assert Signature.from_dict(d) == c, (c, d)
        c.freeze()
        repr(c)
    heavy = %r
    print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
""")


def test_import_and_build_load_no_heavy_packages(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in [str(PKG_DIR.parent), os.environ.get("PYTHONPATH", "")] if p)}
    proc = subprocess.run([sys.executable, "-c", PURITY_SCRIPT % (HEAVY,)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing nbcanvas / building canvases loaded {loaded}"


# -- (b) the stage rule, statically ------------------------------------------------------------
def test_stage_table_is_consistent():
    assert set(THIRD_PARTY_ALLOWED) == set(STAGES)
    assert set(STAGE_OF.values()) <= set(STAGES)
    assert all(STAGE_OF[k] == "build" for k in BUILD_ORDER)
    assert [k for k, s in STAGE_OF.items() if s == "build"] != []
    assert MODULES, f"no modules found under {PKG_DIR}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG_DIR.parent)))
def test_module_imports_only_same_or_earlier_stage(path):
    assert _violations(path) == []


def test_checker_sees_violations():
    """The checker itself: a later-stage import and a third-party import are caught, lazy and
    TYPE_CHECKING imports are not."""
    src = textwrap.dedent("""
        from __future__ import annotations
        import json
        from typing import TYPE_CHECKING
        from .errors import Retry
        from .dot import draw
        import graphviz
        try:
            import distributed
        except ImportError:
            pass
        if TYPE_CHECKING:
            from .result import AsyncResult
        def f():
            import ipywidgets
            from .display import x
    """)
    found = _violations_in(src, "nbcanvas.errors", False, "probe.py")  # errors.py: build
    text = "\n".join(found)
    assert len(found) == 3, text
    assert "nbcanvas.dot" in text and "'graphviz'" in text and "'distributed'" in text
    # same-stage but later in BUILD_ORDER, and a compile module reaching for distributed
    found = _violations_in("from .serialize import to_dict\n", "nbcanvas.app", False, "p.py")
    assert len(found) == 1 and "BUILD_ORDER" in found[0], found
    found = _violations_in("import dask.distributed\nfrom dask.task_spec import Task\n",
                           "nbcanvas.compile.x", False, "p.py")
    assert len(found) == 1 and "dask.distributed" in found[0], found


# -- (c) size and __all__ ----------------------------------------------------------------------
MAX_LINES = 400


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG_DIR.parent)))
def test_module_has_all_and_is_small(path):
    text = path.read_text(encoding="utf-8")
    n = len(text.splitlines())
    assert n < MAX_LINES, f"{path.name} has {n} lines: make it a package (ARCHITECTURE.md)"
    tree = ast.parse(text)
    names = {t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Name)}
    assert "__all__" in names, f"{path.relative_to(PKG_DIR.parent)} has no __all__"
