# nbcanvas: set-up and everyday commands. `make lab` and `make test` work on a fresh Debian/Ubuntu
# machine: they build .venv, install the package + test extras, and (as root) the system packages.
#
#   make lab          JupyterLab on notebooks/00-quickstart.ipynb   (LAB_IP=0.0.0.0 LAB_PORT=8888)
#   make test         unit + integration + doctests, nbval on every notebook, the browser test
#   make bench        benchmarks against raw dask and Celery+Redis
#   make screenshots  the browser test, saving build/*.png into docs/img/
#   make clean        remove .venv and everything generated

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEPS   := scripts/ensure_system_deps.sh

LAB_IP   ?= localhost
LAB_PORT ?=
QUICKSTART := notebooks/00-quickstart.ipynb

# pytest: xdist over both cores; per-test (pytest-timeout) and whole-step (coreutils) limits
XDIST          ?= -n 2 --dist loadscope
TEST_TIMEOUT   ?= 300
NBVAL_TIMEOUT  ?= 300
UNIT_WALL      ?= 900
NBVAL_WALL     ?= 600
BROWSER_WALL   ?= 600
ROOT := $(shell id -u 2>/dev/null)

# $(call step,NAME,WALL-SECONDS,COMMAND): run COMMAND, print its wall time, fail make if it fails.
# A pytest exit 5 ("no tests collected") fails too: a step that collects nothing is broken.
define step
@echo "==> $(1)"; start=$$(date +%s%N); rc=0; \
timeout --foreground -k 30 $(2) $(3) || rc=$$?; \
ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
if [ $$rc -eq 124 ]; then echo "!!  $(1): killed after $(2) s"; \
elif [ $$rc -eq 5 ]; then echo "!!  $(1): no tests collected (pytest exit 5)"; fi; \
printf '<== %s: %s in %d.%d s\n' "$(1)" "$$([ $$rc -eq 0 ] && echo ok || echo "FAILED (exit $$rc)")" $$((ms / 1000)) $$((ms % 1000 / 100)); \
exit $$rc
endef

.PHONY: help venv lab test test-unit test-notebooks test-browser _nbval _browser bench screenshots clean

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# -- set-up -------------------------------------------------------------------------------------
venv: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing nbcanvas[test] (about a minute the first time)"
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10) and "nbcanvas needs Python >= 3.10, $(PYTHON) is " + sys.version.split()[0])'
	@start=$$(date +%s); \
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); bash $(DEPS) python3-venv; $(PYTHON) -m venv $(VENV); }; \
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'; \
	echo "<== $(VENV) ready in $$(( $$(date +%s) - start )) s"
	@touch $@

# -- lab ----------------------------------------------------------------------------------------
lab: $(STAMP)
	@bash $(DEPS) graphviz
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then $(VENV)/bin/jupyter trust notebooks/*.ipynb >/dev/null 2>&1 || true; fi
	@if [ -f $(QUICKSTART) ]; then target=$(QUICKSTART); else mkdir -p notebooks; target=notebooks; fi; \
	echo "==> starting JupyterLab on $$target; open the http://$(LAB_IP):... URL with the token printed below (Ctrl-C twice to stop)"; \
	exec $(VENV)/bin/jupyter lab "$$target" --ip=$(LAB_IP) $(if $(LAB_PORT),--port=$(LAB_PORT)) \
		$(if $(filter 0,$(ROOT)),--allow-root)

# -- test ---------------------------------------------------------------------------------------
test: $(STAMP)
	@bash $(DEPS) graphviz chromium fonts-liberation
	@start=$$(date +%s); \
	for t in test-unit test-notebooks test-browser; do $(MAKE) --no-print-directory -j1 $$t; done; \
	echo "==> make test: all steps passed in $$(( $$(date +%s) - start )) s"

# (a) unit + integration + doctests (pyproject adds --doctest-modules --doctest-glob=README.md)
test-unit: $(STAMP)
	$(call step,pytest: unit + integration + doctests,$(UNIT_WALL),\
		$(PY) -m pytest $(XDIST) --timeout=$(TEST_TIMEOUT) -m "not browser" tests nbcanvas $(wildcard README.md))
	$(call step,pytest: worker deaths revoke and failures over nbtcp:// (the embedded comm),$(UNIT_WALL),\
		env NBCANVAS_TEST_COMM=nbtcp $(PY) -m pytest $(XDIST) --timeout=$(TEST_TIMEOUT) \
		tests/reliability/test_worker_death.py tests/reliability/test_failures.py \
		tests/integration/test_control.py)

# (b) nbval on every notebook, outputs compared after notebooks/nbval_sanitize.cfg
test-notebooks: $(STAMP)
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then :; else echo "==> nbval: no notebooks/*.ipynb yet, skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory _nbval

_nbval:
	$(call step,nbval: notebooks,$(NBVAL_WALL),\
		$(PY) -m pytest -p no:cacheprovider --nbval --nbval-current-env \
		--nbval-sanitize-with notebooks/nbval_sanitize.cfg --nbval-cell-timeout=$(NBVAL_TIMEOUT) \
		--timeout=$(NBVAL_TIMEOUT) $(XDIST) notebooks/)

# (c) JupyterLab in Chromium, driven by Playwright
test-browser: $(STAMP)
	@if [ -d tests/browser ]; then :; else echo "==> browser test: no tests/browser yet, skipped"; exit 0; fi; \
	$(MAKE) --no-print-directory _browser

_browser:
	$(call step,browser test,$(BROWSER_WALL),\
		$(PY) -m pytest --timeout=$(TEST_TIMEOUT) tests/browser -m browser)

# -- bench / screenshots ------------------------------------------------------------------------
bench: $(STAMP)
	@bash $(DEPS) redis-server
	$(PY) -m bench

screenshots: $(STAMP)
	@bash $(DEPS) graphviz chromium fonts-liberation
	NBCANVAS_SCREENSHOTS=1 $(PY) -m pytest --timeout=$(TEST_TIMEOUT) tests/browser -m browser
	@mkdir -p docs/img
	@if ls build/*.png >/dev/null 2>&1; then cp build/*.png docs/img/ && echo "==> copied $$(ls build/*.png | wc -l) screenshot(s) to docs/img/"; \
	else echo "!!  no build/*.png written by the browser test"; exit 1; fi

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache dask-worker-space *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
	find notebooks -name .ipynb_checkpoints -type d -prune -exec rm -rf {} + 2>/dev/null || true
