#!/usr/bin/env python3
"""Execute the tutorial notebooks in place, so that they are stored with their outputs.

    python scripts/execute_notebooks.py                      # every notebooks/*.ipynb
    python scripts/execute_notebooks.py notebooks/00-quickstart.ipynb -j 1

Each notebook runs top to bottom in a fresh ``python3`` kernel (the kernel of the Python that
runs this script: it must have nbcanvas installed), from the ``notebooks/`` folder, with nbclient.
Widget state is stored in the notebook (``store_widget_state=True``), so a saved live view shows
its final state when the notebook is opened. Cells tagged ``raises-exception`` may raise; any other
error stops that notebook, leaves its file unchanged, and makes the script exit with status 1.

nbval (``make test``) then re-runs the notebooks and compares their outputs with the stored ones,
after ``notebooks/nbval_sanitize.cfg``.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"


def _places() -> list[tuple[str, str]]:
    """Paths of this machine that tracebacks mention, and what to show instead."""
    import site
    out = [(str(ROOT) + "/", "")]
    for p in {*site.getsitepackages(), site.getusersitepackages()}:
        out.append((p.rstrip("/") + "/", "site-packages/"))
    out.append((sys.base_prefix.rstrip("/") + "/", "python/"))
    out.append((sys.prefix.rstrip("/") + "/", "venv/"))
    return sorted(out, key=lambda kv: -len(kv[0]))


def _scrub(output: dict) -> dict:
    """Stored outputs name files relative to the project, never by this machine's paths."""
    places = _places()

    def clean(text: str) -> str:
        for path, short in places:
            text = text.replace(path, short)
        return text
    if output.get("output_type") == "error":
        output["traceback"] = [clean(line) for line in output.get("traceback", [])]
    elif output.get("output_type") == "stream":
        output["text"] = clean(output.get("text", ""))
    return output


def execute(path: Path, timeout: int, kernel: str) -> tuple[Path, float, str | None]:
    """Run one notebook; write it back only if it ran through. Returns (path, seconds, error)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    # Keep each cell's outputs as they were when the cell finished: output that arrives later
    # (e.g. log lines of the embedded cluster's workers while the kernel shuts down) would be
    # appended to the last cell and make nbval's comparison fail.
    finished: dict[int, list] = {}

    def on_cell_executed(cell, cell_index, **_):
        finished[cell_index] = copy.deepcopy(cell.outputs)

    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel, store_widget_state=True,
                            record_timing=False, on_cell_executed=on_cell_executed,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as e:
        return path, time.monotonic() - start, str(e)
    except Exception as e:  # kernel died, timeout, ...
        return path, time.monotonic() - start, f"{type(e).__name__}: {e}"
    for i, outputs in finished.items():
        nb.cells[i].outputs = [_scrub(o) for o in outputs]
    nbformat.write(nb, path)
    return path, time.monotonic() - start, None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    p.add_argument("-j", "--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    p.add_argument("--timeout", type=int, default=300, help="seconds per cell (default 300)")
    p.add_argument("--kernel", default="python3", help="kernel name (default python3)")
    args = p.parse_args(argv)
    paths = [n.resolve() for n in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if not paths:
        print("no notebooks to execute", file=sys.stderr)
        return 1
    start = time.monotonic()
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = [pool.submit(execute, path, args.timeout, args.kernel) for path in paths]
        for fut in runs:
            path, seconds, error = fut.result()
            name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            if error is None:
                print(f"ok      {name}  ({seconds:.1f} s)", flush=True)
            else:
                failed += 1
                print(f"FAILED  {name}  ({seconds:.1f} s), not written:\n{error}", flush=True)
    print(f"{len(paths) - failed}/{len(paths)} notebooks executed in {time.monotonic() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
