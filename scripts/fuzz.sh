#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/: request codecs, SSE parser, resource loader) for
# SECONDS each (default 20) from its committed corpus in fuzz/corpus/TARGET; a crash or a
# failed assertion fails the run and leaves the input in fuzz/artifacts/TARGET.
# Installs cargo-fuzz when missing. libFuzzer's -Z flags run on the pinned stable toolchain
# through RUSTC_BOOTSTRAP (no nightly is needed). The instrumented build goes to its own
# target folder next to the main one.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-20}"
if ! command -v cargo-fuzz >/dev/null; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}-fuzz}"
# NB: new interesting inputs go to a scratch copy, so a run never edits the committed corpus.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in request_codecs sse_parser resource_loader; do
  echo "== fuzzing $target for ${SECONDS_EACH}s"
  mkdir -p "$scratch/$target"
  cp -r "fuzz/corpus/$target/." "$scratch/$target/"
  log="$scratch/$target.log"
  if ! cargo fuzz run --fuzz-dir fuzz --release --debug-assertions "$target" "$scratch/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    >"$log" 2>&1; then
    tail -80 "$log" >&2
    echo "fuzzing $target failed; the input is in fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^(Done [0-9]+ runs|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" || tail -5 "$log"
done
