package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// newResolveCmd builds `slipway resolve ID --reason ...`.
func newResolveCmd() *cobra.Command {
	var (
		f      clientFlags
		reason string
	)
	cmd := &cobra.Command{
		Use:   "resolve ID --reason WHY",
		Short: "Free the services an ended release left locked because its rollback could not finish",
		Long: `A release whose rollback (or, for a release terminated from outside Slipway, whose repair)
could not finish keeps the services it left in an unknown state locked: every release of them
is refused with a message naming the release and what runs where. Put the services in order
(slipway env ENV shows what runs), then resolve: the locks are freed, and who resolved them and
why is recorded in each lock's workflow history (a child of the release in the Temporal UI).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return &exitError{codeError, fmt.Errorf("--reason is required: say why the services are in order again")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			res, err := c.Resolve(ctx, args[0], reason)
			if err != nil {
				return err
			}
			if f.output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			for _, l := range res.Resolved {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: lock %s freed (held since %s)\n", l.Service, l.Lock, l.HeldSince.Format("2006-01-02 15:04:05Z07:00"))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "resolved by %s: %s\n", res.By, res.Reason)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why the services are in order again (required; recorded in the locks' history)")
	return cmd
}
