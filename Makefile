# Two commands on a fresh clone: `make demo` (the whole pipeline on the shipped real data)
# and `make test`. Each creates the environment it needs first, from the lock file.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_output
LOCK := requirements-lock.txt
export MUJOCO_GL ?= osmesa

.PHONY: demo test install system-deps lint docs lock clean

install: $(VENV)/.installed

# MuJoCo renders offscreen on CPU through OSMesa (Debian: libosmesa6); the report's browser test
# uses Debian's chromium + chromium-driver; the h5wasm reader test Node.js + npm. Installed when
# run as root (CI), else named.
SYSTEM_PACKAGES := libosmesa6 chromium chromium-driver nodejs npm
system-deps:
	@missing=""; \
	ldconfig -p | grep -q libOSMesa || missing="$$missing libosmesa6"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "install$$missing (e.g. sudo apt-get install$$missing): offscreen rendering and the browser test need them"; fi; \
	fi

# The package with its test, lint and docs tools and the NeuroConv interfaces, every dependency at the exact version of the
# lock file (made by `make lock`; pip takes it as constraints).
$(VENV)/.installed: pyproject.toml $(LOCK) | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev,neuroconv]"
	touch $@

demo: install
	$(BIN)/mimic-nwb demo $(DEMO_OUT)

# h5wasm for tests/test_js_reader.py (a non-Python reader of the session files), from its lock.
tests/js/node_modules/.installed: tests/js/package-lock.json | system-deps
	npm ci --prefix tests/js --no-audit --no-fund --silent
	touch $@

test: install tests/js/node_modules/.installed
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The API reference from the docstrings; warnings are errors.
docs: install
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# Refresh the lock after changing dependencies in pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --extra neuroconv --python-version 3.11 --upgrade -o $(LOCK)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache docs/_build docs/api
