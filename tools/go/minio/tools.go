//go:build tools

// Package tools pins the MinIO server so that `go build` can produce it from
// the Go module proxy.
package tools

import (
	_ "github.com/minio/minio"
)
