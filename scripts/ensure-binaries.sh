#!/usr/bin/env bash
# Builds (once) the real dependencies that tests, the demo and the benchmarks run:
# etcd/etcdctl/etcdutl, MinIO and the Kubernetes control plane, from the Go module
# proxy through the wrapper modules under tools/go/. Binaries are cached outside the
# repository, keyed by the wrapper's go.mod + go.sum, and never committed.
#
#   scripts/ensure-binaries.sh [etcd] [etcd_3_5] [etcd_3_7] [minio] [kubernetes] [pulumi] [pulumi_kubernetes]
#                                                  (default: etcd minio kubernetes)
#
# `etcd` is etcd 3.6 (tools/go/etcd), what everything runs by default. `etcd_3_5` and `etcd_3_7` are the
# newest patches of the neighbouring minors (tools/go/etcd-3.5, tools/go/etcd-3.7), built only when
# asked for: the version matrix (test/integration/etcd-versions.test.ts) asks for them.
#
# Environment:
#   ETCD_RECOVER_CACHE   cache root (default: $XDG_CACHE_HOME or ~/.cache, + /etcd-recover)
#   ETCD_BIN_DIR         use existing etcd, etcdctl, etcdutl from this folder instead
#   ETCD_3_5_BIN_DIR, ETCD_3_7_BIN_DIR  the same for etcd 3.5 and 3.7
#   MINIO_BIN            use an existing minio binary instead
#   KUBE_BIN_DIR         use existing kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#   PULUMI_BIN_DIR       use an existing Pulumi CLI (a folder holding `pulumi`)
#   PULUMI_KUBERNETES_BIN_DIR  use an existing pulumi-resource-kubernetes (4.25.0) from this folder
# Prints one line per component: NAME=/path/to/folder. A build failure is fatal: in CI
# nothing is skipped for a missing binary.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${ETCD_RECOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/etcd-recover}
mkdir -p "$cache/bin"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

# The cache key: the wrapper module (go.mod, go.sum) and the recipe that builds it (the
# build function and the component's own ensure_ function, or the functions named after the
# wrapper), so editing one recipe rebuilds only that component.
#   key WRAPPER [FUNCTION...]
key() {
  local wrapper=$1; shift
  { cat "$here/tools/go/$wrapper/go.mod" "$here/tools/go/$wrapper/go.sum"; declare -f build "${@:-ensure_${wrapper//-/_}}"; } \
    | sha256sum | cut -c1-16
}

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
  # etcd-recover-replay (tools/go/etcd/replay): the point-in-time replay into a bbolt file, from etcd's own storage packages.
  [ -x "$out/etcd-recover-replay" ] || build etcd "$out" \
    go.etcd.io/etcd/server/v3=etcd go.etcd.io/etcd/etcdctl/v3=etcdctl go.etcd.io/etcd/etcdutl/v3=etcdutl ./replay=etcd-recover-replay
  echo "ETCD_BIN_DIR=$out"
}

# Another etcd minor, from tools/go/etcd-MINOR, cached as etcd-MINOR-KEY (never as etcd-KEY: what
# finds "the" etcd in the cache, packages/core/src/sandbox/binaries.ts, takes only etcd-KEY).
#   ensure_etcd_minor 3.5   prints ETCD_3_5_BIN_DIR=...
ensure_etcd_minor() {
  local minor=$1 var="ETCD_${1//./_}_BIN_DIR"
  if [ -n "${!var:-}" ]; then echo "$var=${!var}"; return; fi
  local out="$cache/bin/etcd-$minor-$(key "etcd-$minor" ensure_etcd_minor)"
  [ -x "$out/etcdutl" ] || build "etcd-$minor" "$out" \
    go.etcd.io/etcd/server/v3=etcd go.etcd.io/etcd/etcdctl/v3=etcdctl go.etcd.io/etcd/etcdutl/v3=etcdutl
  echo "$var=$out"
}
ensure_etcd_3_5() { ensure_etcd_minor 3.5; }
ensure_etcd_3_7() { ensure_etcd_minor 3.7; }

ensure_minio() {
  if [ -n "${MINIO_BIN:-}" ]; then echo "MINIO_BIN=$MINIO_BIN"; return; fi
  local out="$cache/bin/minio-$(key minio)"
  [ -x "$out/minio" ] || build minio "$out" github.com/minio/minio=minio
  echo "MINIO_BIN=$out/minio"
}

ensure_kubernetes() {
  if [ -n "${KUBE_BIN_DIR:-}" ]; then echo "KUBE_BIN_DIR=$KUBE_BIN_DIR"; return; fi
  local out="$cache/bin/kubernetes-$(key kubernetes)"
  if [ ! -x "$out/kube-scheduler" ] || [ ! -x "$out/kubectl" ]; then
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
      k8s.io/kubernetes/cmd/kube-scheduler=kube-scheduler \
      k8s.io/kubernetes/cmd/kubectl=kubectl
  fi
  echo "KUBE_BIN_DIR=$out"
}

