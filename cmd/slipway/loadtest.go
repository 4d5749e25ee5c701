package main

// slipway loadtest: run a spec's load test now, show a run, cancel one (docs/loadtests.md). Like
// `slipway schedules`, these talk to Temporal directly (the flags of `slipway worker`); the
// API offers the same under /v1/loadtests.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// newLoadTestCmd builds `slipway loadtest` and its subcommands afresh.
func newLoadTestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Run a load test of a spec now, show a run, cancel one",
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
		tf        temporalFlags
		out       ltOutputFlag
		file      string
		wait      bool
		timeout   time.Duration
		taskQueue string
	)
	cmd := &cobra.Command{
		Use:   "run -f SPEC TEST",
		Short: "Start the spec's load test TEST now (--wait to follow it and exit with its verdict)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			if file == "" {
				return errors.New("-f SPEC is required")
			}
			env, err := spec.Load(file)
			if err != nil {
				return &exitError{codeError, err}
			}
			in, err := workflows.LoadTestInputFor(env, args[0], workflows.LoadTestManual)
			if err != nil {
				return &exitError{codeError, err}
			}
			in.ID = ltShortID(time.Now())
			in.TriggeredBy = "cli " + ltUser()
			ctx, c, done, err := tf.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			id := workflows.LoadTestWorkflowID(env.Environment, in.Test.Name, in.ID)
			wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID: id, TaskQueue: taskQueue, WorkflowRunTimeout: workflows.LoadTestRunTimeout(in),
				WorkflowTaskTimeout:   workflows.WorkflowTaskTimeout,
				WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
				TypedSearchAttributes: workflows.LoadTestStartAttributes(env.Environment, in.Service.Name, in.TriggeredBy),
			}, workflows.LoadTestWorkflowName, in)
			if err != nil {
				return &exitError{codeError, fmt.Errorf("start load test %s: %w", in.Name(), err)}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "load test %s started: %s (%d req/s for %s, warm-up %s)\n",
				in.Name(), id, in.Test.Rate, in.Test.Duration, in.Test.WarmUp)
			if !wait {
				if out.output == "json" {
					return printJSON(cmd.OutOrStdout(), map[string]string{"id": id, "run_id": wr.GetRunID()})
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
				return nil
			}
			return followLoadTest(ctx, cmd, c, id, wr.GetRunID(), timeout, out.output == "json")
		},
	}
	tf.register(cmd)
	out.register(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "deployment spec (YAML or JSON)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the run (phase on standard error) and exit with its verdict")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "with --wait: stop waiting after this long (exit 3; the run goes on); 0 waits as long as it takes")
	cmd.Flags().StringVar(&taskQueue, "task-queue", workflows.TaskQueue, "task queue of the worker")
	return cmd
}

func newLoadTestShowCmd() *cobra.Command {
	var (
		tf  temporalFlags
		out ltOutputFlag
	)
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a load-test run: its phase while it runs, its result after",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.check(); err != nil {
				return err
			}
			ctx, c, done, err := tf.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			return followLoadTest(ctx, cmd, c, args[0], "", -1, out.output == "json")
		},
	}
	tf.register(cmd)
	out.register(cmd)
	return cmd
}

func newLoadTestCancelCmd() *cobra.Command {
	var tf temporalFlags
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a load-test run (it stops the load and scales back what it scaled out)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, c, done, err := tf.connect(cmd)
			if err != nil {
				return err
			}
			defer done()
			if err := c.CancelWorkflow(ctx, args[0], ""); err != nil {
				return &exitError{codeError, fmt.Errorf("cancel %s: %w", args[0], err)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cancel requested: %s scales back and ends\n", args[0])
			return nil
		},
	}
	tf.register(cmd)
	return cmd
}

// followLoadTest waits for a run's end (timeout < 0: does not wait; 0: as long as it
// takes), printing phase changes on standard error, then prints the result and returns the
// verdict's exit code.
func followLoadTest(ctx context.Context, cmd *cobra.Command, c client.Client, id, runID string, timeout time.Duration, asJSON bool) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	type end struct {
		res workflows.LoadTestResult
		err error
	}
	done := make(chan end, 1)
	if timeout >= 0 {
		go func() {
			var e end
			e.err = c.GetWorkflow(ctx, id, runID).Get(ctx, &e.res)
			done <- e
		}()
	}
	phase := workflows.LoadTestPhase("")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	status := func() (workflows.LoadTestStatus, error) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var st workflows.LoadTestStatus
		v, err := c.QueryWorkflow(qctx, id, runID, workflows.QueryStatus)
		if err == nil {
			err = v.Get(&st)
		}
		return st, err
	}
	for {
		if timeout < 0 {
			// show: one look. A closed run answers with its result.
			desc, err := c.DescribeWorkflowExecution(ctx, id, runID)
			if err != nil {
				return &exitError{codeError, fmt.Errorf("load test %s: %w", id, err)}
			}
			if desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				timeout = 0
				go func() {
					var e end
					e.err = c.GetWorkflow(ctx, id, runID).Get(ctx, &e.res)
					done <- e
				}()
				continue
			}
			st, err := status()
			if asJSON {
				if perr := printJSON(cmd.OutOrStdout(), map[string]any{"id": id, "running": true, "phase": st.Phase, "message": st.Message}); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "load test %s is running: %s %s\n", id, st.Phase, st.Message)
			}
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "(no worker answered the status query: %v)\n", err)
			}
			return &exitError{codeWaiting, nil}
		}
		select {
		case e := <-done:
			if e.err != nil {
				if ctx.Err() != nil {
					return &exitError{codeWaiting, fmt.Errorf("load test %s is still running when the wait ended (phase %s); follow it with: slipway loadtest show %s", id, phase, id)}
				}
				if asJSON {
					_ = printJSON(cmd.OutOrStdout(), map[string]any{"id": id, "error": ltFailure(e.err)})
				}
				return &exitError{codeError, fmt.Errorf("load test %s: %s", id, ltFailure(e.err))}
			}
			if asJSON {
				if err := printJSON(cmd.OutOrStdout(), e.res); err != nil {
					return err
				}
			} else {
				printLoadTest(cmd.OutOrStdout(), e.res)
			}
			return loadTestExit(e.res)
		case <-tick.C:
			if st, err := status(); err == nil && st.Phase != phase {
				phase = st.Phase
				fmt.Fprintf(cmd.ErrOrStderr(), "  %s: %s\n", st.Phase, st.Message)
			}
		}
	}
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

// ltFailure is the readable message of a failed run.
func ltFailure(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	var ce *temporal.CanceledError
	if errors.As(err, &ce) {
		return "cancelled (scaled back)"
	}
	return err.Error()
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

// ltShortID is a time-ordered, random, dash-free run id.
func ltShortID(now time.Time) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return now.UTC().Format("20060102t150405") + string(b)
}

func ltUser() string {
	for _, k := range []string{"SLIPWAY_USER", "USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "unknown"
}
