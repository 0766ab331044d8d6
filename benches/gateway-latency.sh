#!/usr/bin/env bash
# Gateway overhead benchmark (issue: gateway core).
#
# Runs the mock provider and `tollgate up` (release builds) on loopback, then drives
# non-streaming chat completions at a fixed rate with the open-loop load generator,
# alternating "direct to the mock" and "through the gateway" rounds in one run, so both see
# the same machine noise. Reports per-round p50/p99, the added latency (gateway minus
# direct, median over rounds) and the gateway's peak RSS (VmHWM).
#
#   benches/gateway-latency.sh [RATE] [SECONDS] [ROUNDS]     (defaults 500 10 3)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-500}; SECONDS_PER_ROUND=${2:-10}; ROUNDS=${3:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -q -p tollgate -p tollgate-mock-provider -p tollgate-e2e
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d)
cleanup() { kill "${MOCK_PID:-}" "${GW_PID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN/tollgate-mock-provider" --listen 127.0.0.1:0 >"$WORK/mock.out" 2>/dev/null &
MOCK_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/mock.out" && break; sleep 0.05; done
MOCK=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$WORK/mock.out")

mkdir "$WORK/res"
cat >"$WORK/res/mock.yaml" <<YAML
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: bench-mock}
spec:
  provider: openai-compatible
  baseUrl: http://$MOCK/v1
  models: [{name: mock-1}]
YAML
KEY="tg-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
TOLLGATE_ADMIN_KEY=$KEY TOLLGATE_LOG=warn "$BIN/tollgate" up --listen 127.0.0.1:0 \
  --database "sqlite://$WORK/bench.db" --resources "$WORK/res" >"$WORK/gw.out" 2>"$WORK/gw.err" &
GW_PID=$!
for _ in $(seq 200); do grep -q "listening on" "$WORK/gw.out" && break; sleep 0.05; done
GW=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$WORK/gw.out")

echo "mock at $MOCK, gateway at $GW; $ROUNDS rounds of ${SECONDS_PER_ROUND}s at $RATE req/s each"
: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  for target in direct gateway; do
    if [ "$target" = direct ]; then URL="http://$MOCK"; K=""; else URL="$GW"; K="$KEY"; fi
    OUT=$("$BIN/tollgate-loadgen" --url "$URL" --key "$K" --rate "$RATE" --seconds "$SECONDS_PER_ROUND")
    echo "round $round $target $OUT"
    echo "$target $OUT" >>"$WORK/results"
  done
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")
python3 - "$WORK/results" "$RSS_KB" <<'PY'
import json, statistics, sys
rows = [l.split(" ", 1) for l in open(sys.argv[1])]
d = [json.loads(j) for t, j in rows if t == "direct"]
g = [json.loads(j) for t, j in rows if t == "gateway"]
errors = sum(r["errors"] for r in d + g)
for p in ("p50_us", "p99_us"):
    added = statistics.median(b[p] - a[p] for a, b in zip(d, g))
    ratio = statistics.median(b[p] / max(a[p], 1) for a, b in zip(d, g))
    print(f"{p[:3]}: direct {statistics.median(r[p] for r in d)} us, gateway {statistics.median(r[p] for r in g)} us, "
          f"added {added/1000:.3f} ms (gateway/direct ratio {ratio:.2f})")
print(f"gateway peak RSS: {int(sys.argv[2]) / 1024:.1f} MiB; errors: {errors}")
PY
