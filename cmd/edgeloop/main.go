// Command edgeloop is the one binary of edgeloop; each part of the loop is a subcommand.
// main only wires subcommands to packages: see cli.go.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }
