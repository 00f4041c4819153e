# The README's two commands: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test check lint typecheck pytest test-deps kafka nats rabbitmq kube-deps tilt bench fuzz clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/kbroker run --config examples/ --data .run/data

# Real components the tests need: Kafka jars from Maven Central, nats-server and
# kube-apiserver/etcd/kn from the Go module proxy, Debian's rabbitmq-server package (installed, its
# system service never started), Debian's chromium for the console's browser tests. Each script
# caches or installs only what is missing.
test-deps: install
	$(PY) hack/kafka.py fetch
	$(PY) hack/nats.py build
	$(PY) hack/rabbitmq.py fetch
	bash hack/kube.sh build
	bash hack/chromium.sh install

kafka: install
	$(PY) hack/kafka.py fetch
	$(PY) hack/kafka.py start --foreground

nats: install
	$(PY) hack/nats.py build
	$(PY) hack/nats.py start --foreground

# Tilt from the Go module proxy into .cache/bin/tilt (cold: longer than the rest of `make test`, so
# not a step of it; test/hack/test_tilt.py runs `tilt ci` once the binary is there).
tilt:
	bash hack/tilt.sh build

# A private RabbitMQ node on loopback (its own name, cookie, ports and epmd); prints its AMQP URL.
rabbitmq: install
	$(PY) hack/rabbitmq.py fetch
	$(PY) hack/rabbitmq.py start --foreground

# The Python trees only (ruff also formats code blocks in Markdown, which docs quote freely).
PYTHON_SOURCES := core ingress filter controller sources ui kbroker test hack examples

lint: install
	$(VENV)/bin/ruff format --check $(PYTHON_SOURCES)
	$(VENV)/bin/ruff check $(PYTHON_SOURCES)

typecheck: install
	$(PY) hack/typecheck.py

check: lint typecheck

pytest: install test-deps
	$(PY) -m pytest -q -ra

test: check pytest

# Long local fuzzing (coverage-guided with atheris when installed): FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 300
fuzz: install
	$(PY) hack/fuzz.py --seconds $(FUZZ_SECONDS)

bench: install
	$(VENV)/bin/kbroker bench --help

clean:
	rm -rf .run .mypy_cache .ruff_cache
