# msp: the two commands a user needs are `make demo` and `make test`. Run as root on Debian 12.
VENV ?= .venv
PY := $(VENV)/bin/python
export MSP_VENV := $(VENV)

.PHONY: install demo test unit integration check-config bench-failover bench-policy bench-probes bench-edge-failover bench-containment bench-scale bench-edge-scale bench-throughput bench-flap bench-flood bench-dashboard bench-bootstrap bench-qos bench-qos-hops bench-edge-shaper bench-api-hold lint

install:
	bash scripts/install.sh

demo: install
	$(PY) -m topologies.demo

test: install
	$(PY) -m pytest -q

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

check-config: install
	$(VENV)/bin/msp-check-config etc/reference.toml

bench-failover: install
	$(PY) -m bench.failover

bench-policy: install
	$(PY) -m bench.policy

bench-probes: install
	$(PY) -m bench.probes

bench-edge-failover: install
	$(PY) -m bench.edge_failover

bench-containment: install
	$(PY) -m bench.containment --runs 5
	$(PY) -m bench.containment --runs 3 --network-first

bench-scale: install
	$(PY) -m bench.scale

bench-edge-scale: install
	$(PY) -m bench.edge_scale

bench-throughput: install
	$(PY) -m bench.throughput

bench-flap: install
	$(PY) -m bench.flap

# Internet scan + ARP/ND storm + REST while ISP A fails (docs/design.md, Flood protection).
bench-flood: install
	$(PY) -m bench.flood

bench-dashboard: install
	$(PY) -m bench.dashboard

# Voice latency under bulk load with QoS on and off (realistic ISPs: rates and 250 ms buffers).
bench-qos: install
	$(PY) -m bench.qos

# Where the voice waits: bench-qos's load with tcpdump at every hop (topologies/hops.py).
bench-qos-hops: install
	$(PY) -m bench.qos_hops

# An edge shaper's restart at 100 to 10,000 homenets: with its journal, without (bench/edge_shaper_restart.py).
bench-edge-shaper: install
	$(PY) -m bench.edge_shaper_restart

# How long the controller's REST answers (edge shaping, health, homenets) hold its event loop (bench/api_hold.py).
bench-api-hold: install
	$(PY) -m bench.api_hold

# A blank MSPMB boots, leases its uplinks by DHCP and is provisioned over OVSDB (topologies/blank_box.py).
bench-bootstrap: install
	$(PY) -m bench.bootstrap --runs 3

lint: install
	$(VENV)/bin/pip install -q mypy ruff
	$(VENV)/bin/ruff check msp_controller topologies bench tests  # ruff.toml
	$(VENV)/bin/mypy --ignore-missing-imports msp_controller
