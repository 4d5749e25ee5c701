package main

// slipway loadtest: run a spec's load test now, show a run, cancel one (docs/loadtests.md),
// through the API's /v1/loadtests routes, like every other command that acts on Temporal
// (--url, --token: $SLIPWAY_URL, $SLIPWAY_TOKEN).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// newLoadTestCmd builds `slipway loadtest` and its subcommands afresh.
func newLoadTestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Run a load test of a spec now, show a run, cancel one (through the API)",
		Long: `A load test sends a constant request rate to the replicas of one service (after an
optional scale-out, always scaled back), and judges the measured latency, error rate and
throughput against the test's SLOs. Exit codes of "run --wait" and "show": 0 passed,
5 an SLO was missed, 3 still running when the wait ended, 1 anything else (refused because
a release holds the service, the load could not be measured, bad input).`,
	}
	cmd.AddCommand(newLoadTestRunCmd(), newLoadTestShowCmd(), newLoadTestCancelCmd())
	return cmd
}

func newLoadTestRunCmd() *cobra.Command {
	var (
		f       clientFlags
		file    string
		wait    bool
		timeout time.Duration
		key     string
	)
	cmd := &cobra.Command{
		Use:   "run -f SPEC TEST",
		Short: "Start the spec's load test TEST now (--wait to follow it and exit with its verdict)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			if file == "" {
				return errors.New("-f SPEC is required")
			}
			data, err := readSpec(file)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			run, err := c.StartLoadTest(ctx, apiclient.LoadTestRequest{Spec: data, SpecName: file, Name: args[0], IdempotencyKey: key})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "load test %s/%s started: %s (%d req/s for %s, warm-up %s)\n",
				run.Environment, run.Test, run.ID, run.Rate, run.Duration, run.WarmUp)
			if !wait {
				if f.json() {
					return printJSON(cmd.OutOrStdout(), map[string]string{"id": run.ID, "run_id": run.RunID})
				}
				fmt.Fprintln(cmd.OutOrStdout(), run.ID)
				return nil
			}
			return followLoadTest(ctx, cmd, c, run.ID, timeout, f.json())
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment spec (YAML or JSON; - for standard input)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run (phase on standard error) and exit with its verdict")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: stop waiting after this long (exit 3; the run goes on); 0 waits as long as it takes")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "a retried command with the same key answers the same run")
	return cmd
}

func newLoadTestShowCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a load-test run: its phase while it runs, its result after",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			return followLoadTest(ctx, cmd, c, args[0], -1, f.json())
		},
	}
	f.register(cmd)
	return cmd
}

func newLoadTestCancelCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a load-test run (it stops the load and scales back what it scaled out)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext(cmd)
			defer cancel()
			run, err := c.CancelLoadTest(ctx, args[0])
			if err != nil {
				return &exitError{codeError, fmt.Errorf("cancel %s: %w", args[0], err)}
			}
			if f.json() {
				return printJSON(cmd.OutOrStdout(), run)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cancel requested: %s scales back and ends\n", run.ID)
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// ltPoll is how long one GET of a followed run waits on the server for its end before the
// CLI looks at its phase again.
const ltPoll = 2 * time.Second

// followLoadTest shows a run (timeout < 0: one look; 0: waits as long as it takes; > 0:
// waits that long), printing phase changes on standard error while it waits, then prints the
// result and returns the verdict's exit code.
func followLoadTest(ctx context.Context, cmd *cobra.Command, c *apiclient.Client, id string, timeout time.Duration, asJSON bool) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var phase workflows.LoadTestPhase
	for {
		wait := ltPoll
		if timeout < 0 {
			wait = 0
		}
		run, err := c.GetLoadTest(ctx, id, wait)
		if err != nil {
			if ctx.Err() != nil && timeout >= 0 {
				return &exitError{codeWaiting, fmt.Errorf("load test %s is still running when the wait ended (phase %s); follow it with: slipway loadtest show %s", id, phase, id)}
			}
			return &exitError{codeError, fmt.Errorf("load test %s: %w", id, err)}
		}
		if !run.Running {
			return loadTestEnded(cmd, run, asJSON)
		}
		if timeout < 0 {
			// show: one look at a running run.
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), map[string]any{"id": id, "running": true, "phase": run.Phase, "message": run.Message}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "load test %s is running: %s %s\n", id, run.Phase, run.Message)
			}
			if run.StatusError != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "(%s)\n", run.StatusError)
			}
			return &exitError{codeWaiting, nil}
		}
		if run.Phase != "" && run.Phase != phase {
			phase = run.Phase
			fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %s\n", run.Phase, run.Message)
		}
	}
}

