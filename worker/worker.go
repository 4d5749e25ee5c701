// Package worker builds Slipway's Temporal worker: every workflow and activity registered under
// its explicit, stable name on the one task queue. The same worker runs inside `slipway dev`
// and as `slipway worker` against any Temporal cluster; run as many as you like.
package worker

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// Options tune the worker.
type Options struct {
	// TaskQueue defaults to workflows.TaskQueue.
	TaskQueue string
	// Identity shows in the Web UI next to each task the worker ran (default: the SDK's).
	Identity string
	// MaxConcurrentActivities caps the activities running at once (0: the SDK default).
	MaxConcurrentActivities int
	// Activities configures the release activities (probe client, limits).
	Activities activities.Options
	// LoadTests configures the load-test activities (rate and duration caps).
	LoadTests activities.LoadTestOptions
	// Interceptors wrap the worker's workflows and activities (tests use them).
	Interceptors []interceptor.WorkerInterceptor
}

// StickyScheduleToStartTimeout is how long a workflow task waits for the worker that holds
// the workflow in its cache before any worker may take it (the SDK's default is 5 s): after
// that worker died, the release moves on another one within this. A live worker takes a
// task for its cache within milliseconds (its sticky poll is always waiting); if it is too
// busy, another worker replays the history, which costs milliseconds too.
const StickyScheduleToStartTimeout = 500 * time.Millisecond

// New returns a worker (not started) with every Slipway workflow and activity registered.
// d opens the Docker engines of the clusters named in each release.
func New(c client.Client, d engine.Dialer, opts Options) (sdkworker.Worker, error) {
	if c == nil || d == nil {
		return nil, fmt.Errorf("worker: a Temporal client and an engine dialer are required")
	}
	if opts.TaskQueue == "" {
		opts.TaskQueue = workflows.TaskQueue
	}
	w := sdkworker.New(c, opts.TaskQueue, sdkworker.Options{
		Identity:                           opts.Identity,
		MaxConcurrentActivityExecutionSize: opts.MaxConcurrentActivities,
		// Heartbeats reach the server as the activity records them, at most one a second (the
		// SDK's default holds them up to 80% of the heartbeat timeout): an abort or a cancel
		// reaches a long activity — a soak, a health wait, a load test — within a second
		// instead of several. (The watches that hold no step back record one every 12 s:
		// activities' heartbeatPeriod.)
		MaxHeartbeatThrottleInterval:     time.Second,
		DefaultHeartbeatThrottleInterval: time.Second,
		// A worker that dies is replaced within seconds: its activities' heartbeats stop
		// (workflows' heartbeat timeout), its workflow tasks time out (workflows.WorkflowTaskTimeout),
		// and the workflow tasks queued for its cache go to the others after this.
		StickyScheduleToStartTimeout: StickyScheduleToStartTimeout,
		Interceptors:                 opts.Interceptors,
	})
	if opts.LoadTests.Secrets == nil {
		// The load test's scale-out starts replicas too: with the release's secrets.
		opts.LoadTests.Secrets = opts.Activities.Secrets
	}
	workflows.RegisterAll(w)
	activities.Register(w, activities.New(d, opts.Activities))
	activities.RegisterLoadTest(w, activities.NewLoadTest(d, opts.LoadTests))
	activities.RegisterReleases(w, activities.NewReleases(c))
	activities.RegisterNotify(w, activities.NewNotifier(opts.Activities.Secrets))
	return w, nil
}
