# fhirstudy: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
HOST   ?= 127.0.0.1
DB     ?= sqlite:///$(CURDIR)/fhirstudy.db
PEER_DIR ?= $(CURDIR)/../shared/peer-fhir

.PHONY: run test fuzz install install-test load serve bench clean chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make run: install, load seeds/ into the embedded SQLite database, serve http://$(HOST):$(PORT)/
run: install
	$(BIN)/fhirstudy load seeds --db '$(DB)' --quiet
	$(BIN)/fhirstudy serve --host $(HOST) --port $(PORT) --db '$(DB)'

## make test: install with the test extra, then the whole suite (SQLite, PostgreSQL, real HTTP, peer validator),
## in TEST_WORKERS processes (pytest-xdist; each starts its own PostgreSQL and peer server)
TEST_WORKERS ?= 2
test: install-test chromium
	FHIRSTUDY_PEER_DIR='$(PEER_DIR)' $(BIN)/python -m pytest -n $(TEST_WORKERS)

## the browser tests drive Debian's chromium (never `playwright install`): installed when missing
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get install -y chromium || echo "could not install chromium: the browser tests will skip"; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get install -y chromium || echo "could not install chromium: the browser tests will skip"; \
	  else echo "/usr/bin/chromium is missing and neither root nor sudo is here: install chromium (apt-get install chromium), or the browser tests skip"; fi; \
	fi

## make fuzz: the property-based fuzz test run long (random, shrinking failures), on SQLite and PostgreSQL
FUZZ_EXAMPLES ?= 20000
fuzz: install-test
	FHIRSTUDY_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FHIRSTUDY_PEER_DIR='$(PEER_DIR)' $(BIN)/python -m pytest tests/test_fuzz.py \
		-p no:cacheprovider --hypothesis-show-statistics

## make bench: the three benchmarks (each prints its figures beside a baseline from the same run)
bench: install-test
	$(BIN)/python bench/convert.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/push.py --fhir r4
	$(BIN)/python bench/push.py --fhir r5

clean:
	rm -rf $(VENV) fhirstudy.db fhirstudy.db-wal fhirstudy.db-shm .pytest_cache
