package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/workflow"
)

// recoveryBudget is how soon after a worker's death (SIGKILL, wherever it lands) a release
// must move again on another worker (BenchmarkWorkerDeath measures it; BENCHMARKS.md, Worker death).
const recoveryBudget = 5 * time.Second

// heartbeatPeriod is the longest gap between two heartbeats of a running activity: the
// activities heartbeat every second (activities.Options.HeartbeatEvery) and the worker sends
// at most one a second (its heartbeat throttle).
const heartbeatPeriod = time.Second

// TestEveryActivityNoticesALostWorker checks the real option tables: the server must notice
// an activity whose worker died, and retry it, within the budget, whatever the activity.
// That takes a heartbeat timeout (or, for an activity that does not heartbeat, a
// start-to-close timeout: the same bound) plus the first retry interval, and must leave a
// second of the budget for the survivor's dispatch and a workflow task queued for the dead
// worker's sticky cache. A heartbeat timeout must also let a live worker miss a beat.
func TestEveryActivityNoticesALostWorker(t *testing.T) {
	tables := map[string]map[string]workflow.ActivityOptions{"every workflow": activityOptions}
	n := 0
	for table, opts := range tables {
		for name, o := range opts {
			n++
			detect := o.HeartbeatTimeout
			if detect <= 0 {
				detect = o.StartToCloseTimeout
			} else {
				require.GreaterOrEqual(t, o.HeartbeatTimeout, 2*heartbeatPeriod, "%s (%s): heartbeat timeout %s fails an attempt of a live worker that misses one heartbeat", name, table, o.HeartbeatTimeout)
			}
			require.Positive(t, detect, "%s (%s): no timeout at all: a lost worker would hang the release", name, table)
			require.NotNil(t, o.RetryPolicy, "%s (%s): no retry policy", name, table)
			require.NotEqual(t, int32(1), o.RetryPolicy.MaximumAttempts, "%s (%s): one attempt only: a lost worker fails the release", name, table)
			recovery := detect + o.RetryPolicy.InitialInterval
			require.LessOrEqual(t, recovery, recoveryBudget-time.Second,
				"%s (%s): a lost worker is noticed and the activity retried only %s after the last heartbeat (heartbeat timeout %s, start-to-close %s, first retry %s)",
				name, table, recovery, o.HeartbeatTimeout, o.StartToCloseTimeout, o.RetryPolicy.InitialInterval)
		}
	}
	require.Equal(t, len(activityOptions), n)
	require.LessOrEqual(t, WorkflowTaskTimeout, recoveryBudget-time.Second, "a workflow task lost with its worker is retried after WorkflowTaskTimeout")
	require.Greater(t, WorkflowTaskTimeout, time.Second, "a workflow task of a busy worker must not time out")
}

// TestNoHeartbeatNoExtra: an activity that relies on a short start-to-close timeout cannot
// have it lengthened by a spec's durations.
func TestNoHeartbeatNoExtra(t *testing.T) {
	short := workflow.ActivityOptions{StartToCloseTimeout: 3 * time.Second}
	require.Equal(t, 3*time.Second, withExtra("x", short, 0).StartToCloseTimeout)
	require.Panics(t, func() { withExtra("x", short, time.Second) })
	beating := workflow.ActivityOptions{StartToCloseTimeout: 3 * time.Second, HeartbeatTimeout: heartbeatTimeout}
	require.Equal(t, 5*time.Second, withExtra("x", beating, 2*time.Second).StartToCloseTimeout)
}
