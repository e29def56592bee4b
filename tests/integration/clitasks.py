"""Tasks for the CLI-cluster test: importable by the `dask worker` processes (via PYTHONPATH)."""
import nbcanvas as nc

app = nc.App("cli")


@app.task(name="cli.add")
def add(x, y):
    return x + y


@app.task(name="cli.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="cli.process_image")
def process_image(image_id):
    return f"processed_image_{image_id}"
