# The etcd-recover agent image: the image the EtcdCluster component's CronJobs and
# member-init containers run. Node + the kubectl-etcd_recover CLI + etcd's own tools.
#   docker build -f docker/agent.Dockerfile -t ghcr.io/etcd-recover/agent:0.1.0 .
# Pinned: Node 24.21.0 (bookworm-slim), etcd v3.6.16 (built from the Go module proxy
# with the same wrapper module as the tests: tools/go/etcd).

FROM golang:1.26-bookworm AS etcd
WORKDIR /src
COPY tools/go/etcd/ ./
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
RUN go build -trimpath -ldflags "-s -w" -o /out/etcd go.etcd.io/etcd/server/v3 \
 && go build -trimpath -ldflags "-s -w" -o /out/etcdctl go.etcd.io/etcd/etcdctl/v3 \
 && go build -trimpath -ldflags "-s -w" -o /out/etcdutl go.etcd.io/etcd/etcdutl/v3

FROM node:24.21.0-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.base.json lerna.json ./
COPY packages/core/package.json packages/core/
COPY packages/kubectl-plugin/package.json packages/kubectl-plugin/
COPY packages/pulumi/package.json packages/pulumi/
COPY test/package.json test/
COPY examples/hosted-control-plane/package.json examples/hosted-control-plane/
RUN npm ci --no-audit --no-fund --omit=optional
COPY packages/core packages/core
COPY packages/kubectl-plugin packages/kubectl-plugin
RUN npx tsc -b packages/kubectl-plugin \
 && npm prune --omit=dev --workspace @etcd-recover/kubectl-plugin --include-workspace-root=false

FROM node:24.21.0-bookworm-slim
RUN groupadd --gid 65532 agent && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin agent
COPY --from=etcd /out/ /usr/local/bin/
COPY --from=build /app/node_modules /opt/etcd-recover/node_modules
COPY --from=build /app/packages/core /opt/etcd-recover/packages/core
COPY --from=build /app/packages/kubectl-plugin /opt/etcd-recover/packages/kubectl-plugin
RUN ln -s /opt/etcd-recover/packages/kubectl-plugin/bin/kubectl-etcd_recover /usr/local/bin/kubectl-etcd_recover
ENV NODE_ENV=production ETCD_BIN_DIR=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["kubectl-etcd_recover"]
