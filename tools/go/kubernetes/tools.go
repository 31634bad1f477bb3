//go:build tools

// Package tools pins the Kubernetes control-plane binaries (kube-apiserver,
// kube-controller-manager, kube-scheduler) and kubectl (the tests run the plugin
// through its real plugin dispatch and completion) at one release so that they
// can be built from the Go module proxy.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
