// Command slipway-probe is Slipway's prober agent: the worker loads it into each engine as a
// tiny FROM-scratch image and runs it in a short-lived container on the service's network, so
// verification probes and health checks run next to the replicas and their results come back
// through the Docker API alone (see package probe). It is built beside `slipway` (make build)
// and found next to it; `slipway probe-agent` is the same program inside the big binary.
package main

import (
	"os"

	"github.com/slipwayhq/slipway/probe"
)

func main() { os.Exit(probe.Main(os.Args[1:], os.Stdout, os.Stderr)) }
