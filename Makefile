# raftcron: the two commands of the README, and the gate CI runs.
#   make run    a local 3-node cluster on 127.0.0.1:7001-7003 (data in ./raftcron-data)
#   make test   format check, clippy, and the whole test suite
# The build cache lives outside the clone so a fresh clone reuses it.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/raftcron-target
CARGO ?= cargo
# Test builds compile in the node's failpoints (crash points armed by FAILPOINTS); releases never.
TEST_FEATURES ?= --features raftcron-node/failpoints,raftcron-tests/failpoints

.PHONY: deps run build test fmt lint unit doc

deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release -p raftcron-node --bin raftcron

run: build
	$(CARGO_TARGET_DIR)/release/raftcron dev --nodes 3 --data-dir ./raftcron-data --port 7001

fmt:
	$(CARGO) fmt --all -- --check

lint: deps
	$(CARGO) clippy --workspace --all-targets $(TEST_FEATURES) -- -D warnings

# The integration tests in tests/ run the debug `raftcron` binary, so build every target first.
unit: deps
	$(CARGO) build --workspace --all-targets $(TEST_FEATURES)
	$(CARGO) test --workspace --no-fail-fast $(TEST_FEATURES)

doc: deps
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

test: deps fmt lint doc unit

# Every scenario of raftcron-bench on a fresh local 3-node release cluster, and the HTTP comparison
# with etcd (scripts/bench-http.sh, needs wrk and etcd); results in docs/benchmarks/results/.
.PHONY: bench
BENCH_OUT ?= docs/benchmarks/results/$(shell date -u +%Y-%m-%d)
bench: build
	$(CARGO) build --release -p raftcron-client --bin raftcron-bench
	$(CARGO_TARGET_DIR)/release/raftcron-bench --bin $(CARGO_TARGET_DIR)/release/raftcron \
	  --json $(BENCH_OUT).json --markdown $(BENCH_OUT).md all
	scripts/bench-http.sh $(CARGO_TARGET_DIR)/release/raftcron $(CARGO_TARGET_DIR)/release/raftcron-bench \
	  $(BENCH_OUT)-http.tsv
