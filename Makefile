# Two commands do everything on a fresh machine (each installs what it needs into .venv first):
#   make book   train the Table 2 configurations (smoke profile) through the training notebook, build the book
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= smoke
SEEDS ?= 42
export COMPRESSM_DATA ?= $(abspath ../shared/data)

.PHONY: book test bench clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

book: $(BIN)/.installed
	$(BIN)/python -m compressm reproduce --table 2 --profile $(PROFILE) --seeds $(SEEDS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m compressm bench

clean:
	rm -rf _build
