// Package kubernetes holds no code: its directory has the Kubernetes
// manifests of docs/kubernetes.md, and its test parses them and checks them
// against that page and the README.
package kubernetes
