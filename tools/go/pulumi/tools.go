//go:build tools

// Package tools pins the Pulumi CLI (the engine) at one version so that
// `go build` can produce it from the Go module proxy. The Node.js language
// host is not served by the proxy; the tests use the Automation API with an
// inline program, which needs none.
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
