//go:build tools

// Package tools pins the Pulumi Kubernetes provider. The proxy serves it only
// as a pseudo-version between tags 4.25.0 and 4.26.0 (paired with npm
// @pulumi/kubernetes 4.25.0); ensure-binaries.sh stamps it 4.25.0 and produces
// the two embedded JSON files the module zip lacks from the module's own
// schema.json and terraform-mapping.json.
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes"
)
