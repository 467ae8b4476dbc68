# Two commands on a fresh clone: `make demo` (the whole pipeline on the shipped real data)
# and `make test`. Each creates the environment it needs first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_output
export MUJOCO_GL ?= osmesa

.PHONY: demo test install system-deps clean

install: $(VENV)/.installed

# MuJoCo renders offscreen on CPU through OSMesa (Debian: libosmesa6).
system-deps:
	@ldconfig -p | grep -q libOSMesa || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6; \
	  else echo "install libosmesa6 (e.g. sudo apt-get install libosmesa6) for offscreen rendering"; fi; }

$(VENV)/.installed: pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/mimic-nwb demo $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
