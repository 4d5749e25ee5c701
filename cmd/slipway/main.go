// Command slipway is Slipway's one binary: the embedded dev stack (dev), the worker, the HTTP
// API, and the CLI that talks to it. Each subcommand lives in its own file and is built by its
// constructor (newDevCmd, newWorkerCmd, ...); newRootCmd assembles them.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = ""

// newRootCmd builds the whole command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "slipway",
		Short:         "Slipway: durable, canaried releases of Docker services",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newVersionCmd(), newDevCmd(), newWorkerCmd(), newAPICmd(), newValidateCmd(), newSchemaCmd(),
		newHealthcheckCmd(), newProbeAgentCmd(), newLoadTestCmd(), newSchedulesCmd(), newNamespaceCmd())
	root.AddCommand(apiCommands()...)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the build's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), buildVersion())
		},
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// exitError carries a process exit code chosen by a subcommand (see README: exit codes).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	code := 1
	if ee, ok := err.(*exitError); ok {
		code = ee.code
		if ee.err == nil {
			os.Exit(code)
		}
	}
	fmt.Fprintln(os.Stderr, "slipway:", err)
	os.Exit(code)
}
