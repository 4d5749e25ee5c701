package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/internal/dockerengine"
	prober "github.com/slipwayhq/slipway/probe"
)

// probeAgentArgs is how the worker runs this binary as its own probe agent when no
// slipway-probe binary sits beside it (dockerengine.ResolveAgent).
var probeAgentArgs = []string{"probe-agent"}

func newProbeAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "probe-agent",
		Short:              "Slipway's prober (run by the worker inside probe containers)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if code := prober.Main(args, cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				os.Exit(code)
			}
			return nil
		},
	}
}

// newDialer is the worker's engine dialer: one Docker client per endpoint, and the probe
// agent it loads into engines (slipway-probe beside this binary, $SLIPWAY_PROBE_AGENT, or
// this binary itself).
func newDialer(agentPath string) (*dockerengine.Dialer, error) {
	agent, err := dockerengine.ResolveAgent(dockerengine.Agent{Path: agentPath}, probeAgentArgs)
	if err != nil {
		return nil, err
	}
	return dockerengine.NewDialer(dockerengine.Options{Agent: agent}), nil
}
