# The two quick-start commands: `make up` and `make test`. Both create .venv/ on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: up test lint bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

up: $(STAMP)
	$(VENV)/bin/tickcast up

test: $(STAMP)
	bash scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check tickcast dataflows models api sql tests bench scripts
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python bench/calibration.py
	$(VENV)/bin/python bench/inference.py
	$(VENV)/bin/python bench/sentiment.py
	$(VENV)/bin/python bench/api.py

# Pathway, Quix Streams and naive Bytewax beside tickcast (docs/benchmarks.md); a venv of its own,
# because Pathway and Quix Streams pin older pyarrow / confluent-kafka than .venv has.
bench-peers:
	test -x .venv-peers/bin/python || $(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install --quiet -e ".[peers]"
	.venv-peers/bin/python bench/peers.py

clean:
	rm -rf var .pytest_cache .hypothesis
