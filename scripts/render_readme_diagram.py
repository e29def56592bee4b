"""Render the README's diagram: the seed's "chains of groups" workflow, drawn by nbcanvas.

    python scripts/render_readme_diagram.py            # writes docs/img/canvas.svg and .png
    python scripts/render_readme_diagram.py --out DIR  # somewhere else

Needs Graphviz's ``dot`` program. The files are written here, explicitly: showing a canvas in a
notebook never writes one.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import nbcanvas as nc  # noqa: E402
from nbcanvas import chain, chord, group  # noqa: E402

__all__ = ["workflow", "main"]

app = nc.App("readme", set_as_current=False)


@app.task(name="tasks.fetch_source_a")
def fetch_source_a() -> str:
    return "data_from_source_a"


@app.task(name="tasks.fetch_source_b")
def fetch_source_b() -> str:
    return "data_from_source_b"


@app.task(name="tasks.process_batch")
def process_batch(data: object) -> str:
    return f"processed_{data}"


@app.task(name="tasks.combine_results")
def combine_results(results: object) -> str:
    return f"combined_{results}"


def workflow() -> nc.Signature:
    """Fetch from two sources in parallel, process each batch, combine the results."""
    return chain(group(fetch_source_a.s(), fetch_source_b.s()),
                 chord([process_batch.s()])(combine_results.s()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img",
                        help="directory for canvas.svg and canvas.png (default: docs/img)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    graph = workflow().graph()
    svg = args.out / "canvas.svg"
    svg.write_text(graph.pipe(format="svg", encoding="utf-8"), encoding="utf-8")
    png = args.out / "canvas.png"
    png.write_bytes(graph.pipe(format="png"))
    print(f"{workflow()!r}\n-> {svg.relative_to(ROOT) if svg.is_relative_to(ROOT) else svg}"
          f"\n-> {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