// loadTestEnded prints an ended run and returns its exit code.
func loadTestEnded(cmd *cobra.Command, run *apiclient.LoadTestRun, asJSON bool) error {
	if run.Result == nil {
		msg := ltFailure(run)
		if asJSON {
			_ = printJSON(cmd.OutOrStdout(), map[string]any{"id": run.ID, "error": msg})
		}
		return &exitError{codeError, fmt.Errorf("load test %s: %s", run.ID, msg)}
	}
	if asJSON {
		if err := printJSON(cmd.OutOrStdout(), run.Result); err != nil {
			return err
		}
	} else {
		printLoadTest(cmd.OutOrStdout(), *run.Result)
	}
	return loadTestExit(*run.Result)
}

// loadTestExit maps a finished run to the CLI's exit code (nil for passed).
func loadTestExit(res workflows.LoadTestResult) error {
	switch res.Outcome {
	case workflows.LoadTestPassed:
		return nil
	case workflows.LoadTestFailed:
		return &exitError{codeSLOMissed, fmt.Errorf("load test %s/%s failed: %s", res.Environment, res.Test, res.Reason)}
	default:
		return &exitError{codeError, fmt.Errorf("load test %s/%s %s: %s", res.Environment, res.Test, res.Outcome, res.Reason)}
	}
}

// ltFailure is the readable message of a run that ended without a result.
func ltFailure(run *apiclient.LoadTestRun) string {
	switch {
	case run.Outcome == string(workflows.LoadTestCanceled) || run.Status == "Canceled":
		return "cancelled (scaled back)"
	case run.Error != "":
		return run.Error
	}
	return strings.ToLower(run.Status)
}

// printLoadTest prints a result for people.
func printLoadTest(w io.Writer, r workflows.LoadTestResult) {
	fmt.Fprintf(w, "load test %s/%s of %s", r.Environment, r.Test, r.Service)
	if r.Version != "" {
		fmt.Fprintf(w, " %s", r.Version)
	}
	fmt.Fprintf(w, ": %s\n  %s\n", strings.ToUpper(string(r.Outcome)), r.Reason)
	if m := r.Metrics; m != nil {
		fmt.Fprintf(w, "  requests  %d measured (+%d warm-up) at %.1f req/s (asked %d) to %d replica(s); throughput %.1f req/s\n",
			m.Requests, m.WarmUpRequests, m.Rate, r.Rate, len(m.Targets), m.Throughput)
		fmt.Fprintf(w, "  errors    %d (%.2f%%)", m.Errors, m.ErrorRate*100)
		var codes []string
		for code, n := range m.StatusCodes {
			codes = append(codes, fmt.Sprintf("%s×%d", code, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(w, "; status %s\n", strings.Join(codes, " "))
		fmt.Fprintf(w, "  latency   p50 %s  p90 %s  p95 %s  p99 %s  max %s\n", ltRound(m.P50), ltRound(m.P90), ltRound(m.P95), ltRound(m.P99), ltRound(m.Max))
		for _, e := range m.ErrorSamples {
			fmt.Fprintf(w, "  error     %s\n", e)
		}
	}
	for _, c := range r.SLOs {
		mark, op := "ok  ", "≤"
		if !c.Passed {
			mark = "MISS"
		}
		if c.Name == "min_throughput" {
			op = "≥"
		}
		fmt.Fprintf(w, "  slo %s %s %g %s (objective %s %g)\n", mark, c.Name, c.Actual, c.Unit, op, c.Objective)
	}
	for _, s := range r.Scale {
		if s.Peak != s.Base {
			fmt.Fprintf(w, "  scale     %s: %d → %d → %d replicas of %s\n", s.Cluster, s.Base, s.Peak, s.Total, s.Version)
		}
	}
	for _, e := range r.ScaleBackErrors {
		fmt.Fprintf(w, "  WARNING   scale-back failed on %s\n", e)
	}
	if r.Comparison != nil {
		fmt.Fprintf(w, "  previous  %s\n", r.Comparison.Summary)
	}
}

func ltRound(d spec.Duration) time.Duration {
	if d.D() > 10*time.Millisecond {
		return d.D().Round(100 * time.Microsecond)
	}
	return d.D().Round(10 * time.Microsecond)
}
