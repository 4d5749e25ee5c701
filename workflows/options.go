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
	ErrLoadTestLimit, ErrNoTargets,
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

// Recovery from a lost worker. A worker can die (SIGKILL, OOM, a lost host) anywhere in a
// release; another worker polling the task queue takes over when the server notices:
//
//   - in an activity: every activity heartbeats at least every second for as long as it runs
//     (activities.Options.HeartbeatEvery, throttled by the worker to one a second), so the
//     server notices after heartbeatTimeout at most and retries the activity at once
//     (retry's InitialInterval) on the survivor;
//   - in a workflow task: WorkflowTaskTimeout, set where releases, plans and load tests are
//     started;
//   - between the two (a workflow task queued for the dead worker's sticky cache): the
//     worker's sticky schedule-to-start timeout (worker package).
//
// Two watches that hold no step back heartbeat slower (30 s): a lock's WatchRelease
// (changeLockWatchHeartbeat, repair.go) and a release's long WatchReplicas
// (changeWatchHeartbeat, watch.go), whose retry resumes from its last heartbeat and misses
// no event. At the seed's scale their heartbeats were most of a release's writes.
//
// So a release moves again within heartbeatTimeout + InitialInterval of the kill, plus the
// server's own delays (measured: up to about a second), plus the sticky timeout when the
// next workflow task was meant for the dead worker: 2.5 + 0.5 + 1 + 0.5 s, within the 5 s
// of the recovery budget (BenchmarkWorkerDeath; BENCHMARKS.md, Worker death).
const (
	// heartbeatTimeout is every activity's heartbeat timeout: two and a half heartbeat
	// periods, so one late heartbeat on a busy worker does not fail an attempt.
	heartbeatTimeout = 2500 * time.Millisecond
	// WorkflowTaskTimeout is the workflow task timeout Slipway's workflows are started with
	// (the server's default is 10 s). A workflow task of a release takes milliseconds; a full
	// replay of a long history on a busy worker well under a second.
	WorkflowTaskTimeout = 3 * time.Second
)

// activityOptions is the one table of activity options. Durations that depend on the spec
// (health deadlines, verification time) are added by optionsFor's extra argument. Every
// activity heartbeats (heartbeatTimeout, see above): the start-to-close timeouts only bound
// an engine call that hangs while its worker lives.
//
//   - Inspect, CheckImages, EnsureNetwork, SetTraffic, StopReplicas, RemoveReplicas: short,
//     idempotent engine calls (seconds when an engine is slow or does not answer); they
//     heartbeat without details.
//   - StartReplicas, StartStopped: wait for health, resume from the heartbeat (slots already
//     healthy) after a retry.
//   - Verify: runs for the verification duration, heartbeats its samples and resumes with
//     them after a retry.
//   - WatchReplicas: runs until the workflow cancels it or its window (added) ends,
//     heartbeats the engine time of the last event it saw and resumes from it after a retry;
//     more attempts than the others, since it spans the whole release.
//
// The load test's:
//   - Prepare, Previous: short calls (engine list, visibility list).
//   - ScaleOut: starts replicas and waits for health.
//   - ScaleIn: the compensation; more attempts than anything else.
//   - Generate: runs for warm-up + duration, heartbeats its progress every second. A
//     retry (worker lost) runs the whole load again: a measurement must be one piece. A
//     cancel waits until the generator has stopped (it learns of it from its next
//     heartbeat, within a second), so the scale-in never races the load.
var activityOptions = map[string]workflow.ActivityOptions{
	ActivityInspect:        {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivityCheckImages:    {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivityEnsureNetwork:  {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivitySetTraffic:     {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivityStopReplicas:   {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivityRemoveReplicas: {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivityStartReplicas:  {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(4)},
	ActivityStartStopped:   {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(4)},
	ActivityVerify:         {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(4)},
	ActivityWatchReplicas:  {StartToCloseTimeout: time.Minute, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(10)},
	// The locks' and repairs' Temporal calls (repair.go). WatchRelease runs for its window
	// (added) and RunRepair as long as the repair: both never give up (a lock must not lose
	// sight of its release). ReleaseState and DescribeLock are single queries.
	ActivityWatchRelease: {StartToCloseTimeout: 10 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: forever()},
	ActivityRunRepair:    {StartToCloseTimeout: time.Hour, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: forever()},
	ActivityReleaseState: {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(rollbackAttempts)},
	ActivityDescribeLock: {StartToCloseTimeout: 10 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(3)},
	// A webhook notification (notify.go): one HTTP request, a few seconds at most.
	ActivitySendWebhook: {StartToCloseTimeout: 20 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: webhookRetry()},
	// The load test's (loadtest.go).
	ActivityLoadTestPrepare:  {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(5)},
	ActivityLoadTestPrevious: {StartToCloseTimeout: 30 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(3)},
	ActivityLoadTestScaleOut: {StartToCloseTimeout: 60 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(4)},
	ActivityLoadTestScaleIn:  {StartToCloseTimeout: 90 * time.Second, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(rollbackAttempts)},
	ActivityLoadTestGenerate: {StartToCloseTimeout: 2 * time.Minute, HeartbeatTimeout: heartbeatTimeout, RetryPolicy: retry(2), WaitForCancellation: true},
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
	o = withExtra(activity, o, extra)
	o.Summary = summaryOf(ctx) // metadata.go
	return workflow.WithActivityOptions(ctx, o)
}

// withExtra adds extra to the start-to-close timeout. An activity without a heartbeat
// timeout relies on a short start-to-close timeout to be retried after a lost worker; it
// must not be lengthened.
func withExtra(activity string, o workflow.ActivityOptions, extra time.Duration) workflow.ActivityOptions {
	if extra > 0 && o.HeartbeatTimeout <= 0 {
		panic("workflows: " + activity + " has no heartbeat timeout, its start-to-close timeout cannot grow") // programming error, caught by tests
	}
	o.StartToCloseTimeout += extra
	return o
}

// rollbackOptionsFor is optionsFor with the rollback's larger retry budget.
func rollbackOptionsFor(ctx workflow.Context, activity string, extra time.Duration) workflow.Context {
	o := withExtra(activity, activityOptions[activity], extra)
	r := *o.RetryPolicy
	r.MaximumAttempts = rollbackAttempts
	o.RetryPolicy = &r
	o.Summary = summaryOf(ctx) // metadata.go
	return workflow.WithActivityOptions(ctx, o)
}
