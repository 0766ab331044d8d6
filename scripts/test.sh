#!/usr/bin/env bash
# Runs the whole test suite: formatting-independent Rust tests (unit, integration, real
# SQLite and PostgreSQL), then the black-box tests against the built binaries (official
# `openai`, `anthropic`, LangChain, CrewAI and OpenAI Agents packages, the Python SDK, the
# Node `openai` and `@anthropic-ai/sdk` packages (e2e/node), curl, kubectl
# kustomize + kubernetes-validate for the manifests), then the dashboard's Vitest tests and
# its end-to-end tests in Debian's Chromium against `tollgate up`; the adversarial suite
# (e2e/adversarial: slow and silent clients, floods, huge prompts, memory, schemathesis)
# and a short cargo-fuzz run of each fuzz target (scripts/fuzz.sh). Installs the Python
# packages into .venv (and .venv-crewai), the npm packages into dashboard/ and e2e/node/ and
# Chromium (apt, as root) on first run; says exactly what is missing otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

missing=()
command -v cargo >/dev/null || missing+=("cargo: install Rust with rustup (the toolchain in rust-toolchain.toml)")
command -v python3 >/dev/null || missing+=("python3: apt-get install python3")
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=("python3 venv: apt-get install python3-venv")
command -v curl >/dev/null || missing+=("curl: apt-get install curl")
command -v node >/dev/null || missing+=("node (20 or later), for the dashboard: apt-get install nodejs")
command -v npm >/dev/null || missing+=("npm, for the dashboard: apt-get install npm")
command -v kubectl >/dev/null || missing+=("kubectl (its built-in kustomize builds manifests/ for the manifest tests): apt-get install kubectl")
# The dashboard's browser tests drive Debian's Chromium (playwright-core never downloads one).
CHROMIUM="${TOLLGATE_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium for the browser tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
      || missing+=("chromium (the browser tests' browser): apt-get install chromium")
  else
    missing+=("chromium at $CHROMIUM (the browser tests' browser): sudo apt-get install chromium, or set TOLLGATE_CHROMIUM")
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "Cannot run the tests; missing:" >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
# PostgreSQL (trust auth on 127.0.0.1:5432) and Redis (127.0.0.1:6379): installed with
# apt-get as root when missing, configured and started (scripts/services.sh).
bash scripts/services.sh
export TOLLGATE_TEST_POSTGRES_URL="${TOLLGATE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

if [ ! -x .venv/bin/python ] || ! cmp -s e2e/python/requirements.txt .venv/.requirements; then
  echo "== installing Python test packages into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r e2e/python/requirements.txt
  cp e2e/python/requirements.txt .venv/.requirements
fi
if [ ! -x .venv-crewai/bin/python ] || ! cmp -s e2e/python/requirements-crewai.txt .venv-crewai/.requirements; then
  echo "== installing CrewAI and its test packages into .venv-crewai"
  python3 -m venv .venv-crewai
  .venv-crewai/bin/pip install -q --upgrade pip
  .venv-crewai/bin/pip install -q -r e2e/python/requirements-crewai.txt
  cp e2e/python/requirements-crewai.txt .venv-crewai/.requirements
fi

echo "== building binaries"
cargo build --workspace --bins --examples
echo "== Rust tests"
cargo test --workspace --no-fail-fast
echo "== client tests (openai, anthropic, langchain, SDK, curl, manifests) against the built binaries"
TOLLGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" .venv/bin/pytest -q e2e/python
echo "== Node client tests (openai, @anthropic-ai/sdk) against the built binaries"
if [ ! -d e2e/node/node_modules ] || [ e2e/node/package-lock.json -nt e2e/node/node_modules/.package-lock.json ]; then
  (cd e2e/node && npm ci --no-audit --no-fund --loglevel=error)
fi
(cd e2e/node && TOLLGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" npm test --silent)
echo "== adversarial tests (slow and silent clients, floods, huge prompts) against the built binaries"
TOLLGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" .venv/bin/pytest -q e2e/adversarial
echo "== fuzzing: request codecs, SSE parser, resource loader (cargo fuzz, 15 s each)"
bash scripts/fuzz.sh 15
echo "== dashboard: API types current, component and store tests (Vitest)"
bash scripts/dashboard.sh deps
(cd dashboard && npm run --silent check:api && npm test --silent)
echo "== dashboard: end to end in Chromium against tollgate up"
(cd dashboard && TOLLGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" TOLLGATE_CHROMIUM="$CHROMIUM" npm run --silent test:e2e)
echo "== CrewAI tests (own environment)"
TOLLGATE_BIN_DIR="$CARGO_TARGET_DIR/debug" .venv-crewai/bin/pytest -q e2e/python/test_sdk_crewai.py
