package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// loadTestActivityOptions is the table of the load test's activity options (the release's
// are in options.go). Durations that depend on the test (load time, health deadline) are
// added by ltOptions' extra argument. Every activity heartbeats, with the release's
// heartbeatTimeout (see options.go: a lost worker is noticed within it).
//
//   - Prepare, Previous: short calls (engine list, visibility list).
//   - ScaleOut: starts replicas and waits for health.
//   - ScaleIn: the compensation; more attempts than anything else.
//   - Generate: runs for warm-up + duration, heartbeats its progress every second. A
//     retry (worker lost) runs the whole load again: a measurement must be one piece. A
//     cancel waits until the generator has stopped (it learns of it from its next
//     heartbeat, within a second), so the scale-in never races the load.
var loadTestActivityOptions = map[string]workflow.ActivityOptions{
	ActivityLoadTestPrepare:  {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: ltRetry(5)},
	ActivityLoadTestPrevious: {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: ltRetry(3)},
	ActivityLoadTestScaleOut: {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: ltRetry(4)},
	ActivityLoadTestScaleIn:  {StartToCloseTimeout: 90 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: ltRetry(rollbackAttempts)},
	ActivityLoadTestGenerate: {StartToCloseTimeout: 2 * time.Minute, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: ltRetry(2), WaitForCancellation: true},
}

// ltRetry is retry() with the load test's own permanent error types added.
func ltRetry(attempts int32) *temporal.RetryPolicy {
	r := retry(attempts)
	r.NonRetryableErrorTypes = append(append([]string(nil), r.NonRetryableErrorTypes...), ErrLoadTestLimit, ErrNoTargets)
	return r
}

// ltOptions returns the context for one load-test activity call.
func ltOptions(ctx workflow.Context, activity string, extra time.Duration) workflow.Context {
	o, ok := loadTestActivityOptions[activity]
	if !ok {
		panic("workflows: no activity options for " + activity) // programming error, caught by tests
	}
	return workflow.WithActivityOptions(ctx, withExtra(activity, o, extra))
}
