# DistrictPulse: `make demo` runs the main job end to end, `make test` runs every check.
# Both create .venv, install the project and start the project's own Mosquitto and InfluxDB.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test services down lint typecheck pytest clean system-deps fuzz

# System packages the tests use besides the services (which `districtpulse services up` installs itself):
# python3-venv on Debian/Ubuntu, docker-compose (1.29, offline validation of docker-compose.yml only),
# chromium + chromium-driver (the dashboard's and the report's real-browser tests, the report's PDF),
# poppler-utils (pdftoppm renders the report's PDF in its test), shellcheck (the deploy scripts),
# mosquitto-clients (a third-party client following only the published wire contract, docs/contract/asyncapi.yaml).
system-deps:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null && command -v docker-compose >/dev/null \
		&& command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		&& command -v mosquitto_pub >/dev/null && command -v pdftoppm >/dev/null && command -v shellcheck >/dev/null || { \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
			python3-venv docker-compose chromium chromium-driver mosquitto-clients poppler-utils shellcheck >/dev/null; }

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

services: $(STAMP)
	$(BIN)/districtpulse services up

demo: services
	$(BIN)/districtpulse demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: services
	$(BIN)/pytest

test: lint typecheck pytest

# The long fuzzing run: 1,000,000 mutated inputs per decoder (about 15 min on one core); the short one is in
# pytest (tests/fuzz/test_fuzz_short.py). Findings are written to .fuzz-findings/.
fuzz: $(STAMP)
	PYTHONPATH=. nice -n 10 $(BIN)/python -m tests.fuzz --inputs 1000000

down:
	@[ -f .services/demo/dashboard.pid ] && kill "$$(cat .services/demo/dashboard.pid)" 2>/dev/null; rm -f .services/demo/dashboard.pid; true
	$(BIN)/districtpulse services down

clean: down
	rm -rf $(VENV) .services .mypy_cache .ruff_cache .pytest_cache
