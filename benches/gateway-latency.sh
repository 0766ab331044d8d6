#!/usr/bin/env bash
# Gateway overhead benchmark.
#
# Runs the mock provider and `tollgate up` (release builds) on loopback, then drives
# non-streaming chat completions at a fixed rate with the open-loop load generator,
# alternating rounds in one run so every configuration sees the same machine noise:
#   direct   - straight to the mock (the baseline)
#   gateway  - through Tollgate: key check, routing, breaker, retries armed, durable usage record
#   budget   - plus a hard budget (reserve + settle on the in-memory counters)
#   all      - plus per-key rpm/tpm limits, IP-token rpm/tpm limits and a fallback chain
# and the Responses API (POST /v1/responses) against its own baseline:
#   rdirect  - straight to the mock's /v1/responses (the Responses baseline)
#   responses - through Tollgate, `store: false` (decoded to the chat form, governed, encoded back)
#   rstored  - the same with `store: true` (the API's default: the answer is written to the database)
# Reports per-round p50/p99, the added latency of each configuration over the baseline and
# over plain `gateway` (median over rounds), and the gateway's peak RSS (VmHWM).
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
  models:
    - name: mock-1
      prices: {inputPerMtok: "0.15", outputPerMtok: "0.60"}
---
apiVersion: tollgate.dev/v1alpha1
kind: IPToken
metadata: {name: bench-limited}
spec:
  provider: openai-compatible
  baseUrl: http://$MOCK/v1
  rpm: 100000000
  tpm: 100000000000
  models:
    - name: limited-1
      upstreamName: mock-1
      prices: {inputPerMtok: "0.15", outputPerMtok: "0.60"}
      fallbacks: [mock-1]
---
apiVersion: tollgate.dev/v1alpha1
kind: Budget
metadata: {name: bench}
spec: {subject: {kind: developer, name: budgeted}, limit: "1000000", period: monthly}
YAML
KEY="tg-$(head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
TOLLGATE_ADMIN_KEY=$KEY TOLLGATE_LOG=warn "$BIN/tollgate" up --listen 127.0.0.1:0 \
  --database "sqlite://$WORK/bench.db" --resources "$WORK/res" >"$WORK/gw.out" 2>"$WORK/gw.err" &
GW_PID=$!
for _ in $(seq 200); do grep -q "listening on" "$WORK/gw.out" && break; sleep 0.05; done
GW=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$WORK/gw.out")

newkey() {
  curl -sS "$GW/api/v1/keys" -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
    -d "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
PLAIN=$(newkey '{"principal": {"kind": "developer", "name": "plain"}}')
BUDGETED=$(newkey '{"principal": {"kind": "developer", "name": "budgeted"}}')
ALL=$(newkey '{"principal": {"kind": "developer", "name": "budgeted"}, "rpm": 100000000, "tpm": 100000000000}')

echo "mock at $MOCK, gateway at $GW; $ROUNDS rounds of ${SECONDS_PER_ROUND}s at $RATE req/s each"
: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  for target in direct gateway budget all rdirect responses rstored; do
    API=chat; STORE=()
    case $target in
      direct) URL="http://$MOCK"; K=""; M=mock-1 ;;
      gateway) URL="$GW"; K="$PLAIN"; M=mock-1 ;;
      budget) URL="$GW"; K="$BUDGETED"; M=mock-1 ;;
      all) URL="$GW"; K="$ALL"; M=limited-1 ;;
      rdirect) URL="http://$MOCK"; K=""; M=mock-1; API=responses ;;
      responses) URL="$GW"; K="$PLAIN"; M=mock-1; API=responses ;;
      rstored) URL="$GW"; K="$PLAIN"; M=mock-1; API=responses; STORE=(--store) ;;
    esac
    OUT=$("$BIN/tollgate-loadgen" --url "$URL" --key "$K" --model "$M" --rate "$RATE" \
      --seconds "$SECONDS_PER_ROUND" --api "$API" "${STORE[@]}")
    echo "round $round $target $OUT"
    echo "$target $OUT" >>"$WORK/results"
  done
done
RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$GW_PID/status")
python3 - "$WORK/results" "$RSS_KB" <<'PY'
import json, statistics, sys
rows = [l.split(" ", 1) for l in open(sys.argv[1])]
by = {}
for t, j in rows:
    by.setdefault(t, []).append(json.loads(j))
errors = sum(r["errors"] for rs in by.values() for r in rs)
base = by["direct"]
for p in ("p50_us", "p99_us"):
    print(f"{p[:3]}: direct {statistics.median(r[p] for r in base)} us, "
          f"direct /v1/responses {statistics.median(r[p] for r in by['rdirect'])} us")
    for t in ("gateway", "budget", "all", "responses", "rstored"):
        rs = by[t]
        own = by["rdirect"] if t in ("responses", "rstored") else base
        added = statistics.median(b[p] - a[p] for a, b in zip(own, rs))
        over_gw = statistics.median(b[p] - a[p] for a, b in zip(by["gateway"], rs))
        ratio = statistics.median(b[p] / max(a[p], 1) for a, b in zip(own, rs))
        extra = "" if t == "gateway" else f", {over_gw:+.0f} us over plain gateway (chat)"
        over = "direct /v1/responses" if t in ("responses", "rstored") else "direct"
        print(f"  {t:9} {statistics.median(r[p] for r in rs)} us: added {added/1000:.3f} ms over {over} "
              f"(ratio {ratio:.2f}){extra}")
print(f"gateway peak RSS: {int(sys.argv[2]) / 1024:.1f} MiB; errors: {errors}")
PY
