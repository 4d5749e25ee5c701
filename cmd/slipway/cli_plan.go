package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/workflows"
)

func newPlanCmd() *cobra.Command {
	var (
		f    clientFlags
		file string
		sets []string
	)
	cmd := &cobra.Command{
		Use:   "plan (-f SPEC | SPEC) [--set svc=version]...",
		Short: "Show what a release of a spec would change (dry run against the live engines)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if file != "" && file != args[0] {
					return fmt.Errorf("give the spec once: -f %s or %s", file, args[0])
				}
				file = args[0]
			}
			if file == "" {
				return fmt.Errorf("give the spec: slipway plan SPEC (or -f SPEC)")
			}
			overrides, err := parseSets(sets)
			if err != nil {
				return err
			}
			data, err := readSpec(file)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			var res workflows.PlanResult
			if err := c.Plan(ctx, data, file, overrides, &res); err != nil {
				return err
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), res)
			}
			return printPlan(cmd, res.Plan)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment spec file (YAML or JSON; - for standard input)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "service=version (repeatable)")
	return cmd
}

func printPlan(cmd *cobra.Command, p workflows.Plan) error {
	out := cmd.OutOrStdout()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tCLUSTER\tWAVE\tACTION\tVERSION\tREPLICAS")
	for _, s := range p.Services {
		for _, c := range s.Clusters {
			canary := ""
			if c.Canary {
				canary = " (canary)"
			}
			fmt.Fprintf(tw, "%s\t%s%s\t%d\t%s\t%s\t%d → %d\n", s.Service, c.Cluster, canary, c.Wave, c.Action,
				versions(c.FromVersion, c.ToVersion), c.ReplicasFrom, c.ReplicasTo)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if changed := p.Changed(); len(changed) == 0 {
		fmt.Fprintln(out, "nothing to change")
	} else {
		fmt.Fprintf(out, "%d service(s) change, in this order: %v\n", len(changed), p.Layers)
	}
	for _, u := range p.Unreachable {
		fmt.Fprintf(out, "warning: cluster %s did not answer; its plan assumes nothing runs there\n", u)
	}
	return nil
}

func newEnvCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "env NAME",
		Short: "Show what runs where in an environment: versions, replicas, health per cluster",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			var v apiclient.EnvironmentView
			if err := c.Environment(ctx, args[0], &v); err != nil {
				return err
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), v)
			}
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CLUSTER\tSERVICE\tVERSION\tRUNNING\tIN TRAFFIC\tHEALTHY")
			for _, cl := range v.Live.Clusters {
				if cl.Error != "" {
					fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tunreachable: %s\n", cl.Cluster, cl.Error)
					continue
				}
				if len(cl.Services) == 0 {
					fmt.Fprintf(tw, "%s\t-\t-\t0\t0\t0\n", cl.Cluster)
				}
				for _, s := range cl.Services {
					for _, ver := range s.Versions {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\n", cl.Cluster, s.Service, ver.Version, ver.Running, ver.InTraffic, ver.Healthy)
					}
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if changed := v.Drift.Changed(); len(changed) > 0 {
				fmt.Fprintf(out, "drift from deployments/%s.yaml: %v would change\n", v.Environment, changed)
			} else {
				fmt.Fprintf(out, "matches deployments/%s.yaml\n", v.Environment)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
