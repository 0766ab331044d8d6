#!/usr/bin/env bash
# The dashboard's npm steps, shared by scripts/up.sh and scripts/test.sh:
#   deps   install the npm packages (npm ci) when node_modules is missing or stale
#   build  deps, then `npm run build` when dashboard/dist is missing or older than a source
set -euo pipefail
cd "$(dirname "$0")/../dashboard"

deps() {
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "== installing the dashboard's npm packages"
    npm ci --no-audit --no-fund --loglevel=error
  fi
}

build() {
  deps
  local newest
  newest=$(find src index.html package.json vite.config.* tsconfig*.json ../operator/openapi.json \
    -type f -newer dist/index.html 2>/dev/null | head -1 || true)
  if [ ! -f dist/index.html ] || [ -n "$newest" ]; then
    echo "== building the dashboard"
    npm run build --silent
  fi
}

case "${1:-build}" in
  deps) deps ;;
  build) build ;;
  *) echo "usage: scripts/dashboard.sh deps|build" >&2; exit 2 ;;
esac
