#!/usr/bin/env bash
# A/B of job creates between raftcron builds, the way docs/benchmarks.md compares them: for each
# round, each build in turn gets a fresh local 3-node cluster (`raftcron-bench serve`), then wrk
# creates jobs through node 1 (a follower) with 1 connection for 10 s, then 64 connections for
# 10 s. Alternating the builds spreads the machine's drift over all of them.
#
#   scripts/bench-ab.sh BENCH_BIN OUT.txt RAFTCRON_BIN...
#
# Prints one line per build and round: round, build, c=1 req/s and p50, c=64 req/s, p50 and p99.
# Needs wrk (apt-get install -y wrk). Everything on 127.0.0.1; every cluster is stopped.
set -euo pipefail
BENCH_BIN=${1:?usage: $0 BENCH_BIN OUT.txt RAFTCRON_BIN...}
OUT=${2:?usage: $0 BENCH_BIN OUT.txt RAFTCRON_BIN...}
shift 2
[ $# -ge 1 ] || { echo "bench-ab: name at least one raftcron binary" >&2; exit 1; }
ROUNDS=${ROUNDS:-3}
command -v wrk >/dev/null || { echo "bench-ab: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
WORK=$(mktemp -d -t raftcron-bench-ab-XXXXXX)
SERVE=""
cleanup() {
  [ -n "$SERVE" ] && kill -TERM "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    rm -f "$WORK/env"
    "$BENCH_BIN" --bin "$bin" serve --env-file "$WORK/env" --for 300 >"$WORK/serve.log" 2>&1 &
    SERVE=$!
    for _ in $(seq 1 300); do [ -s "$WORK/env" ] && break; sleep 0.2; done
    [ -s "$WORK/env" ] || { cat "$WORK/serve.log" >&2; exit 1; }
    # shellcheck disable=SC1091
    . "$WORK/env"
    "$(dirname "$0")/create-lua.sh" "$RAFTCRON_API_KEY" ab >"$WORK/create.lua"
    node1=${RAFTCRON_URL%%,*}
    c1=$(wrk -t1 -c1 -d10s --latency -s "$WORK/create.lua" "$node1" | awk '/^Requests\/sec/ {r=$2} $1=="50%" {p=$2} END {print r, p}')
    c64=$(wrk -t2 -c64 -d10s --latency -s "$WORK/create.lua" "$node1" | awk '/^Requests\/sec/ {r=$2} $1=="50%" {p=$2} $1=="99%" {q=$2} END {print r, p, q}')
    echo "$round $bin c1: $c1 c64: $c64" | tee -a "$OUT"
    kill -TERM "$SERVE"; wait "$SERVE" 2>/dev/null || true; SERVE=""
  done
done
