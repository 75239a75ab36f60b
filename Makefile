# Set-up and entry points. `make demo` and `make test` each create the virtual environment
# (Python 3.11) and install the pinned requirements first if needed.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= workdirs/demo

.PHONY: demo test lint clean-venv

$(BIN)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found; run: make PYTHON=/path/to/python3.11 ..."; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . || $(BIN)/pip install -q --no-deps -e .
	touch $@

demo: $(BIN)/.installed
	$(BIN)/python scripts/demo.py --workdir=$(WORKDIR)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
