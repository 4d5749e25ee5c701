// Package activities holds every side effect of a release: inspecting what runs, checking
// images, starting, switching, stopping and removing replicas, and verifying a new version
// with HTTP probes. Activities speak to container engines only through the engine port
// (engine.Engine, opened by an engine.Dialer that caches one client per endpoint).
//
// Every activity is idempotent (deterministic container names, "ensure" semantics, removing
// what is gone is success), heartbeats when it can take more than a few seconds and resumes
// from its heartbeat after a retry, and classifies its errors at the boundary: permanent
// ones become non-retryable application errors with an explicit type (see the Err* names in
// package workflows), transient ones stay retryable for the workflow's retry policy.
package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// Options tune the activities. Zero values take the defaults below.
type Options struct {
	// HeartbeatEvery is how often every activity heartbeats while it runs (default 1s; the
	// worker sends at most one a second). The workflows' heartbeat timeout (2.5s) lets one
	// heartbeat be late: a worker that dies is noticed within it, and the activity retried
	// on another one. An activity with a longer heartbeat timeout (the watches' 30 s)
	// heartbeats every two fifths of it instead (heartbeatPeriod).
	HeartbeatEvery time.Duration
	// DialTimeout bounds the TCP connect of one verification probe (default 1s): a replica
	// that cannot be reached in that time counts as unreachable, not as slow. (A refused
	// connection is a failure: nothing listens where the spec says.)
	DialTimeout time.Duration
	// LatencyRatioFloor: the p95 ratio against stable only fails a verification when the new
	// p95 is also at least this much above the stable p95 (default 25ms), so sub-millisecond
	// noise on a quiet network cannot fail a good version.
	LatencyRatioFloor time.Duration
	// MaxSamples caps the latencies kept per side of a verification (default 20000).
	MaxSamples int
	// Secrets resolves the secret names of services (services[].secrets) to values when
	// containers are created, on the worker only (DirSecrets reads a directory). nil means
	// no secrets are configured: a service with secrets fails with SecretMissing.
	Secrets SecretSource
}

// DefaultHeartbeatEvery is the default of Options.HeartbeatEvery and
// LoadTestOptions.HeartbeatEvery.
const DefaultHeartbeatEvery = time.Second

func (o Options) withDefaults() Options {
	if o.HeartbeatEvery <= 0 {
		o.HeartbeatEvery = DefaultHeartbeatEvery
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = time.Second
	}
	if o.LatencyRatioFloor <= 0 {
		o.LatencyRatioFloor = 25 * time.Millisecond
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 20000
	}
	return o
}

// Activities are Slipway's activities, bound to an engine dialer.
type Activities struct {
	dialer engine.Dialer
	opts   Options
}

// New returns the activities using d to reach cluster engines.
func New(d engine.Dialer, opts Options) *Activities {
	opts = opts.withDefaults()
	return &Activities{dialer: d, opts: opts}
}

// Register registers every activity under its explicit, stable name (workflows.Activity*).
func Register(r sdkworker.ActivityRegistry, a *Activities) {
	for name, fn := range map[string]any{
		workflows.ActivityInspect:        a.Inspect,
		workflows.ActivityCheckImages:    a.CheckImages,
		workflows.ActivityEnsureNetwork:  a.EnsureNetwork,
		workflows.ActivityStartReplicas:  a.StartReplicas,
		workflows.ActivitySetTraffic:     a.SetTraffic,
		workflows.ActivityStopReplicas:   a.StopReplicas,
		workflows.ActivityStartStopped:   a.StartStopped,
		workflows.ActivityRemoveReplicas: a.RemoveReplicas,
		workflows.ActivityVerify:         a.Verify,
		workflows.ActivityWatchReplicas:  a.WatchReplicas,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// dial opens the engine of a target, classifying a failure (an engine that cannot be
// reached is transient).
func (a *Activities) dial(ctx context.Context, t workflows.Target) (engine.Engine, error) {
	if t.Environment == "" || t.Cluster == "" {
		return nil, badInput("target needs an environment and a cluster, got %q/%q", t.Environment, t.Cluster)
	}
	e, err := a.dialer.Dial(ctx, t.EngineEndpoint())
	if err != nil {
		if engine.KindOf(err) == engine.KindInternal {
			err = &engine.Error{Kind: engine.KindUnavailable, Op: "dial " + t.Cluster, Err: err}
		}
		return nil, classify("connect to the engine of cluster "+t.Cluster, err)
	}
	return e, nil
}

// classify turns an engine error into the application error the workflow's retry policy
// understands. Permanent kinds are non-retryable; unavailable and internal ones are
// retryable; a cancelled context passes through untouched.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return err
	}
	kind := engine.KindOf(err)
	msg := fmt.Sprintf("%s: %v", op, err)
	switch kind {
	case engine.KindImageMissing, engine.KindConflict, engine.KindInvalid, engine.KindNotFound, engine.KindUnhealthy:
		return temporal.NewNonRetryableApplicationError(msg, string(kind), nil)
	case engine.KindUnavailable:
		return temporal.NewApplicationError(msg, string(kind))
	default:
		return temporal.NewApplicationError(msg, string(engine.KindInternal))
	}
}

