# syntax=docker/dockerfile:1
# Tollgate's binaries in one image: `tollgate` (CLI, standalone `tollgate up`),
# `tollgate-dataplane` (the gateway) and `tollgate-operator` (the control plane; the image
# carries whichever `tollgate*` binaries the workspace builds). The manifests in
# manifests/ run it as ghcr.io/tollgate-dev/tollgate:<workspace version>.
# Build: scripts/docker-build.sh (or `docker build -t ghcr.io/tollgate-dev/tollgate:0.1.0 .`).

# The dashboard (Vue, dashboard/): static files the control plane serves at `/`.
FROM node:20-bookworm-slim AS dashboard
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/ ./
COPY operator/openapi.json /src/operator/openapi.json
RUN npm run build

# The exact toolchain of rust-toolchain.toml, so rustup has nothing to download.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and build artefacts between builds; the binaries are
# copied out in the same step because the target directory is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tollgate -p tollgate-operator -p tollgate-dataplane \
 && mkdir /out \
 && find target/release -maxdepth 1 -type f -perm -u+x -name 'tollgate*' -exec cp {} /out/ \; \
 && test -x /out/tollgate && test -x /out/tollgate-dataplane && test -x /out/tollgate-operator \
 && ls -l /out

# glibc and libgcc only, no shell, no package manager; runs as uid 65532 (`nonroot`), the
# user the operator's pods and the manifests pin with runAsUser.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="tollgate" \
      org.opencontainers.image.description="Tollgate: governance gateway between AI agents and LLMs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
COPY --from=build /out/ /usr/local/bin/
COPY --from=dashboard /src/dashboard/dist/ /usr/share/tollgate/dashboard/
# `tollgate up` and `tollgate-operator` serve the dashboard from here.
ENV TOLLGATE_DASHBOARD_DIR=/usr/share/tollgate/dashboard
USER 65532:65532
EXPOSE 8080 9090
CMD ["tollgate", "--help"]
