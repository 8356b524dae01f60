# Two commands for a newcomer: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint typecheck pytest bench check-config clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

## run: start the gateway on config/gateway.yaml with a demo upstream on 127.0.0.1:9000
run: $(STAMP)
	@mkdir -p var
	$(BIN)/gateway serve --config config/gateway.yaml --demo-upstream 127.0.0.1:9000 --log-format text

## test: lint, type-check and run the whole test suite
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

## bench: throughput and latency, side by side in one run (not part of make test)
bench: $(STAMP)
	$(BIN)/python -m bench

check-config: $(STAMP)
	$(BIN)/gateway check-config --config config/gateway.yaml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