// badInput is a non-retryable error for an input no retry can fix.
func badInput(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), workflows.ErrBadInput, nil)
}

// heartbeater heartbeats in the background with the latest details, so an activity that
// blocks in one engine call (a health wait) still heartbeats.
type heartbeater struct {
	mu      sync.Mutex
	details any
	stop    chan struct{}
	done    chan struct{}
}

// startHeartbeat heartbeats every `every` until the returned heartbeater is stopped. It is a
// no-op outside an activity (plain unit tests).
func startHeartbeat(ctx context.Context, every time.Duration, details any) *heartbeater {
	h := &heartbeater{details: details, stop: make(chan struct{}), done: make(chan struct{})}
	if !activity.IsActivity(ctx) {
		close(h.done)
		return h
	}
	every = heartbeatPeriod(ctx, every)
	go func() {
		defer close(h.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				h.mu.Lock()
				d := h.details
				h.mu.Unlock()
				activity.RecordHeartbeat(ctx, d)
			}
		}
	}()
	return h
}

// heartbeatPeriod is how often an activity heartbeats: every (Options.HeartbeatEvery), or
// two fifths of the activity's heartbeat timeout when that is longer. The engine activities'
// 2.5 s timeout keeps a heartbeat a second, so a lost worker is noticed fast; the watches
// that hold no step back run with 30 s (the workflows' changeWatchHeartbeat and
// changeLockWatchHeartbeat) and heartbeat every 12 s. Each heartbeat is a write of its
// workflow's state: a 120-service release's watches and locks at one a second were some 240
// writes a second (BENCHMARKS.md). A slower heartbeat also hears of a cancel later; nothing
// waits for a cancelled watch.
func heartbeatPeriod(ctx context.Context, every time.Duration) time.Duration {
	if p := activity.GetInfo(ctx).HeartbeatTimeout * 2 / 5; p > every {
		return p
	}
	return every
}

// beat heartbeats without details every HeartbeatEvery until the returned function is
// called: for an activity with no progress of its own to report (`defer a.beat(ctx)()` first
// thing), so a worker that dies while it waits on an engine is noticed within the heartbeat
// timeout. An activity that resumes from its heartbeat details uses startHeartbeat with them
// instead: a heartbeat without details would erase them.
func (a *Activities) beat(ctx context.Context) func() {
	return startHeartbeat(ctx, a.opts.HeartbeatEvery, nil).close
}

// update replaces the details the next heartbeats carry, without heartbeating now.
func (h *heartbeater) update(details any) {
	h.mu.Lock()
	h.details = details
	h.mu.Unlock()
}

// set replaces the details and heartbeats them now.
func (h *heartbeater) set(ctx context.Context, details any) {
	h.mu.Lock()
	h.details = details
	h.mu.Unlock()
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, details)
	}
}

func (h *heartbeater) close() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// resume reads the heartbeat details of a previous attempt into v; false when there are
// none (first attempt, or not an activity).
func resume(ctx context.Context, v any) bool {
	if !activity.IsActivity(ctx) || !activity.HasHeartbeatDetails(ctx) {
		return false
	}
	return activity.GetHeartbeatDetails(ctx, v) == nil
}

// logger returns the activity logger (nil-safe outside an activity).
func logInfo(ctx context.Context, msg string, kv ...any) {
	if activity.IsActivity(ctx) {
		activity.GetLogger(ctx).Info(msg, kv...)
	}
}
