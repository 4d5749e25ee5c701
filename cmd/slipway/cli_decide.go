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
		f                        clientFlags
		w                        waitFlags
		reason, service, cluster string
	)
	cmd := &cobra.Command{
		Use:   action + " ID",
		Short: short,
		Long: short + `. A decision the release refuses (e.g. approving a release that is not
awaiting approval) is reported with the release's reason and exit code 1.` + gateHelp(action),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			rel, err := c.DecideGate(ctx, args[0], action, reason, service, cluster)
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
	switch action {
	case apiclient.ActionApprove:
		cmd.Flags().StringVar(&service, "service", "", "approve only this service's gate")
		cmd.Flags().StringVar(&cluster, "cluster", "", "approve only the gate on this cluster (needed when two clusters of a service wait)")
	case apiclient.ActionAbort:
		cmd.Flags().StringVar(&service, "service", "", "abort refusing this service's pending gate (rejected if it is not pending)")
		cmd.Flags().StringVar(&cluster, "cluster", "", "abort refusing the pending gate on this cluster (rejected if it is not pending)")
	}
	return cmd
}

func gateHelp(action string) string {
	switch action {
	case apiclient.ActionApprove:
		return `

A release can wait at several gates at once: a verdict that could not decide opens one per
service and cluster (the clusters of a wave verify in parallel), a canary approval one per
service. "slipway status ID" lists them. Without --service and --cluster, approve approves
every pending gate as long as that is one per service; with two gates of one service
pending it is refused (the message lists the clusters): name the one with --cluster.`
	case apiclient.ActionAbort:
		return `

With --service and/or --cluster, the abort refuses that pending gate (and is refused itself
if that gate is no longer pending); the whole release rolls back either way.`
	}
	return ""
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
