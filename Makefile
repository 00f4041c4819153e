# The README's two commands: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install run test check lint typecheck pytest test-deps kafka rabbitmq kube-deps bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/kbroker run --config examples/ --data .run/data

# Real components the tests need: Kafka jars from Maven Central, kube-apiserver/etcd/kn from the
# Go module proxy, Debian's rabbitmq-server package (installed, its system service never started).
# Each script caches or installs only what is missing.
test-deps: install
	@if [ -f hack/kafka.py ]; then $(PY) hack/kafka.py fetch; fi
	@if [ -f hack/rabbitmq.py ]; then $(PY) hack/rabbitmq.py fetch; fi
	@if [ -f hack/kube.sh ]; then bash hack/kube.sh build; fi

kafka: install
	$(PY) hack/kafka.py fetch
	$(PY) hack/kafka.py start --foreground

# A private RabbitMQ node on loopback (its own name, cookie, ports and epmd); prints its AMQP URL.
rabbitmq: install
	$(PY) hack/rabbitmq.py fetch
	$(PY) hack/rabbitmq.py start --foreground

# The Python trees only (ruff also formats code blocks in Markdown, which docs quote freely).
PYTHON_SOURCES := core ingress filter controller kbroker test hack examples

lint: install
	$(VENV)/bin/ruff format --check $(PYTHON_SOURCES)
	$(VENV)/bin/ruff check $(PYTHON_SOURCES)

typecheck: install
	$(PY) hack/typecheck.py

check: lint typecheck

pytest: install test-deps
	$(PY) -m pytest -q -ra

test: check pytest

bench: install
	$(VENV)/bin/kbroker bench --help

clean:
	rm -rf .run .mypy_cache .ruff_cache
