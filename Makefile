# The two commands a newcomer needs: `make run` and `make test`.
# Everything they need is installed by the targets below (pip, apt-get, Go module proxy).

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: run test venv test-deps lint audit cluster cluster-down cluster-build htmx images clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[gen,dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/t2v serve --host $(HOST) --port $(PORT)

# System packages (PostgreSQL, Chromium), the test control plane, MinIO and promtool built
# from source (cached under ~/.cache/t2v), the real test node's images (buildah), and the local htmx copy.
test-deps: $(STAMP)
	bash scripts/install-test-deps.sh
	$(BIN)/python scripts/testcluster build
	$(BIN)/python scripts/testcluster images --test-node
	$(BIN)/python -m scripts.prometheus_tools build
	$(MAKE) htmx

test: test-deps lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pyflakes core webapp controller t2vcli jobcontract jobimage scripts tests

# Known vulnerabilities in the installed packages (needs PyPI's JSON API or osv.dev).
audit: $(STAMP)
	$(BIN)/pip-audit --skip-editable

cluster: $(STAMP)
	$(BIN)/python scripts/testcluster build
	$(BIN)/python scripts/testcluster up

# The service image (t2v:local) and the job image (t2v-jobimage:local) from their Dockerfiles: `docker build`
# where Docker is installed (CUDA base, pinned by digest), else buildah on a Debian base (CPU).
images: $(STAMP)
	bash scripts/install-test-deps.sh
	$(BIN)/python scripts/testcluster images

cluster-down: $(STAMP)
	$(BIN)/python scripts/testcluster down

# htmx for air-gapped clusters and the browser tests, from the npm registry.
htmx: $(STAMP)
	$(BIN)/python scripts/fetch_htmx.py

clean:
	rm -rf $(VENV) t2v-data
