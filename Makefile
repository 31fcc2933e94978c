# The two commands of the README:
#   make lab    set up everything (venv, install, the default model) and start JupyterLab
#   make test   set up, build the small test model, run the tests
VENV ?= .venv
PY := $(VENV)/bin/python
JUPYTER := $(VENV)/bin/jupyter
MODEL ?= qwen2.5-coder-0.5b
TEST_MODEL := smollm2-135m
export HF_HUB_OFFLINE := 1
# JupyterLab refuses to run as root without this flag; these machines run as root.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test install chromium clean frontend-check lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml labextension/package.json labextension/package-lock.json
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# The local CPU build of torch first: an unpinned torch pulls several GB of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install ".[export,test]"
	touch $@

lab: install
	$(JUPYTER) codecomp model build $(MODEL)
	$(JUPYTER) lab $(ROOT_FLAG) --CodecompConfig.model=$(MODEL)

chromium:
	@# The browser tests drive Debian's Chromium; never a browser downloaded by a test tool.
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)

# The tests look for their model in the checkout, apart from the user's models.
test: export JUPYTER_CODECOMP_CACHE_DIR := $(CURDIR)/.cache/models
test: install chromium lint frontend-check
	$(JUPYTER) codecomp model build $(TEST_MODEL)
	$(PY) -m pytest

# ruff (its rules are in pyproject.toml); the import contract is a test (tests/test_architecture.py).
lint: install
	$(VENV)/bin/ruff check jupyter_codecomp tests benchmarks

# The frontend's own checks: prettier, eslint, and the jest unit tests of its pure logic.
frontend-check: labextension/node_modules/.installed
	cd labextension && npm run lint:check && npm test

labextension/node_modules/.installed: labextension/package.json labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund
	touch $@

clean:
	rm -rf $(VENV) jupyter_codecomp/labextension labextension/node_modules labextension/lib
