package activities_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// watchAsync runs WatchReplicas in the background (plain context: no heartbeats) and
// returns where its result arrives.
func (f *fixture) watchAsync(ctx context.Context, in workflows.WatchInput) <-chan watchOutcome {
	out := make(chan watchOutcome, 1)
	go func() {
		res, err := f.acts.WatchReplicas(ctx, in)
		out <- watchOutcome{res, err}
	}()
	return out
}

type watchOutcome struct {
	res workflows.WatchResult
	err error
}

func (f *fixture) watchInput(version string, slots int, window time.Duration) workflows.WatchInput {
	return workflows.WatchInput{Target: f.target, Release: "r1", Service: "web", Version: version, Slots: slots, Window: window}
}

func wait(t *testing.T, ch <-chan watchOutcome, d time.Duration) watchOutcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(d):
		t.Fatalf("no watch result within %s", d)
		return watchOutcome{}
	}
}

// TestWatchReplicasCrashLater: a new replica of bad-crash-later serves, passes its health
// check, then exits 1 after 20 s: the watch returns that die as its result. A replica of the
// same version outside the release's slots, which exits at once, is not reported.
func TestWatchReplicasCrashLater(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	watch := f.watchAsync(ctx, f.watchInput("bad-crash-later", 1, time.Minute))
	time.Sleep(500 * time.Millisecond) // the stream is open
	// slot 3 is not the release's (Slots 1): a crash there does not count
	_, err := f.start(demo("bad-crash-later", func(s *spec.Service) { s.Env = map[string]string{"DEMO_CRASH_AT_START": "1"} }), engine.RoleStable, 3)
	require.Error(t, err, "slot 3 exits at start")
	_, err = f.start(demo("bad-crash-later"), engine.RoleStable, 0)
	require.NoError(t, err, "bad-crash-later comes up")

	o := wait(t, watch, 45*time.Second)
	require.NoError(t, o.err)
	ev := o.res.Event
	require.NotNil(t, ev, "a die must be reported")
	require.Equal(t, engine.EventDie, ev.Action)
	require.Equal(t, 1, ev.ExitCode)
	require.False(t, ev.OOMKilled)
	require.Equal(t, 0, ev.Slot)
	require.Equal(t, "slipway."+f.env+".a.web.bad-crash-later.0", ev.Name)
	require.Equal(t, "r1", ev.Release)
	require.WithinDuration(t, time.Now(), ev.At, time.Minute)
	require.False(t, o.res.Since.IsZero())
}

// TestWatchReplicasOOM: bad-oom under a 64 MiB limit is killed by the kernel: the watch
// reports it killed for memory, with the exit code of the die that follows (137).
func TestWatchReplicasOOM(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	watch := f.watchAsync(ctx, f.watchInput("bad-oom", 2, time.Minute))
	time.Sleep(500 * time.Millisecond)
	_, _ = f.start(demo("bad-oom", func(s *spec.Service) { s.Resources = &spec.Resources{Memory: "64Mi"} }), engine.RoleStable, 0)

	o := wait(t, watch, 45*time.Second)
	require.NoError(t, o.err)
	require.NotNil(t, o.res.Event)
	ev := *o.res.Event
	require.True(t, ev.OOMKilled, "%+v", ev)
	require.Contains(t, []engine.EventAction{engine.EventOOM, engine.EventDie}, ev.Action)
	require.Equal(t, 137, ev.ExitCode, "%+v", ev)
	require.Contains(t, ev.String(), "out of memory")
}

// TestWatchReplicasResumes: a die that happened before the watch started is reported when
// the watch resumes from a time before it, given in the input (the next window) or in the
// heartbeat of a previous attempt (a retry); a watch from now does not see it.
func TestWatchReplicasResumes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	before := time.Now().Add(-time.Second)
	_, err := f.start(demo("bad-crash"), engine.RoleCanary, 0)
	require.Error(t, err, "bad-crash does not come up")

	t.Run("from now", func(t *testing.T) {
		res, err := f.acts.WatchReplicas(ctxT(t), f.watchInput("bad-crash", 1, 2*time.Second))
		require.NoError(t, err)
		require.Nil(t, res.Event, "the window ends without an event")
		require.WithinDuration(t, time.Now(), res.Since, 10*time.Second)
	})
	t.Run("since in the input", func(t *testing.T) {
		in := f.watchInput("bad-crash", 1, 30*time.Second)
		in.Since = before
		res, err := f.acts.WatchReplicas(ctxT(t), in)
		require.NoError(t, err)
		require.NotNil(t, res.Event)
		require.Equal(t, engine.EventDie, res.Event.Action)
		require.Equal(t, 1, res.Event.ExitCode)
		require.Equal(t, engine.RoleCanary, res.Event.Role)
	})
	t.Run("since in the heartbeat", func(t *testing.T) {
		ae := f.activityEnv()
		ae.SetHeartbeatDetails(map[string]any{"since": before})
		v, err := ae.ExecuteActivity(workflows.ActivityWatchReplicas, f.watchInput("bad-crash", 1, 30*time.Second))
		require.NoError(t, err)
		var res workflows.WatchResult
		require.NoError(t, v.Get(&res))
		require.NotNil(t, res.Event)
		require.Equal(t, engine.EventDie, res.Event.Action)
	})
}

// TestWatchReplicasCancelAndErrors: a cancelled watch returns the cancellation at once; an
// engine that does not answer is a retryable error; a bad input is not retried.
func TestWatchReplicasCancelAndErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	watch := f.watchAsync(ctx, f.watchInput("1.0.0", 1, time.Hour))
	time.Sleep(300 * time.Millisecond)
	cancel()
	o := wait(t, watch, 5*time.Second)
	require.True(t, errors.Is(o.err, context.Canceled), "%v", o.err)

	dead := workflows.WatchInput{Target: workflows.Target{Environment: f.env, Cluster: "dead", Endpoint: "unix:///tmp/slipway-no-such-docker.sock"},
		Service: "web", Version: "1.0.0", Slots: 1, Window: time.Minute}
	_, err := f.acts.WatchReplicas(ctxT(t), dead)
	ae := appErr(t, err)
	require.Equal(t, workflows.ErrEngineUnavailable, ae.Type())
	require.False(t, ae.NonRetryable())

	_, err = f.acts.WatchReplicas(ctxT(t), workflows.WatchInput{Target: f.target, Service: "web", Version: "1.0.0"})
	ae = appErr(t, err)
	require.Equal(t, workflows.ErrBadInput, ae.Type())
	require.True(t, ae.NonRetryable())
}
