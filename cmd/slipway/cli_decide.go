package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
)

// newDecisionCmd builds approve, abort, pause or resume.
func newDecisionCmd(action, short string) *cobra.Command {
	var (
		f               clientFlags
		w               waitFlags
		reason, service string
	)
	cmd := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Long: short + `. A decision the release refuses (e.g. approving a release that is not
awaiting approval) is reported with the release's reason and exit code 1.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			if service != "" && action != apiclient.ActionApprove {
				return fmt.Errorf("--service only applies to approve")
			}
			rel, err := c.DecideService(ctx, args[0], action, reason, service)
			if err != nil {
				return err
			}
			if w.wait {
				return followAndExit(cmd, c, &f, rel.ID, w)
			}
			return printRelease(cmd, &f, rel)
		},
	}
	f.register(cmd)
	w.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the release)")
	if action == apiclient.ActionApprove {
		cmd.Flags().StringVar(&service, "service", "", "approve only this service's gate")
	}
	return cmd
}

func newRollbackCmd() *cobra.Command {
	var (
		f      clientFlags
		w      waitFlags
		reason string
	)
	cmd := &cobra.Command{
		Use:   "rollback ID",
		Short: "Roll back an ended release: a new, fast-tracked release of the versions it replaced",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			rel, err := c.Rollback(ctx, args[0], reason, "")
			if err != nil {
				return err
			}
			if w.wait {
				return followAndExit(cmd, c, &f, rel.ID, w)
			}
			return printRelease(cmd, &f, rel)
		},
	}
	f.register(cmd)
	w.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the rollback release)")
	return cmd
}

func readAllLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, spec.MaxSpecBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > spec.MaxSpecBytes {
		return nil, fmt.Errorf("larger than the limit of %d bytes (1 MiB)", spec.MaxSpecBytes)
	}
	return data, nil
}
