#!/usr/bin/env bash
# Runs Tollgate standalone (`tollgate up`): builds the dashboard if it is missing or older
# than its sources (npm packages installed on first run), then builds and starts the
# binary. Arguments go to `tollgate up` (e.g. `bash scripts/up.sh -f examples/`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v cargo >/dev/null || missing+=("cargo: install Rust with rustup (the toolchain in rust-toolchain.toml)")
command -v node >/dev/null || missing+=("node (20 or later) and npm, for the dashboard: apt-get install nodejs npm")
command -v npm >/dev/null || missing+=("npm: apt-get install npm")
if [ ${#missing[@]} -gt 0 ]; then
  echo "Cannot start Tollgate; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

bash scripts/dashboard.sh build
exec cargo run --release -p tollgate -- up --dashboard dashboard/dist "$@"
