package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// permanentErrors are the application error types no retry can fix. Activities already mark
// them non-retryable; listing them in every policy keeps that true even for an error that
// forgot to.
var permanentErrors = []string{
	ErrImageMissing, ErrConflict, ErrInvalid, ErrNotFound, ErrUnhealthy, ErrPolicyDenied, ErrBadInput, ErrSecretMissing,
}

// retry is the default retry policy: quick first retries for a blip, then spaced out, and a
// bounded number of attempts so an engine that stays down fails the release (and triggers
// the rollback) in about a minute instead of hanging it.
func retry(attempts int32) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        500 * time.Millisecond,
		BackoffCoefficient:     2,
		MaximumInterval:        10 * time.Second,
		MaximumAttempts:        attempts,
		NonRetryableErrorTypes: permanentErrors,
	}
}

// activityOptions is the one table of activity options. Durations that depend on the spec
// (health deadlines, verification time) are added by optionsFor's extra argument.
//
//   - Inspect, CheckImages, EnsureNetwork, SetTraffic, StopReplicas, RemoveReplicas: short,
//     idempotent engine calls; no heartbeat needed.
//   - StartReplicas, StartStopped: wait for health, heartbeat every few seconds, resume
//     from the heartbeat (slots already healthy) after a retry.
//   - Verify: runs for the verification duration, heartbeats its samples and resumes with
//     them after a retry.
//   - WatchReplicas: runs until the workflow cancels it or its window (added) ends,
//     heartbeats the engine time of the last event it saw and resumes from it after a retry;
//     more attempts than the others, since it spans the whole release.
var activityOptions = map[string]workflow.ActivityOptions{
	ActivityInspect:        {StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry(5)},
	ActivityCheckImages:    {StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry(5)},
	ActivityEnsureNetwork:  {StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry(5)},
	ActivitySetTraffic:     {StartToCloseTimeout: 30 * time.Second, RetryPolicy: retry(5)},
	ActivityStopReplicas:   {StartToCloseTimeout: 60 * time.Second, RetryPolicy: retry(5)},
	ActivityRemoveReplicas: {StartToCloseTimeout: 60 * time.Second, RetryPolicy: retry(5)},
	ActivityStartReplicas:  {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: 10 * time.Second, RetryPolicy: retry(4)},
	ActivityStartStopped:   {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: 10 * time.Second, RetryPolicy: retry(4)},
	ActivityVerify:         {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: 10 * time.Second, RetryPolicy: retry(4)},
	ActivityWatchReplicas:  {StartToCloseTimeout: time.Minute, HeartbeatTimeout: 10 * time.Second, RetryPolicy: retry(10)},
	// The locks' and repairs' Temporal calls (repair.go). WatchRelease runs for its window
	// (added) and RunRepair as long as the repair: both never give up (a lock must not lose
	// sight of its release). ReleaseState and DescribeLock are single queries.
	ActivityWatchRelease: {StartToCloseTimeout: 10 * time.Second, HeartbeatTimeout: 3 * time.Second, RetryPolicy: forever()},
	ActivityRunRepair:    {StartToCloseTimeout: time.Hour, HeartbeatTimeout: 3 * time.Second, RetryPolicy: forever()},
	ActivityReleaseState: {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: 3 * time.Second, RetryPolicy: retry(rollbackAttempts)},
	ActivityDescribeLock: {StartToCloseTimeout: 10 * time.Second, HeartbeatTimeout: 3 * time.Second, RetryPolicy: retry(3)},
}

// forever retries without a limit, at most every 5 s.
func forever() *temporal.RetryPolicy {
	return &temporal.RetryPolicy{InitialInterval: 500 * time.Millisecond, BackoffCoefficient: 2, MaximumInterval: 5 * time.Second,
		NonRetryableErrorTypes: permanentErrors}
}

// rollbackAttempts is how hard the rollback tries each step: more than the release itself,
// since giving up means a failed outcome with mixed versions.
const rollbackAttempts = 8

// optionsFor returns the context for one activity call: the table's options with extra added
// to the start-to-close timeout (health deadlines, verification durations).
func optionsFor(ctx workflow.Context, activity string, extra time.Duration) workflow.Context {
	o, ok := activityOptions[activity]
	if !ok {
		panic("workflows: no activity options for " + activity) // programming error, caught by tests
	}
	o.StartToCloseTimeout += extra
	return workflow.WithActivityOptions(ctx, o)
}

// rollbackOptionsFor is optionsFor with the rollback's larger retry budget.
func rollbackOptionsFor(ctx workflow.Context, activity string, extra time.Duration) workflow.Context {
	o := activityOptions[activity]
	o.StartToCloseTimeout += extra
	r := *o.RetryPolicy
	r.MaximumAttempts = rollbackAttempts
	o.RetryPolicy = &r
	return workflow.WithActivityOptions(ctx, o)
}
