package workflows

import (
	"context"
	"fmt"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/engine"
)

// fakeWatch is the fake world's side of WatchReplicas: the events its engines report, each
// at a time after the world was registered (the testsuite's mock clock, or the real clock
// on a real worker), and what the watches returned.
type fakeWatch struct {
	script    []watchScript
	start     time.Time
	delivered map[int]bool
	returned  []string      // "<cluster> <service> <version>: <event>" or ": window"
	inputs    []WatchInput  // of the watches that returned, in order
	results   []WatchResult // what they returned
	swept     []time.Time   // when each sweep returned (the mock clock)
}

// watchScript is one bad event the engine of cluster reports for the new replicas of
// service, after the world started.
type watchScript struct {
	cluster, service string
	after            time.Duration
	event            engine.Event
	err              error // instead of the event, for every attempt (the engine cannot be watched)
}

// report scripts an event of the new replica in slot 0 of service@version on cluster,
// after d: the test sees it through the watch, as the real engine would report it.
func (w *fakeWorld) report(cluster, service, version string, d time.Duration, action engine.EventAction, exitCode int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := engine.Key{Environment: w.env, Cluster: cluster, Service: service, Version: version}
	w.watch.script = append(w.watch.script, watchScript{cluster: cluster, service: service, after: d, event: engine.Event{
		Key: k, Name: k.ContainerName(), ID: "c0ffee", Role: engine.RoleStable, Action: action, ExitCode: exitCode,
		OOMKilled: action == engine.EventOOM || exitCode == 137,
	}})
}

// registerWatch registers WatchReplicas. In the testsuite, activities run on the real clock
// and would hold the mock clock while they block, so the watch is a mock call that waits on
// the mock clock: a scripted event's call returns it at its time, any other call returns
// "window over" after watchWindow (the workflow starts the next watch). On a real worker
// (record_test.go) it blocks until cancelled, heartbeating, or returns a scripted event.
func (w *fakeWorld) registerWatch(r activityRegistry) {
	r.RegisterActivityWithOptions(w.WatchReplicas, activity.RegisterOptions{Name: ActivityWatchReplicas})
	env, ok := r.(*testsuite.TestWorkflowEnvironment)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.watch.delivered = map[int]bool{}
	if !ok {
		w.watch.start = time.Now()
		return
	}
	w.watch.start = env.Now()
	for i, sc := range w.watch.script {
		call := env.OnActivity(ActivityWatchReplicas, mock.Anything, mock.MatchedBy(func(in WatchInput) bool {
			return in.Target.Cluster == sc.cluster && in.Service == sc.service
		})).AfterFn(func() time.Duration {
			return max(0, w.watch.start.Add(sc.after).Sub(env.Now()))
		}).Return(func(_ context.Context, in WatchInput) (WatchResult, error) {
			ev := sc.event
			ev.At = env.Now()
			w.mu.Lock()
			defer w.mu.Unlock()
			w.watch.delivered[i] = true
			if sc.err != nil {
				w.noteWatch(in, "error: "+sc.err.Error(), WatchResult{})
				return WatchResult{}, sc.err
			}
			res := WatchResult{Event: &ev, Since: ev.At}
			w.noteWatch(in, ev.String(), res)
			return res, nil
		})
		call.Maybe() // the fake's calls are no test's expectations (env.AssertExpectations)
		if sc.err == nil {
			call.Once() // an error stays: the engine cannot be watched, whoever asks
		}
	}
	// the final sweep: its short window
	env.OnActivity(ActivityWatchReplicas, mock.Anything, mock.MatchedBy(func(in WatchInput) bool { return in.Window < watchWindow })).
		After(sweepWindow).Return(func(_ context.Context, in WatchInput) (WatchResult, error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		res := WatchResult{Since: env.Now()}
		w.watch.swept = append(w.watch.swept, env.Now())
		w.noteWatch(in, "swept", res)
		return res, nil
	}).Maybe()
	env.OnActivity(ActivityWatchReplicas, mock.Anything, mock.Anything).After(watchWindow).Return(
		func(_ context.Context, in WatchInput) (WatchResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			res := WatchResult{Since: env.Now()}
			w.noteWatch(in, "window", res)
			return res, nil
		}).Maybe()
}

func (w *fakeWorld) noteWatch(in WatchInput, what string, res WatchResult) {
	s := fmt.Sprintf("%s %s %s: %s", in.Target.Cluster, in.Service, in.Version, what)
	w.watch.returned = append(w.watch.returned, s)
	w.watch.inputs = append(w.watch.inputs, in)
	w.watch.results = append(w.watch.results, res)
	w.call("WatchReplicas %s", s)
}

// WatchReplicas is the real-clock fake: a scripted event for the input's cluster and
// service at its time, else nothing until the window ends or the workflow cancels.
func (w *fakeWorld) WatchReplicas(ctx context.Context, in WatchInput) (WatchResult, error) {
	w.mu.Lock()
	idx, at := -1, time.Time{}
	for i, sc := range w.watch.script {
		if sc.cluster == in.Target.Cluster && sc.service == in.Service && !w.watch.delivered[i] {
			idx, at = i, w.watch.start.Add(sc.after)
			break
		}
	}
	w.mu.Unlock()
	end := time.Now().Add(in.Window)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		w.mu.Lock()
		switch {
		case idx >= 0 && !now.Before(at):
			ev := w.watch.script[idx].event
			ev.At = now
			w.watch.delivered[idx] = true
			if err := w.watch.script[idx].err; err != nil {
				w.noteWatch(in, "error: "+err.Error(), WatchResult{})
				w.mu.Unlock()
				return WatchResult{}, err
			}
			res := WatchResult{Event: &ev, Since: now}
			w.noteWatch(in, ev.String(), res)
			w.mu.Unlock()
			return res, nil
		case !now.Before(end):
			res := WatchResult{Since: now}
			w.noteWatch(in, "window", res)
			w.mu.Unlock()
			return res, nil
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return WatchResult{}, ctx.Err()
		case <-tick.C:
			if activity.IsActivity(ctx) {
				activity.RecordHeartbeat(ctx, nil)
			}
		}
	}
}

// sweepRounds is how many sweeps returned and at how many distinct moments: the sweeps
// all take sweepWindow on the mock clock, so the moments are the rounds the sweep ran in.
func (w *fakeWorld) sweepRounds() (sweeps, rounds int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at := map[time.Time]bool{}
	for _, t := range w.watch.swept {
		at[t] = true
	}
	return len(w.watch.swept), len(at)
}
