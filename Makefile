# Set-up and the two jobs of README.md. Everything installs into .venv from the project's own files.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" bash examples/digits_demo.sh

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q
