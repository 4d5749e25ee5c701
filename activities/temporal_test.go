// Not under the race detector: this is the one test of the package that embeds the Temporal
// server (devserver), and `make test-race` would otherwise race-build the whole server (the
// longest step of a cold CI run, for code that is not ours). `make test` runs it.

//go:build !race

package activities_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/testsuite"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/grpc"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/workflows"
)

// calls counts the gRPC calls a client makes, by method name (its last path element).
type calls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *calls) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.mu.Lock()
	c.n[method[strings.LastIndex(method, "/")+1:]]++
	c.mu.Unlock()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// watchRequests is how many requests the watch sent about the release's state.
func (c *calls) watchRequests() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n["GetWorkflowExecutionHistory"] + c.n["DescribeWorkflowExecution"]
}

// watched stands for a release: it runs until signalled "complete" or "continue" (it then
// continues as new).
func watched(ctx workflow.Context) error {
	var how string
	workflow.GetSignalChannel(ctx, "end").Receive(ctx, &how)
	if how == "continue" {
		return workflow.NewContinueAsNewError(ctx, watched)
	}
	return nil
}

// TestWatchRelease runs the locks' WatchRelease on the embedded Temporal server: it answers the
// close status of the run it watches as soon as the run closes (completed, terminated,
// continued as new, or closed before the watch), NotFound for a run that does not exist, and
// ReleaseStillRunning at the end of its window, and while it waits it long-polls (a request
// or two per window, where it used to ask every second).
func TestWatchRelease(t *testing.T) {
	testenv.RequireTemporal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: -1, SearchAttributes: workflows.SearchAttributeTypes})
	require.NoError(t, err)
	defer srv.Stop()
	counted := &calls{n: map[string]int{}}
	tc, err := client.DialContext(ctx, client.Options{HostPort: srv.HostPort(), Namespace: srv.Namespace(),
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(counted.intercept)}}})
	require.NoError(t, err)
	defer tc.Close()
	const queue = "watch-release"
	wk := sdkworker.New(srv.Client(), queue, sdkworker.Options{})
	wk.RegisterWorkflow(watched)
	require.NoError(t, wk.Start())
	defer wk.Stop()

	start := func(t *testing.T) client.WorkflowRun {
		run, err := srv.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: t.Name(), TaskQueue: queue}, watched)
		require.NoError(t, err)
		return run
	}
	watch := func(t *testing.T, wid, runID string, window time.Duration) string {
		var s testsuite.WorkflowTestSuite
		ae := s.NewTestActivityEnvironment()
		activities.RegisterReleases(ae, activities.NewReleases(tc))
		v, err := ae.ExecuteActivity(workflows.ActivityWatchRelease, workflows.WatchReleaseInput{WorkflowID: wid, RunID: runID, For: window})
		require.NoError(t, err)
		var e workflows.ReleaseEnd
		require.NoError(t, v.Get(&e))
		return e.Status
	}
	// closeWhileWatched watches run while closeRun closes it, once the watch's long poll is
	// under way.
	closeWhileWatched := func(t *testing.T, run client.WorkflowRun, closeRun func() error) string {
		before := counted.watchRequests()
		go func() {
			for counted.watchRequests() == before && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // the long poll has reached the server
			if err := closeRun(); err != nil {
				t.Errorf("close %s: %v", run.GetID(), err)
			}
		}()
		return watch(t, run.GetID(), run.GetRunID(), time.Minute)
	}

	t.Run("still running at the end of the window", func(t *testing.T) {
		run := start(t)
		before := counted.watchRequests()
		require.Equal(t, workflows.ReleaseStillRunning, watch(t, run.GetID(), run.GetRunID(), 3*time.Second))
		// A long poll per window (a second request at most, if the server's long poll ends
		// within it): asking every second would have sent 3 or 4.
		require.LessOrEqual(t, counted.watchRequests()-before, 2)
		require.NoError(t, srv.Client().TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "test over"))
	})
	t.Run("completed", func(t *testing.T) {
		run := start(t)
		require.Equal(t, "Completed", closeWhileWatched(t, run, func() error {
			return srv.Client().SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "end", "complete")
		}))
	})
	t.Run("terminated", func(t *testing.T) {
		run := start(t)
		require.Equal(t, "Terminated", closeWhileWatched(t, run, func() error {
			return srv.Client().TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "closed from outside")
		}))
	})
	t.Run("continued as new", func(t *testing.T) {
		run := start(t)
		require.Equal(t, "ContinuedAsNew", closeWhileWatched(t, run, func() error {
			return srv.Client().SignalWorkflow(ctx, run.GetID(), run.GetRunID(), "end", "continue")
		}))
		require.NoError(t, srv.Client().TerminateWorkflow(ctx, run.GetID(), "", "test over"))
	})
	t.Run("closed before the watch", func(t *testing.T) {
		run := start(t)
		require.NoError(t, srv.Client().TerminateWorkflow(ctx, run.GetID(), run.GetRunID(), "closed from outside"))
		require.Equal(t, "Terminated", watch(t, run.GetID(), run.GetRunID(), time.Minute))
	})
	t.Run("not found", func(t *testing.T) {
		require.Equal(t, "NotFound", watch(t, "no-such-release", "6f1d2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b", time.Minute))
	})
}
