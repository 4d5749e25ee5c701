package main

// slipway namespace ensure: make a Temporal cluster ready for Slipway (docs/production.md):
// the namespace, with Slipway's search attributes, usable through the frontend named. The
// embedded server of `slipway dev` does this itself; a cluster of your own (the production
// topology of `make prod-up`, or any other) needs it once, before the workers start.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/workflows"
)

func newNamespaceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "namespace",
		Short: "Set up the Temporal namespace Slipway runs in",
	}
	cmd.AddCommand(newNamespaceEnsureCmd())
	return cmd
}

func newNamespaceEnsureCmd() *cobra.Command {
	var (
		tf        temporalFlags
		retention time.Duration
		wait      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "ensure",
		Short: "Create the namespace and Slipway's search attributes if missing, and wait until they are usable",
		Long: `Registers the Temporal namespace (--temporal-namespace, $TEMPORAL_NAMESPACE or "default") when it
does not exist, adds Slipway's custom search attributes (SlipwayEnvironment, SlipwayPhase...)
that are missing, then waits until the frontend named serves them: a visibility query on a
Slipway attribute answers. Until --wait ends it retries a server that does not answer yet.
Safe to run again, and against every frontend of a cluster (each has its own caches).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			ctx, cancelWait := context.WithTimeout(ctx, wait)
			defer cancelWait()
			start := time.Now()
			var last error
			created := ""
			for attempt := 0; ; attempt++ {
				made, err := ensureNamespace(ctx, &tf, retention)
				if made != "" {
					created = made
				}
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "namespace ready in %s%s\n", time.Since(start).Round(time.Millisecond), created)
					return nil
				}
				if last == nil || err.Error() != last.Error() {
					fmt.Fprintf(cmd.ErrOrStderr(), "namespace: not yet: %v\n", err)
				}
				last = err
				select {
				case <-ctx.Done():
					return fmt.Errorf("namespace not ready after %s: %w", wait, last)
				case <-time.After(min(500*time.Millisecond*time.Duration(attempt+1), 2*time.Second)):
				}
			}
		},
	}
	tf.register(cmd)
	cmd.Flags().DurationVar(&retention, "retention", 7*24*time.Hour, "how long Temporal keeps a closed release's history (set at creation only)")
	cmd.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to retry until the server answers and the namespace is usable")
	return cmd
}

// ensureNamespace does one attempt; created says what it made, also when a later step fails.
func ensureNamespace(ctx context.Context, tf *temporalFlags, retention time.Duration) (string, error) {
	c, ns, err := tf.dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	created := ""
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = c.WorkflowService().DescribeNamespace(cctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	var nf *serviceerror.NamespaceNotFound
	if errors.As(err, &nf) {
		_, err = c.WorkflowService().RegisterNamespace(cctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        ns,
			Description:                      "Slipway releases",
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if err != nil && !errors.As(err, &exists) {
			return "", fmt.Errorf("register namespace %s: %w", ns, err)
		}
		created = fmt.Sprintf(" (namespace %s created, retention %s)", ns, retention)
	} else if err != nil {
		return "", fmt.Errorf("describe namespace %s: %w", ns, err)
	}
	if err := devserver.EnsureSearchAttributes(ctx, c, ns, workflows.SearchAttributeTypes); err != nil {
		return created, err
	}
	// Usable through this frontend: its namespace and search-attribute caches know them.
	if _, err := c.ListWorkflow(cctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: ns, PageSize: 1, Query: workflows.SAEnvironment + " = 'slipway-namespace-check'",
	}); err != nil {
		return created, fmt.Errorf("visibility query on %s: %w", workflows.SAEnvironment, err)
	}
	if _, err := c.DescribeTaskQueue(cctx, workflows.TaskQueue, enumspb.TASK_QUEUE_TYPE_WORKFLOW); err != nil {
		return created, fmt.Errorf("describe task queue %s: %w", workflows.TaskQueue, err)
	}
	return created, nil
}
