#!/usr/bin/env bash
# Builds the Tollgate image from the repository's Dockerfile with docker or podman, tagged
# as the manifests reference it (ghcr.io/tollgate-dev/tollgate:<workspace version>).
# Usage: scripts/docker-build.sh [extra build args...]   (IMAGE=... to override the tag)
set -euo pipefail
cd "$(dirname "$0")/.."
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)"
image="${IMAGE:-ghcr.io/tollgate-dev/tollgate:${version}}"

engine=""
for candidate in docker podman; do
  # The client alone is not enough: the daemon (or podman's runtime) must answer.
  if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then
    engine="$candidate"
    break
  fi
done
if [ -z "$engine" ]; then
  echo "No usable container engine: neither 'docker info' nor 'podman info' succeeds here." >&2
  echo "Install and start Docker (or Podman), then run: $0" >&2
  exit 1
fi

echo "== building $image with $engine"
if [ "$engine" = docker ]; then
  DOCKER_BUILDKIT=1 docker build -t "$image" "$@" .
else
  podman build -t "$image" "$@" .
fi
echo "== built $image"
