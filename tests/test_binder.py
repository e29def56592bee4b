"""The Binder set-up (binder/) builds what the tutorials need, and the quickstart runs in it.

Three levels, cheapest first:

1. the files themselves (no tools needed);
2. ``repo2docker --no-build --debug --no-run .``: repo2docker's own detection prints the
   Dockerfile it would build (no Docker engine needed; skipped when jupyter-repo2docker is not
   installed: ``pip install jupyter-repo2docker``);
3. (slow, needs PyPI) a fresh venv with ``pip install -r binder/requirements.txt`` run from the
   repo root as Binder does, ``binder/postBuild``, then the quickstart notebook executed with
   nbclient in that venv: no errors but its ``raises-exception`` cell, a diagram, and the live
   view's bars stored at 100 %.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
QUICKSTART = ROOT / "notebooks" / "00-quickstart.ipynb"


def _lines(name: str) -> list[str]:
    text = (BINDER / name).read_text(encoding="utf-8")
    return [ln.split("#", 1)[0].strip() for ln in text.splitlines() if ln.split("#", 1)[0].strip()]


# -- 1. the files ---------------------------------------------------------------------------------


def test_binder_folder_is_the_only_config():
    # repo2docker: binder/ and .binder/ are exclusive; a Dockerfile or environment.yml in
    # binder/ would win over requirements.txt + runtime.txt (and ignore them).
    assert BINDER.is_dir()
    assert not (ROOT / ".binder").exists()
    for other in ("Dockerfile", "environment.yml", "Pipfile", "default.nix"):
        assert not (BINDER / other).exists(), f"binder/{other} would replace requirements.txt"


def test_requirements_install_the_repo():
    # With a binder/ folder repo2docker does not install the root pyproject.toml by itself.
    assert "." in _lines("requirements.txt") or "-e ." in _lines("requirements.txt")


def test_apt_installs_graphviz():
    assert "graphviz" in _lines("apt.txt")


def test_runtime_is_python_311():
    assert _lines("runtime.txt") == ["python-3.11"]


def test_post_build_trusts_the_notebooks():
    post = BINDER / "postBuild"
    text = post.read_text(encoding="utf-8")
    assert text.startswith("#!"), "postBuild needs a shebang (repo2docker runs ./binder/postBuild)"
    assert "set -e" in text, "without set -e a failing step does not fail the build"
    assert "jupyter trust" in text and "notebooks/" in text
    assert post.stat().st_mode & stat.S_IXUSR, "postBuild should be executable in git"


# -- 2. repo2docker's own detection ----------------------------------------------------------------


def test_repo2docker_plans_the_expected_image():
    pytest.importorskip("repo2docker", reason="jupyter-repo2docker is not installed "
                                              "(pip install jupyter-repo2docker)")
    out = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug",
                          "--no-run", str(ROOT)], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "python=3.11" in text, "runtime.txt not picked up"
    assert "--no-install-recommends graphviz" in text, "apt.txt not picked up"
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in text
    assert "./binder/postBuild" in text


# -- 3. a fresh environment from binder/requirements.txt runs the quickstart ------------------------


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


RUN_QUICKSTART = textwrap.dedent("""
    import json, sys
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(sys.argv[1], as_version=4)
    NotebookClient(nb, timeout=180, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": sys.argv[2]}}).execute()
    errors = [(i, "raises-exception" in c.metadata.get("tags", []), o["ename"])
              for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.outputs if o["output_type"] == "error"]
    svgs = sum("image/svg+xml" in o.get("data", {})
               for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    state = nb.metadata.get("widgets", {}).get(
        "application/vnd.jupyter.widget-state+json", {}).get("state", {})
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    print(json.dumps({"errors": errors, "svgs": svgs,
                      "bars": [[b["value"], b["max"]] for b in bars]}))
""")


@pytest.mark.slow
def test_fresh_binder_env_runs_the_quickstart(tmp_path):
    if not _pypi_reachable():
        pytest.skip("no network to PyPI: cannot install binder/requirements.txt")
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (binder/apt.txt installs it on Binder)")
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"

    def pip(*args: str) -> None:
        out = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              *args], capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]

    # Binder's own server environment brings Jupyter; the kernel side needs ipykernel, and
    # nbclient runs the notebook here.
    pip("ipykernel", "nbclient", "nbformat")
    pip("-r", "binder/requirements.txt")  # from the repo root, as repo2docker does

    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
           "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"), "VIRTUAL_ENV": str(env_dir)}
    env.pop("PYTHONPATH", None)
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    post = subprocess.run(["bash", str(BINDER / "postBuild")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert post.returncode == 0, post.stdout + post.stderr

    # nbcanvas in the venv is the installed copy, not this checkout's source
    where = subprocess.run([str(py), "-c", "import nbcanvas; print(nbcanvas.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert where.returncode == 0 and str(env_dir) in where.stdout, where.stdout + where.stderr

    nb = tmp_path / "notebooks" / QUICKSTART.name
    nb.parent.mkdir()
    shutil.copy(QUICKSTART, nb)
    script = tmp_path / "run_quickstart.py"
    script.write_text(RUN_QUICKSTART, encoding="utf-8")
    out = subprocess.run([str(py), str(script), str(nb), str(nb.parent)], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"], "the quickstart's failing workflow should raise in its tagged cell"
    assert all(tagged for _, tagged, _ in report["errors"]), report["errors"]
    assert report["svgs"] >= 1, "no diagram was drawn"
    assert report["bars"], "no live view was shown (no progress bar in the widget state)"
    assert any(v == m and m > 0 for v, m in report["bars"]), report["bars"]
