# calico-routereflector. Every target runs on Debian's own Python, with Debian's packages:
# what passes here is what the .deb ships.
PYTHON      := /usr/bin/python3
PYTEST_ARGS ?=

# Runtime dependencies of the product (what the .deb depends on) ...
RUNTIME_DEBS := bird python3-etcd3 python3-sdnotify python3-jinja2
# ... and what the tests and the demo need on top: a real etcd, network namespaces, openssl
# for throw-away certificates, hypothesis for property tests, python3-kubernetes as a real
# client of the test Kubernetes API server (tests/kubeapi; its kubectl is Debian's
# kubernetes-client, unpacked by the tests, since it conflicts with a preinstalled kubectl),
# the daemon's metrics (python3-prometheus-client), promtool for the alert rules' tests
# (prometheus) and the BIRD exporter the package works beside (prometheus-bird-exporter).
TEST_DEBS := $(RUNTIME_DEBS) etcd-server etcd-client python3-pytest python3-hypothesis python3-yaml python3-kubernetes \
             python3-prometheus-client prometheus prometheus-bird-exporter iproute2 procps openssl
# Building and system-testing the package: a real systemd in a container.
PACKAGE_DEBS := debhelper dh-python python3-all python3-setuptools pybuild-plugin-pyproject \
                lintian debootstrap systemd-container build-essential systemd

# Driving the Ansible role against the system test's container.
ANSIBLE_DEBS := ansible-core ansible-lint openssh-client

.PHONY: help deps deps-package deps-ansible test test-unit test-integration test-system test-ansible bench bench-propagation bench-flavours reliability-doc demo deb clean

help:
	@echo "make demo         run the reflector end to end in throw-away network namespaces"
	@echo "make test         install what the tests need, run the whole suite"
	@echo "make test-unit    only the fast tests (no root, no etcd, no BIRD)"
	@echo "make deb          build the Debian package into dist/"
	@echo "make test-system  build the .deb, install and run it under a real systemd (nspawn)"
	@echo "make test-ansible the Ansible role against that container, over SSH"
	@echo "make bench        change-to-BIRD latency, bursts, cold start at 1,000-10,000 nodes"
	@echo "                  (etcd v1, etcd v3 and the Kubernetes API datastore)"
	@echo "make bench-propagation  routes through the reflector to 1,000 and 5,000 clients, BIRD 1.6/2/3"
	@echo "make bench-flavours     BIRD 1.6, 2 and 3 under the reflector: cold start, changes, RSS, CPU"

# Installs only what is missing, so a prepared machine pays nothing.
deps:
	@./tools/apt-ensure $(TEST_DEBS)

deps-package:
	@./tools/apt-ensure $(PACKAGE_DEBS)

deps-ansible:
	@./tools/apt-ensure $(ANSIBLE_DEBS)

test: deps deps-package deps-ansible
	RR_REQUIRE_ALL=1 $(PYTHON) -m pytest -v -ra --durations=25 $(PYTEST_ARGS) tests

# No root, no etcd, no BIRD (tests/test_unit_sandbox.py proves it); the property tests at a
# quarter of their cases (`make test` runs them all).
test-unit:
	RR_PROPERTY_SCALE=$${RR_PROPERTY_SCALE:-0.25} $(PYTHON) -m pytest -q -p no:cacheprovider \
		-m "not integration and not system" $(PYTEST_ARGS) tests

test-integration: deps
	RR_REQUIRE_ALL=1 $(PYTHON) -m pytest -v -ra -m integration $(PYTEST_ARGS) tests

test-system: deps deps-package
	RR_REQUIRE_ALL=1 $(PYTHON) -m pytest -v -ra -m system $(PYTEST_ARGS) tests/system

test-ansible: deps deps-package deps-ansible
	RR_REQUIRE_ALL=1 $(PYTHON) -m pytest -v -ra -m system $(PYTEST_ARGS) tests/ansible

# How fast a change reaches BIRD at 1,000 to 10,000 nodes; rewrites docs/benchmarks.md.
# BENCH_ARGS=--quick for a one-minute run at 1,000 nodes.
bench: deps
	@./tools/apt-ensure python3-matplotlib
	$(PYTHON) bench/run.py $(BENCH_ARGS)

# How fast the reflector's BIRD (each flavour) passes routes on to N clients; rewrites its
# section of docs/benchmarks.md. PROPAGATION_ARGS="--sizes 200 --repeat 1" for a quick look.
bench-propagation: deps
	@./tools/apt-ensure nftables
	$(PYTHON) bench/propagation.py $(PROPAGATION_ARGS)

# BIRD 1.6, 2 and 3 under the same daemon at 1,000 to 10,000 sessions; rewrites its section of
# docs/benchmarks.md. FLAVOURS_ARGS="--sizes 200 --changes 10 --idle 2" for a quick look.
bench-flavours: deps
	$(PYTHON) bench/flavours.py $(FLAVOURS_ARGS)

# After `make test`: the tables of docs/reliability.md from the figures the tests recorded.
reliability-doc:
	$(PYTHON) tools/reliability_report.py --update docs/reliability.md

demo: deps
	$(PYTHON) tools/demo.py

deb: deps-package
	./debian/build.sh dist

clean:
	rm -rf dist build .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
