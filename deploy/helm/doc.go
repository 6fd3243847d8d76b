// Package helm holds no code: its directory keeps the Helm chart deploy/helm/edgeloop, and its
// integration test lints and renders the chart over several values files, compares the output
// with golden files, decodes every rendered object strictly into the Kubernetes API types and runs
// the rendered component configurations through the binaries' --config.check (docs/deploy.md,
// "Kubernetes: the Helm chart").
package helm
