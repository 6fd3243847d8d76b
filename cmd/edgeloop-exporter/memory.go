package main

// applyMemoryDefaults sets nothing yet; see docs/deploy.md.
func applyMemoryDefaults() {}
