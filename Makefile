# Two commands do everything on a fresh machine (each first installs what it needs into .venv):
#   make book   download MNIST if needed, train Table 2's configurations through the training notebook
#               (smoke profile: minutes on a CPU), and build the book into _build/html/
#   make html   build the book from the committed runs only (no training), into _build/html/
#   make test   run the test suite
# Options: make book PROFILE=cpu SEEDS="8 42 123"   (the cpu profile takes about two hours; JOBS=2 runs two at once)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= smoke
SEEDS ?= 42
JOBS ?= 1
# The data folder: $COMPRESSM_DATA, else ../shared/data where a copy of MNIST sits beside the checkout, else ./data
COMPRESSM_DATA ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),$(abspath data))
export COMPRESSM_DATA

.PHONY: book html test bench clean

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# kernels of this venv (the book's pages) log errors only: not ipykernel's warning about local TCP
	mkdir -p $(VENV)/etc/ipython && echo 'c.IPKernelApp.log_level = "ERROR"' > $(VENV)/etc/ipython/ipython_kernel_config.py
	touch $@

book: $(BIN)/.installed
	$(BIN)/python -m compressm download smnist
	$(BIN)/python -m compressm reproduce --table 2 --profile $(PROFILE) --seeds $(SEEDS) --jobs $(JOBS)
	@echo "The book is in $(CURDIR)/_build/html/index.html"

html: $(BIN)/.installed
	$(BIN)/python -c "from compressm.experiment import build_book; build_book()"
	@echo "The book is in $(CURDIR)/_build/html/index.html"

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	$(BIN)/python -m compressm bench

clean:
	rm -rf _build
