# Two commands for a fresh machine: `make demo` and `make test`.
# Everything they need is installed here from nothing.

PY       ?= python3.11
# pyenv's shim only answers for the active version, so look for the interpreter itself.
PY312    ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
VENV     := .venv
VENV312  := .venv312
BIN      := $(VENV)/bin
# DDS stays on this machine; the test harness also picks a free ROS_DOMAIN_ID per run.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export SDL_VIDEODRIVER := dummy
export MUJOCO_GL := egl
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: all venv venv312 test lint format demo bench clean

all: test

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt setup.py setup.cfg
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# flexivrdk ships no Python 3.11 wheel: the Flexiv adapter is checked against the
# real SDK in this small 3.12 venv (no torch). Skipped when python3.12 is absent.
venv312: $(VENV312)/.stamp

$(VENV312)/.stamp: requirements-flexiv.txt
	@if [ -n "$(PY312)" ] && $(PY312) --version >/dev/null 2>&1; then \
	  $(PY312) -m venv $(VENV312) && \
	  $(VENV312)/bin/pip install --quiet --upgrade pip && \
	  $(VENV312)/bin/pip install --quiet -r requirements-flexiv.txt && \
	  touch $@; \
	else echo "python3.12 not found: the flexivrdk conformance test will be skipped"; fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv venv312 lint
	$(BIN)/python -m pytest

# PRESET=tiny for a look in minutes; cpu (default) trains the world model for about an hour.
# Each preset keeps its own bags and run (rosbags/demo-<preset>, models/demo-<preset>);
# --force starts over what of them cannot be reused (another model, robot, a partial bag).
PRESET ?= cpu
demo: venv
	$(BIN)/dmo-ros demo --preset $(PRESET) --out models/demo-$(PRESET) --force

bench: venv
	$(BIN)/dmo-ros bench

clean:
	rm -rf $(VENV) $(VENV312) build *.egg-info .pytest_cache .ruff_cache