# The Pulumi engine: the CLI only (the Node.js language host is not served by the proxy;
# the tests drive it through the Automation API with an inline program, which needs none).
ensure_pulumi() {
  if [ -n "${PULUMI_BIN_DIR:-}" ]; then echo "PULUMI_BIN_DIR=$PULUMI_BIN_DIR"; return; fi
  local out="$cache/bin/pulumi-$(key pulumi)"
  if [ ! -x "$out/pulumi" ]; then
    local v; v=$(sed -n 's/^require github.com\/pulumi\/pulumi\/pkg\/v3 v//p' "$here/tools/go/pulumi/go.mod")
    LDFLAGS="-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$v" \
      build pulumi "$out" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi=pulumi
    # The dynamic-provider launcher ships beside the CLI (as in Pulumi's own release archives),
    # where the engine finds it even with PULUMI_IGNORE_AMBIENT_PLUGINS.
    local sdk; sdk=$(cd "$here/tools/go/pulumi" && go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
    install -m 0755 "$sdk/nodejs/dist/pulumi-resource-pulumi-nodejs" "$out/"
  fi
  echo "PULUMI_BIN_DIR=$out"
}

# The Kubernetes provider, stamped with the npm SDK version it pairs with. Its main package
# embeds schema-embed.json and terraform-mapping-embed.json, which the module zip lacks. They are
# produced here by the module's own generate.go from the schema.json and terraform-mapping.json the
# zip does ship, in a scratch copy of the main package (the module cache is read-only, and the
# compiler refuses overlays of files inside it); main.go imports everything else from the module.
ensure_pulumi_kubernetes() {
  if [ -n "${PULUMI_KUBERNETES_BIN_DIR:-}" ]; then echo "PULUMI_KUBERNETES_BIN_DIR=$PULUMI_KUBERNETES_BIN_DIR"; return; fi
  local out="$cache/bin/pulumi-kubernetes-$(key pulumi-kubernetes)"
  if [ ! -x "$out/pulumi-resource-kubernetes" ]; then
    local v=4.25.0 wrapper="$here/tools/go/pulumi-kubernetes" mod=github.com/pulumi/pulumi-kubernetes/provider/v4
    local gen="$out.gen.$$" tmp="$out.tmp.$$" start=$SECONDS
    rm -rf "$gen" "$tmp"; mkdir -p "$gen" "$tmp"
    echo "ensure-binaries: building pulumi-kubernetes $v (cached in $out; first time only, several minutes)..." >&2
    local dir; dir=$(cd "$wrapper" && go mod download "$mod" && go list -m -f '{{.Dir}}' "$mod")
    cp "$dir/cmd/pulumi-resource-kubernetes/"{main.go,generate.go,schema.json,terraform-mapping.json} "$gen/"
    cp "$wrapper/go.mod" "$wrapper/go.sum" "$gen/"
    chmod -R u+w "$gen"
    (cd "$gen" && VERSION=$v go run generate.go && rm generate.go schema.json terraform-mapping.json) >&2
    (cd "$gen" && go build -trimpath -ldflags "-s -w -X $mod/pkg/version.Version=$v" -o "$tmp/pulumi-resource-kubernetes" .) >&2
    echo "$((SECONDS - start))" > "$tmp/.build-seconds"
    rm -rf "$out" "$gen"; mv "$tmp" "$out"
    echo "ensure-binaries: built pulumi-kubernetes in $((SECONDS - start)) s" >&2
  fi
  echo "PULUMI_KUBERNETES_BIN_DIR=$out"
}

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(etcd minio kubernetes)
# One build per component at a time, across processes: a second caller (a test asking for the
# Kubernetes binaries while setup's background build makes them) waits for the first and then
# finds them cached. Locks are taken up front in one fixed order, so callers never deadlock, and
# each is released as soon as its component is ready.
order=(etcd etcd_3_5 etcd_3_7 minio kubernetes pulumi pulumi_kubernetes)
declare -A fds=()
for w in "${order[@]}"; do
  for x in "${want[@]}"; do
    [ "$x" = "$w" ] || continue
    exec {fd}>"$cache/bin/.lock-$w"
    flock "$fd"
    fds[$w]=$fd
  done
done
for w in "${want[@]}"; do
  if ! declare -F "ensure_$w" >/dev/null; then echo "ensure-binaries: unknown component $w (one of: ${order[*]})" >&2; exit 2; fi
done
for w in "${order[@]}"; do
  [ -n "${fds[$w]:-}" ] || continue
  "ensure_$w"
  exec {fds[$w]}>&-
done
