#!/usr/bin/env bash
# Builds (once) the real dependencies that tests, the demo and the benchmarks run:
# etcd/etcdctl/etcdutl, MinIO and the Kubernetes control plane, from the Go module
# proxy through the wrapper modules under tools/go/. Binaries are cached outside the
# repository, keyed by the wrapper's go.mod + go.sum, and never committed.
#
#   scripts/ensure-binaries.sh [etcd] [minio] [kubernetes]    (default: all)
#
# Environment:
#   ETCD_RECOVER_CACHE   cache root (default: $XDG_CACHE_HOME or ~/.cache, + /etcd-recover)
#   ETCD_BIN_DIR         use existing etcd, etcdctl, etcdutl from this folder instead
#   MINIO_BIN            use an existing minio binary instead
#   KUBE_BIN_DIR         use existing kube-apiserver, kube-controller-manager, kube-scheduler
# Prints one line per component: NAME=/path/to/folder. A build failure is fatal: in CI
# nothing is skipped for a missing binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${ETCD_RECOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover}
mkdir -p "$cache/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

key() { cat "$here/tools/go/$1/go.mod" "$here/tools/go/$1/go.sum" "$0" | sha256sum | cut -c1-16; }

# build NAME OUT_DIR PKG=BINARY...
build() {
  local name=$1 out=$2; shift 2
  local tmp="$out.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  echo "ensure-binaries: building $name (cached in $out; first time only, several minutes)..." >&2
  local start=$SECONDS
  for spec in "$@"; do
    local pkg=${spec%%=*} bin=${spec#*=}
    (cd "$here/tools/go/$name" && go build -trimpath -tags "${TAGS:-}" -ldflags "-s -w ${LDFLAGS:-}" -o "$tmp/$bin" "$pkg") >&2
  done
  echo "$((SECONDS - start))" > "$tmp/.build-seconds"
  rm -rf "$out"; mv "$tmp" "$out"
  echo "ensure-binaries: built $name in $((SECONDS - start)) s" >&2
}

ensure_etcd() {
  if [ -n "${ETCD_BIN_DIR:-}" ]; then echo "ETCD_BIN_DIR=$ETCD_BIN_DIR"; return; fi
  local out="$cache/bin/etcd-$(key etcd)"
  [ -x "$out/etcdutl" ] || build etcd "$out" \
    go.etcd.io/etcd/server/v3=etcd go.etcd.io/etcd/etcdctl/v3=etcdctl go.etcd.io/etcd/etcdutl/v3=etcdutl
  echo "ETCD_BIN_DIR=$out"
}

ensure_minio() {
  if [ -n "${MINIO_BIN:-}" ]; then echo "MINIO_BIN=$MINIO_BIN"; return; fi
  local out="$cache/bin/minio-$(key minio)"
  [ -x "$out/minio" ] || build minio "$out" github.com/minio/minio=minio
  echo "MINIO_BIN=$out/minio"
}

ensure_kubernetes() {
  if [ -n "${KUBE_BIN_DIR:-}" ]; then echo "KUBE_BIN_DIR=$KUBE_BIN_DIR"; return; fi
  local out="$cache/bin/kubernetes-$(key kubernetes)"
  if [ ! -x "$out/kube-scheduler" ]; then
    local v; v=$(sed -n 's/^require k8s.io\/kubernetes v//p' "$here/tools/go/kubernetes/go.mod")
    local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
    local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    local ld=""
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld="$ld -X $p.gitVersion=v$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
    done
    TAGS="selinux,notest" LDFLAGS="$ld" build kubernetes "$out" \
      k8s.io/kubernetes/cmd/kube-apiserver=kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager=kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler
  fi
  echo "KUBE_BIN_DIR=$out"
}

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(etcd minio kubernetes)
for w in "${want[@]}"; do "ensure_$w"; done
