#!/usr/bin/env bash
# Where a create's time goes inside Raft: a local 3-node cluster (raftcron-bench serve), wrk
# creating jobs at 64 connections against its leader (or a follower with ROLE=follower) for
# DURATION seconds, then the Raft stage histograms each node exported over those seconds
# (docs/observability.md): proposal wait, entry write, log sync, apply, and the AppendEntries
# round trip per peer. Means and histogram quantiles, per node.
#
#   scripts/raft-stages.sh target/release/raftcron target/release/raftcron-bench [out.txt]
#
# Needs wrk, curl and python3. Traffic stays on 127.0.0.1; the cluster is stopped at the end.
set -euo pipefail
R=$1
B=$2
OUT=${3:-/dev/null}
ROLE=${ROLE:-leader}
DURATION=${DURATION:-10}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }

WORK=$(mktemp -d)
SERVE=
cleanup() {
  [ -n "$SERVE" ] && kill -TERM "$SERVE" 2>/dev/null && wait "$SERVE" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

"$B" --bin "$R" serve --env-file "$WORK/env" --for 600 >"$WORK/serve.log" 2>&1 &
SERVE=$!
for _ in $(seq 1 300); do [ -s "$WORK/env" ] && break; sleep 0.2; done
[ -s "$WORK/env" ] || { echo "the cluster did not start: $(tail -3 "$WORK/serve.log")" >&2; exit 1; }
# shellcheck disable=SC1091
. "$WORK/env"
NODE1=${RAFTCRON_URL%%,*}
TARGET=$(curl -fsS -H "Authorization: Bearer $RAFTCRON_API_KEY" "$NODE1/api/v1/cluster" | ROLE=$ROLE python3 -c '
import json, os, sys
c = json.load(sys.stdin)["cluster"]
want = os.environ["ROLE"] == "leader"
print(next(m["addr"] for m in c["members"] if (m["node_id"] == c["leader_id"]) == want))')

"$(dirname "$0")/create-lua.sh" "$RAFTCRON_API_KEY" stage >"$WORK/create.lua"

scrape() {
  local i=1
  for url in ${RAFTCRON_URL//,/ }; do
    curl -fsS "$url/metrics" >"$WORK/$1-$i.txt"
    i=$((i + 1))
  done
}

scrape before
echo "wrk: 64 connections, ${DURATION} s, creates at the $ROLE ($TARGET)" >&2
wrk -t2 -c64 -d"${DURATION}s" -s "$WORK/create.lua" "http://$TARGET" | grep -E 'Latency|Requests/sec' | tee -a "$OUT"
scrape after

WORK=$WORK python3 - <<'EOF' | tee -a "$OUT"
import os, re
work = os.environ["WORK"]

def load(path):
    out = {}
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out

def delta(a, b, key):
    return b.get(key, 0.0) - a.get(key, 0.0)

def quantile(buckets, q):
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return 0.0
    want, lo, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= want:
            if le == float("inf"):
                return lo
            return lo + (le - lo) * (want - below) / max(count - below, 1e-9)
        lo, below = le, count
    return lo

def histogram(a, b, name, label=""):
    sel = "{" + label + "}" if label else ""
    count = delta(a, b, f"{name}_count{sel}")
    if count <= 0:
        return None
    buckets = []
    for key in b:
        m = re.match(re.escape(name) + r"_bucket\{(.*)\}$", key)
        if m and (not label or label in m.group(1)):
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), delta(a, b, key)))
    buckets.sort()
    mean = delta(a, b, f"{name}_sum{sel}") / count * 1000
    return count, mean, quantile(buckets, 0.5) * 1000, quantile(buckets, 0.99) * 1000

print(f"{'node  series':<46} {'count':>8} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
node = 1
while os.path.exists(f"{work}/before-{node}.txt"):
    a, b = load(f"{work}/before-{node}.txt"), load(f"{work}/after-{node}.txt")
    rows = [(s, "") for s in ("proposal_wait_seconds", "write_duration_seconds",
                              "log_sync_duration_seconds", "apply_duration_seconds")]
    rows += [("append_round_trip_seconds", f'peer="{p}"') for p in range(1, 8)]
    for series, label in rows:
        h = histogram(a, b, "raftcron_raft_" + series, label)
        if h and h[0] > 1:
            title = f"n{node}  {series}" + (f" {label}" if label else "")
            print(f"{title:<46} {h[0]:>8.0f} {h[1]:>8.3f} {h[2]:>8.3f} {h[3]:>8.3f}")
    entries = delta(a, b, "raftcron_raft_proposal_batch_size_count")
    if entries > 0:
        commands = delta(a, b, "raftcron_raft_proposal_batch_size_sum")
        print(f"n{node}  {entries:.0f} entries, {commands / entries:.1f} commands each")
    node += 1
EOF
