#!/usr/bin/env bash
# The HTTP comparison of docs/benchmarks.md: the same load generator (wrk) against a local
# 3-node raftcron cluster and a local 3-member etcd cluster (its HTTP/JSON gateway), on
# 127.0.0.1 only, one right after the other.
#
#   scripts/bench-http.sh RAFTCRON_BIN BENCH_BIN [OUT.tsv]
#
# RAFTCRON_BIN is the release `raftcron`, BENCH_BIN the release `raftcron-bench` (it starts and
# stops the raftcron cluster: `raftcron-bench serve`). Needs wrk, etcd and etcdctl
# (apt-get install -y wrk etcd-server etcd-client). Every case runs DURATION seconds (default 10)
# against the leader of each cluster and against a follower (ROLES, default "leader follower";
# a follower forwards every write to its leader, so each system is compared in the same role;
# SYSTEMS, default "etcd raftcron", runs only the systems it names). etcd runs twice: with Go's
# default threads, and with GOMAXPROCS set to its members' share of the cores, the share that
# raftcron-bench gives each raftcron node (--worker-threads); a ratio is taken against the
# faster of the two.
# Every process started here is stopped on exit. Each line also gives the CPU time per request
# (user + system, from /proc) of the member measured, of the two other members together, and of
# the whole machine (the load generator and the kernel's softirqs included), so a ratio between
# the systems can be read against where each spends its CPU.
set -euo pipefail

RAFTCRON_BIN=${1:?usage: $0 RAFTCRON_BIN BENCH_BIN [OUT.tsv]}
BENCH_BIN=${2:?usage: $0 RAFTCRON_BIN BENCH_BIN [OUT.tsv]}
OUT=${3:-/dev/null}
[ "$OUT" = /dev/null ] || mkdir -p "$(dirname "$OUT")"
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
ROLES=${ROLES:-leader follower}
SYSTEMS=${SYSTEMS:-etcd raftcron}
for tool in wrk curl $([[ $SYSTEMS == *etcd* ]] && echo etcd etcdctl); do
  command -v "$tool" >/dev/null || { echo "bench-http: $tool is missing (apt-get install -y wrk etcd-server etcd-client curl)" >&2; exit 1; }
done

