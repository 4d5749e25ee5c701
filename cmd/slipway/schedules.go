package main

// slipway schedules: the load-test schedules of an environment (docs/loadtests.md), through the
// API's /v1/loadtests/schedules routes, like every other command that acts on Temporal
// (--url, --token: $SLIPWAY_URL, $SLIPWAY_TOKEN).

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/schedules"
)

// newSchedulesCmd builds `slipway schedules` and its subcommands afresh (tests build their
// own tree).
func newSchedulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedules",
		Short: "Manage the Temporal Schedules of an environment's load tests (through the API)",
		Long: `Load tests declared in a spec with a schedule (a cron expression such as "0 3 * * *",
in UTC unless it starts with CRON_TZ=, or an interval such as "@every 6h") run as Temporal
Schedules named loadtest-<environment>-<test>. "sync" makes Temporal match the spec.`,
	}
	cmd.AddCommand(newSchedulesSyncCmd(), newSchedulesListCmd(), newSchedulesDeleteCmd())
	return cmd
}

func newSchedulesSyncCmd() *cobra.Command {
	var (
		f      clientFlags
		file   string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "sync -f SPEC",
		Short: "Create, update and delete the environment's load-test schedules to match the spec",
		Long: `Reads the spec, and for every load test with a schedule creates the Temporal Schedule
when missing or updates it when the test changed (its spec hash); deletes the environment's
load-test schedules the spec no longer has. Running it again changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if file == "" {
				return fmt.Errorf("-f SPEC is required")
			}
			data, err := readSpec(file)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			rep, err := c.SyncSchedules(ctx, data, file, dryRun)
			if err != nil {
				return &exitError{codeError, fmt.Errorf("sync %s: %w", file, err)}
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			printScheduleReport(cmd.OutOrStdout(), *rep)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment spec (YAML or JSON; - for standard input)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "say what would change, change nothing")
	return cmd
}

func printScheduleReport(w io.Writer, rep schedules.Report) {
	verb := ""
	if rep.DryRun {
		verb = " (dry run: nothing changed)"
	}
	if len(rep.Changes) == 0 {
		fmt.Fprintf(w, "%s: no load test with a schedule, none to delete%s\n", rep.Environment, verb)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCHEDULE\tTEST\tWHEN\tACTION")
	for _, c := range rep.Changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, c.Test, ltDash(c.Schedule), c.Action)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "%s: %d created, %d updated, %d unchanged, %d deleted%s\n", rep.Environment,
		rep.Count(schedules.Created), rep.Count(schedules.Updated), rep.Count(schedules.Unchanged), rep.Count(schedules.Deleted), verb)
}

func newSchedulesListCmd() *cobra.Command {
	var (
		f   clientFlags
		env string
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List load-test schedules (of one environment with --environment)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			list, err := c.ListSchedules(ctx, env)
			if err != nil {
				return &exitError{codeError, err}
			}
			if f.json() {
				if list == nil {
					list = []schedules.Info{}
				}
				return printJSON(cmd.OutOrStdout(), list)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULE\tENVIRONMENT\tTEST\tWHEN\tNEXT RUN\tLAST RUN\tPAUSED")
			for _, s := range list {
				next, last := "-", "-"
				if len(s.NextRuns) > 0 {
					next = s.NextRuns[0].UTC().Format(time.RFC3339)
				}
				if n := len(s.RecentRuns); n > 0 {
					last = s.RecentRuns[n-1].WorkflowID
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", s.ID, s.Environment, s.Test, ltDash(s.Schedule), next, last, s.Paused)
			}
			return tw.Flush()
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&env, "environment", "e", "", "only this environment's schedules")
	return cmd
}

func newSchedulesDeleteCmd() *cobra.Command {
	var (
		f    clientFlags
		env  string
		name string
	)
	cmd := &cobra.Command{
		Use:   "delete --environment ENV [--name TEST]",
		Short: "Delete one load-test schedule, or all of an environment's",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if env == "" {
				return fmt.Errorf("--environment is required")
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			deleted, err := c.DeleteSchedules(ctx, env, name)
			for _, id := range deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", id)
			}
			if len(deleted) == 0 && err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to delete")
			}
			if err != nil {
				return &exitError{codeError, err}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&env, "environment", "e", "", "environment")
	cmd.Flags().StringVar(&name, "name", "", "the load test (default: every load-test schedule of the environment)")
	return cmd
}

func ltDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
