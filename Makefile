# otsentry: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_CAPTURE := replays/demo-polling.pcap
# A 40-minute scenario (10 min to learn from, then a function-code sweep by a new host), generated on demand.
DEMO_SCENARIO := replays/generated/fc_sweep-seed7.pcap

.PHONY: demo test venv tools services services-stop services-deps unit bench bench-kafka bench-elastic bench-live clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q otsentry >/dev/null  # an editable install writes no bytecode; start-up is speed
	touch $@

venv: $(STAMP)

## tools: the reference decoder used by tests (Debian's tshark), the browser that opens the replay report, and
## what live-capture tests replay and compare with (tcpreplay/tcprewrite, tcpdump, iproute2's ip)
tools:
	@{ command -v tcpreplay >/dev/null 2>&1 && command -v tcpdump >/dev/null 2>&1 && command -v ip >/dev/null 2>&1; } || { \
	  echo "installing tcpreplay, tcpdump and iproute2 (Debian packages) ..."; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcpreplay tcpdump iproute2 >/dev/null; }
	@command -v tshark >/dev/null 2>&1 || { \
	  echo "installing tshark (Debian package) ..."; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null; }
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package) ..."; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

## demo: the whole pipeline on a bundled scenario: learn 10 minutes, then print and save the alerts
demo: venv $(DEMO_SCENARIO)
	$(BIN)/otsentry inspect --summary $(DEMO_CAPTURE)
	$(BIN)/otsentry run $(DEMO_SCENARIO) --learn-for 10m --alerts-out out/demo-alerts.jsonl
	@echo "alerts as ECS JSON lines: out/demo-alerts.jsonl"

$(DEMO_SCENARIO): | venv
	mkdir -p $(dir $@)
	$(BIN)/python -m otsentry.synth.scenarios fc_sweep $@ --seed 7 --labels $(@:.pcap=.csv) > $(@:.pcap=.json)

## services: real external services for tests and development, started in the background: Apache Kafka on
## 127.0.0.1:9092 and Elasticsearch on 127.0.0.1:9200. Downloaded once into ~/.cache/otsentry/services (as root:
## /var/cache/otsentry, readable by the Elasticsearch service user); OTSENTRY_CACHE overrides.
services: services-deps
	$(PYTHON) -m services.kafka start
	$(PYTHON) -m services.elasticsearch start

services-stop:
	-$(PYTHON) -m services.elasticsearch stop
	$(PYTHON) -m services.kafka stop

## services-deps: a JDK (17 or newer) and Maven, which fetch and run the services (Debian packages)
services-deps:
	@{ command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; } || { \
	  echo "installing a JDK and Maven (Debian packages) ..."; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jdk-headless maven >/dev/null; }

## test: everything, with the real external tools and services
test: venv tools services
	$(BIN)/python -m pytest

unit: venv
	$(BIN)/python -m pytest tests/unit

bench: venv tools
	$(BIN)/python benchmarks/collect.py

bench-kafka: venv services
	$(BIN)/python benchmarks/kafka.py

bench-elastic: venv services
	$(BIN)/python benchmarks/elastic.py

bench-live: venv tools services
	$(SUDO) $(BIN)/python benchmarks/live.py --kafka 127.0.0.1:9092

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis benchmarks/out