WORK=$(mktemp -d -t raftcron-bench-http-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wrk script: METHOD PATH BODY and an optional API key; %d in the body becomes an 8-digit
# counter, so every create has its own name and every put its own key (digits are base64
# characters, so a base64 prefix whose length is a multiple of 4 plus 8 digits stays valid).
lua() {
  local file=$1 method=$2 path=$3 body=$4 auth=${5:-} header=""
  [ -n "$auth" ] && header="wrk.headers[\"Authorization\"] = \"Bearer $auth\""
  cat >"$file" <<EOF
local n = 0
wrk.method = "$method"
wrk.headers["Content-Type"] = "application/json"
$header
request = function()
  n = n + 1
  local body = string.gsub('$body', "%%d", string.format("%08d", n))
  if wrk.method == "GET" then body = nil end
  return wrk.format(nil, "$path", nil, body)
end
EOF
}

# CPU ticks (user + system) used so far by the processes $@ (fields 14 and 15 of /proc/PID/stat),
# and by the whole machine (user, nice, system, irq and softirq of /proc/stat).
ticks() { local t=0 pid; for pid in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$t"; }
machine_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
# Microseconds of CPU per request: ticks ($1) over requests ($2).
per_request() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { printf "%.0f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }

# The pid of the member at URL $1, then the other members' pids; $2 and $3 are the members'
# URLs and pids, comma-separated, in the same order.
member_pids() {
  local urls pids i first=() rest=()
  IFS=, read -r -a urls <<<"$2"; IFS=, read -r -a pids <<<"$3"
  for i in "${!urls[@]}"; do
    if [ "$1" = "${urls[$i]}" ]; then first+=("${pids[$i]}"); else rest+=("${pids[$i]}"); fi
  done
  echo "${first[@]}" "${rest[@]}"
}

# Runs wrk against the member whose pid is $7 (the other members' pids follow) and prints one
# TSV line: system role case connections req/s p50 p99 non2xx errors, then the CPU microseconds
# per request of that member, of the other members and of the machine.
measure() {
  local system=$1 role=$2 case=$3 conns=$4 url=$5 script=$6 target=$7 threads=$THREADS
  shift 7
  [ "$conns" -lt "$threads" ] && threads=$conns
  echo "bench-http: $system at its $role ($url) $case c=$conns (${DURATION}s)..." >&2
  local t0 o0 m0 out
  t0=$(ticks "$target"); o0=$(ticks "$@"); m0=$(machine_ticks)
  out=$(wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency --timeout 10s -s "$script" "$url")
  local dt dothers dm requests rps p50 p99 non2xx errs
  dt=$(($(ticks "$target") - t0)); dothers=$(($(ticks "$@") - o0)); dm=$(($(machine_ticks) - m0))
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
  errs=$(awk '/Socket errors:/ {print $0}' <<<"$out" | tr -s ' ' | cut -d' ' -f3-); errs=${errs:-none}
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$role" "$case" "$conns" "$rps" "$p50" "$p99" \
    "$non2xx" "$errs" "$(per_request "$dt" "$requests")" "$(per_request "$dothers" "$requests")" \
    "$(per_request "$dm" "$requests")" | tee -a "$OUT"
}

printf 'system\trole\tcase\tconnections\treq_per_s\tp50\tp99\tnon_2xx\tsocket_errors\tcpu_us_member\tcpu_us_others\tcpu_us_machine\n' | tee "$OUT"

# ---- etcd: 3 members on 127.0.0.1 -------------------------------------------------------------
# Runs every case against a fresh etcd cluster, named $1 in the output, its members started with
# GOMAXPROCS=$2 ("" for Go's default, a thread per core).
run_etcd() {
  local name=$1 procs=$2 i role
  local -a cport pport members
  for i in 1 2 3; do cport[$i]=$(free_port); pport[$i]=$(free_port); done
  local initial="e1=http://127.0.0.1:${pport[1]},e2=http://127.0.0.1:${pport[2]},e3=http://127.0.0.1:${pport[3]}"
  rm -rf "$WORK"/etcd-*
  for i in 1 2 3; do
    env ${procs:+GOMAXPROCS=$procs} etcd --name "e$i" --data-dir "$WORK/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:${cport[$i]}" --advertise-client-urls "http://127.0.0.1:${cport[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${pport[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pport[$i]}" \
      --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token bench \
      >"$WORK/etcd-$i.log" 2>&1 &
    PIDS+=($!)
  done
  local endpoints="127.0.0.1:${cport[1]},127.0.0.1:${cport[2]},127.0.0.1:${cport[3]}"
  for _ in $(seq 1 100); do ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health >/dev/null 2>&1 && break; sleep 0.2; done
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint health >&2
  ETCDCTL_API=3 etcdctl --endpoints "$endpoints" put bench-read-key bench-value >/dev/null
  local urls="http://127.0.0.1:${cport[1]},http://127.0.0.1:${cport[2]},http://127.0.0.1:${cport[3]}"
  local pids; pids=$(IFS=,; echo "${PIDS[*]}")
  for role in $ROLES; do
    # The client URL of etcd's leader, or of a follower.
    local url
    url=$(ETCDCTL_API=3 etcdctl --endpoints "$endpoints" endpoint status -w json | python3 -c '
import json, sys
want = sys.argv[1]
for e in json.load(sys.stdin):
    leads = e["Status"]["header"]["member_id"] == e["Status"]["leader"]
    if leads == (want == "leader"):
        print("http://" + e["Endpoint"]); break
' "$role")
    [ -n "$url" ] || { echo "bench-http: etcd has no $role" >&2; exit 1; }
    read -r -a members <<<"$(member_pids "$url" "$urls" "$pids")"
    measure "$name" "$role" "put" 1 "$url" "$WORK/put.lua" "${members[@]}"
    measure "$name" "$role" "put" 64 "$url" "$WORK/put.lua" "${members[@]}"
    measure "$name" "$role" "range serializable" 64 "$url" "$WORK/range-serial.lua" "${members[@]}"
    measure "$name" "$role" "range linearizable" 64 "$url" "$WORK/range-lin.lua" "${members[@]}"
  done
  for i in "${PIDS[@]}"; do kill -TERM "$i" 2>/dev/null || true; done
  for i in "${PIDS[@]}"; do wait "$i" 2>/dev/null || true; done
  PIDS=()
}

if [[ $SYSTEMS == *etcd* ]]; then
  KEY_B64=$(printf 'bench-read-key' | base64)
  lua "$WORK/put.lua" POST /v3/kv/put '{"key":"YmVuY2hrZXkt%d","value":"YmVuY2gtdmFsdWU="}'
  lua "$WORK/range-serial.lua" POST /v3/kv/range "{\"key\":\"$KEY_B64\",\"serializable\":true}"
  lua "$WORK/range-lin.lua" POST /v3/kv/range "{\"key\":\"$KEY_B64\"}"
  # Go's default (a thread per core in each member), then the cores shared out between the
  # three members as raftcron-bench shares them between raftcron's nodes (--worker-threads).
  run_etcd etcd ""
  SHARE=$(( $(nproc) / 3 )); [ "$SHARE" -ge 1 ] || SHARE=1
  [ "$SHARE" -ge "$(nproc)" ] || run_etcd "etcd/GOMAXPROCS=$SHARE" "$SHARE"
fi

# ---- raftcron: 3 nodes started by raftcron-bench ------------------------------------------------
if [[ $SYSTEMS == *raftcron* ]]; then
"$BENCH_BIN" --bin "$RAFTCRON_BIN" serve --env-file "$WORK/raftcron.env" --for 1800 2>"$WORK/serve.log" &
PIDS+=($!)
for _ in $(seq 1 300); do [ -s "$WORK/raftcron.env" ] && break; sleep 0.2; done
[ -s "$WORK/raftcron.env" ] || { cat "$WORK/serve.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$WORK/raftcron.env"
NODE1=${RAFTCRON_URL%%,*}
# The URL of raftcron's leader, or of a follower ($1), from node 1's view of the cluster.
raftcron_url() {
  curl -sf -H "Authorization: Bearer $RAFTCRON_API_KEY" "$NODE1/api/v1/cluster" | python3 -c '
import json, sys
want, urls = sys.argv[1], sys.argv[2].split(",")
c = json.load(sys.stdin)["cluster"]
for m in c["members"]:
    if (m["node_id"] == c["leader_id"]) == (want == "leader"):
        print(next(u for u in urls if u.endswith("//" + m["addr"]))); break
' "$1" "$RAFTCRON_URL"
}
JOB='{"name":"bench-%d","url":"http://127.0.0.1:9/bench","method":"POST","cron_expression":"0 0 1 1 *"}'
JOB_ID=$(curl -sf -H "Authorization: Bearer $RAFTCRON_API_KEY" -H 'Content-Type: application/json' \
  -d "${JOB//%d/0}" "$NODE1/api/v1/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])')
lua "$WORK/create.lua" POST /api/v1/jobs "$JOB" "$RAFTCRON_API_KEY"
lua "$WORK/get-stale.lua" GET "/api/v1/jobs/$JOB_ID?consistency=stale" "" "$RAFTCRON_API_KEY"
lua "$WORK/get-lin.lua" GET "/api/v1/jobs/$JOB_ID" "" "$RAFTCRON_API_KEY"
for role in $ROLES; do
  NODE=$(raftcron_url "$role")
  [ -n "$NODE" ] || { echo "bench-http: raftcron has no $role" >&2; exit 1; }
  read -r -a MEMBERS <<<"$(member_pids "$NODE" "$RAFTCRON_URL" "$RAFTCRON_PIDS")"
  measure raftcron "$role" "create" 1 "$NODE" "$WORK/create.lua" "${MEMBERS[@]}"
  measure raftcron "$role" "create" 64 "$NODE" "$WORK/create.lua" "${MEMBERS[@]}"
  measure raftcron "$role" "get stale" 64 "$NODE" "$WORK/get-stale.lua" "${MEMBERS[@]}"
  measure raftcron "$role" "get linearizable" 64 "$NODE" "$WORK/get-lin.lua" "${MEMBERS[@]}"
done
fi
echo "bench-http: done" >&2
