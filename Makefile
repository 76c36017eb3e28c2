# One command for each usual job; the README says which.
#   make demo   set up everything, bring up the local stack, place real calls
#   make test   set up everything, run the whole suite (unit, integration, e2e) on Asterisk 22
#   make test-e2e-host  the call paths' end-to-end tests again on the host's own Asterisk (16.28)
#   make run    the local stack + API + controller in the foreground
#   make lint   ruff + mypy --strict
#   make check-wheel  build the service's wheel, check its files, install it into a fresh venv
#               outside the checkout and import it from there (no dev kit, prompts found)
#   make prompts  render the call prompts (src/ivr_auth/data/prompts/) from their manifest.yaml
#   make bench  capacity and latency on a stack of its own, beside a dialplan-only baseline
#               (.run/bench/report.{json,md}, latency.png; BENCH_QUICK=1 for two short steps)
#   make drill  the failure drills on a stack of their own, on Asterisk 22 then the host's
#               (.run/drill/report.{json,md}; DRILL_ASTERISK=22|host|both, DRILL_ONLY=drill,...)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup system venv demo run test test-e2e-host test-unit lint check-wheel prompts bench drill stack-up stack-down stack-status clean

setup: system venv

# Debian/Ubuntu packages: Asterisk, SIPp, Postgres, sox, Chromium, baresip; then, where the
# distribution has no Asterisk 20 or later (Debian 12), Asterisk 22 in a Debian unstable tree
# (/var/lib/ivr-auth-dev/asterisk22, about 30 s once, cached); the test SMSC (Node.js and the
# npm smpp package, /var/lib/ivr-auth-dev/smsc, cached); the SMS gateway tier (Jasmin 0.11.1 with
# rabbitmq-server and redis-server, /var/lib/ivr-auth-dev/jasmin, about 20 s once, cached).
# Idempotent; root or sudo.
system:
	@bash scripts/setup-system.sh
	@bash scripts/setup-asterisk22.sh
	@bash scripts/setup-smsc.sh
	@bash scripts/setup-jasmin.sh

venv: $(STAMP)

# The service (src/ivr_auth) and, beside it, the development kit (devkit/):
# the embedded stack, handsets, demo and bench, never in the service's wheel.
$(STAMP): pyproject.toml devkit/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]' -e ./devkit
	@touch $(STAMP)

demo: setup
	@$(VENV)/bin/ivr-auth-dev demo

# The local stack, the HTTP API and a controller in the foreground (Ctrl-C drains calls and stops).
run: setup
	@$(VENV)/bin/ivr-auth-dev run

test: setup
	@$(PY) -m pytest

# The end-to-end tests of the call paths again on the host's own Asterisk (Debian 12: 16.28
# from Debian 11), while `make test` runs everything on Asterisk 22: both releases stay
# supported. Left out here, because they run both Asterisks already (operator_install; and
# `make drill`, which kills a controller and caps two controllers on one trunk on both: the
# controllers and shared_trunk files) or do not depend on which Asterisk answers (the demo
# and CLI, the dashboard's browser, the wheel, load scenarios, metrics, webhooks, two nodes,
# SMS).
E2E_CALL_PATHS := $(addprefix tests/e2e/test_,call.py verification.py voice.py inbound.py trunks.py \
	key_timing.py media.py recovery.py doctor.py handsets.py prompts_heard.py softphone.py)
test-e2e-host: setup
	@IVR_AUTH_TEST_ASTERISK_ROOT=host $(PY) -m pytest $(E2E_CALL_PATHS)

test-unit: venv
	@$(PY) -m pytest tests/unit

lint: venv
	@$(VENV)/bin/ruff check src devkit tests scripts
	@$(VENV)/bin/ruff format --check src devkit tests scripts
	@$(VENV)/bin/mypy

# About 15 s: pip installs the wheel's dependencies (from its cache) into a temporary venv.
check-wheel: venv
	@$(PY) scripts/check-wheel.py

# The call prompts, from src/ivr_auth/data/prompts/manifest.yaml: installs Open JTalk, flite and
# sox (root or sudo), then writes the WAV files that changed. They are committed.
prompts: venv
	@bash scripts/setup-prompts.sh
	@$(PY) scripts/make-prompts.py

# Loads both cores for a few minutes: run it alone (the suite's timings would suffer).
bench: setup
	@$(PY) -m ivr_auth_devkit.bench

# A controller killed, Asterisk and Postgres restarted, the events websocket dropped, two
# controllers on one capped trunk; fails when a request is lost or stuck, dialled twice, or
# the trunk's cap is exceeded (docs/drills.md). About 80 s per Asterisk when all pass.
drill: setup
	@$(PY) -m ivr_auth_devkit.drill

stack-up: setup
	@$(VENV)/bin/ivr-auth-dev stack up

stack-down: venv
	@$(VENV)/bin/ivr-auth-dev stack down

stack-status: venv
	@$(VENV)/bin/ivr-auth-dev stack status

clean: stack-down
	rm -rf .run
