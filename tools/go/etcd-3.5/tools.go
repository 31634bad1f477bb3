//go:build tools

// Package tools pins the etcd server, etcdctl and etcdutl at one version so
// that `go build` can produce all three from the Go module proxy.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/etcdutl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
