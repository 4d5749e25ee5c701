package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// The lifecycle watch. From the moment a release starts the first new replica of a service
// on a cluster until the release ends, a WatchReplicas activity follows the engine's events
// of that service's new version there: a replica that exits, is killed for memory, is
// restarted or turns unhealthy (image health checks) is a failed verdict (stage "watch",
// the event as evidence) and the release rolls back. After a service's last wave the
// release keeps watching for its bake time (verification.bake) before it may finish (phase
// baking). Every watch is cancelled before the cleanup or the rollback stops or removes a
// replica, so Slipway's own stops are never taken for crashes.
//
// Behind changeWatchReplicas: releases started before it replay without watches.

// WatchInput asks WatchReplicas to watch the new replicas of one service version on one
// cluster: the containers of Version in slots [0, Slots), canary or stable (load-test
// replicas and probe containers are not the release's).
type WatchInput struct {
	Target  Target `json:"target"`
	Release string `json:"release"`
	Service string `json:"service"`
	Version string `json:"version"`
	Slots   int    `json:"slots"`
	// Since resumes where a previous watch ended (the engine replays its buffered events
	// from then on); zero watches from now.
	Since time.Time `json:"since,omitempty"`
	// Window bounds one activity: with nothing bad by then it returns without an event and
	// the workflow starts the next one from Since, so no activity runs unbounded.
	Window time.Duration `json:"window"`
}

// WatchResult is the first bad event (nil when the window ended without one) and where the
// next watch resumes.
type WatchResult struct {
	Event *engine.Event `json:"event,omitempty"`
	Since time.Time     `json:"since"`
}

// StageWatch is the stage of a verdict reached by the lifecycle watch.
const StageWatch = "watch"

// watchWindow is how long one WatchReplicas activity watches before the workflow starts the
// next one (three history events per hour and watch). sweepWindow is the live part of the
// final sweep (see sweep).
//
// sweepCap: the sweep runs sweepCap times the release's cap on services at once
// (fanOutCap; 32 by default). A sweep starts no container and opens one event stream for 2 s,
// so it may run wider than the services' changes; what bounds it is the heartbeats it sends
// onto the release (one a second each). At 8 at a time the sweep of a 120-service release
// took 15 rounds of 2 s at its end.
const (
	watchWindow = time.Hour
	sweepWindow = 2 * time.Second
	sweepCap    = 4
)

// changeWatchHeartbeat (a workflow.GetVersion change ID; never reuse or remove it while
// histories that lack it may replay): a release's long WatchReplicas activities run with a
// heartbeat timeout of watchHeartbeat instead of the engine activities' 2.5 s. A watch
// holds no step of the release back: what its heartbeat buys is a retry on another worker
// when its worker dies, and that retry resumes from the engine time of its last heartbeat
// (the engine replays its events from then on), so a slower takeover misses no event; the
// final sweep looks again before the release may pass. With 2.5 s (a heartbeat RPC every
// second, the worker's throttle, each a write of the release's mutable state) a 120-service
// release's watches sent 120 heartbeats a second to its one workflow, and on a loaded topology a
// heartbeat slower than the timeout cancels its activity (the SDK counts it as timed out):
// watches ran out of attempts and the release rolled back (BENCHMARKS.md, the 120-service
// release). The sweep's short watches keep the short timeout: the release waits for them.
const (
	changeWatchHeartbeat = "watch-heartbeat"
	watchHeartbeat       = 30 * time.Second
)

type watchKey struct{ service, cluster string }

// watches is the release's lifecycle watches.
type watches struct {
	decided  bool // GetVersion was asked
	on       bool // this release watches
	stopped  bool // the release is ending: results are not looked at any more
	running  map[watchKey]bool
	from     map[watchKey]time.Time // when each watch started
	cancels  []workflow.CancelFunc
	starting map[string]int       // container name → StartReplicas activities waiting for it
	doneAt   map[string]time.Time // service → when its last wave ended
	slowBeat bool                 // changeWatchHeartbeat
}

// watchOptions is the context of one long WatchReplicas activity (changeWatchHeartbeat).
func (r *release) watchOptions(ctx workflow.Context) workflow.Context {
	actx := optionsFor(ctx, ActivityWatchReplicas, watchWindow)
	if r.watch.slowBeat {
		actx = workflow.WithHeartbeatTimeout(actx, watchHeartbeat)
	}
	return actx
}

// watchReplicas is called by startReplicas before it starts the slots names of service s on
// the cluster of cp: it starts the (service, cluster) watch when there is none yet (its
// activity is scheduled before the StartReplicas), and notes the names as starting until
// the returned func is called.
func (r *release) watchReplicas(ctx workflow.Context, s spec.Service, cp *ClusterPlan, names []string) (started func()) {
	w := &r.watch
	if !w.decided {
		w.decided = true
		w.on = workflow.GetVersion(ctx, changeWatchReplicas, workflow.DefaultVersion, 1) == 1
		w.running = map[watchKey]bool{}
		w.from = map[watchKey]time.Time{}
		w.starting = map[string]int{}
		w.doneAt = map[string]time.Time{}
		w.slowBeat = w.on && workflow.GetVersion(ctx, changeWatchHeartbeat, workflow.DefaultVersion, 1) >= 1
	}
	if !w.on || w.stopped {
		return func() {}
	}
	for _, n := range names {
		w.starting[n]++
	}
	if k := (watchKey{s.Name, cp.Cluster}); !w.running[k] {
		w.running[k] = true
		w.from[k] = workflow.Now(ctx)
		in := WatchInput{Target: r.tgt[cp.Cluster], Release: r.in.ID, Service: s.Name, Version: s.Version, Slots: cp.ReplicasTo, Window: watchWindow}
		wctx, cancel := workflow.WithCancel(ctx)
		w.cancels = append(w.cancels, cancel)
		f := workflow.ExecuteActivity(r.watchOptions(wctx), ActivityWatchReplicas, in)
		workflow.Go(wctx, func(gctx workflow.Context) { r.watchLoop(gctx, s, cp, in, f) })
		r.event(ctx, r.st.Phase, s.Name, cp.Cluster, fmt.Sprintf("watching the new replicas of %s (exit, out of memory, restart, unhealthy) until the release ends", s.Version))
	}
	return func() {
		for _, n := range names {
			w.starting[n]--
		}
	}
}

// watchLoop waits for the watch's result: a window without event starts the next watch; a
// bad event is a failed verdict, unless the release is already stopping. An event of a
// replica that a StartReplicas still waits for is held until that activity ends: a replica
// that does not come up is its failure to report (with the replica's last log lines), one
// that came up and then failed is the watch's.
func (r *release) watchLoop(ctx workflow.Context, s spec.Service, cp *ClusterPlan, in WatchInput, f workflow.Future) {
	for {
		var res WatchResult
		err := f.Get(ctx, &res)
		if r.watchOver(ctx) {
			return
		}
		if err != nil {
			_ = r.activityFailed(ctx, s.Name, cp.Cluster, "watching the new replicas", err)
			return
		}
		if res.Event == nil {
			if !res.Since.IsZero() {
				in.Since = res.Since
			}
			f = workflow.ExecuteActivity(r.watchOptions(ctx), ActivityWatchReplicas, in)
			continue
		}
		ev := *res.Event
		if err := workflow.Await(ctx, func() bool { return r.watch.starting[ev.Name] <= 0 || r.watchOver(ctx) }); err != nil || r.watchOver(ctx) {
			return
		}
		_ = r.judge(ctx, Verdict{Result: VerdictFailed, Service: s.Name, Cluster: cp.Cluster, Stage: StageWatch,
			Reason: "new replica " + ev.String(), Evidence: Evidence{Event: &ev}})
		return
	}
}

// watchOver: the release no longer looks at what its watches say (it is ending, failed or
// aborted; their contexts are cancelled then too).
func (r *release) watchOver(ctx workflow.Context) bool {
	return r.watch.stopped || ctx.Err() != nil || r.failure != nil || r.abort != nil
}

// watchDone notes that a service's last wave ended: its bake time starts now.
func (r *release) watchDone(ctx workflow.Context, service string) {
	if r.watch.on {
		r.watch.doneAt[service] = workflow.Now(ctx)
	}
}

// stopWatches cancels every watch (without waiting for the activities to notice) and stops
// looking at their results. The release calls it when the forward path ends, before the
// cleanup or the rollback stop or remove any replica.
func (r *release) stopWatches(ctx workflow.Context) {
	if !r.watch.on || r.watch.stopped {
		return
	}
	r.watch.stopped = true
	for _, cancel := range r.watch.cancels {
		cancel()
	}
	switch n := len(r.watch.cancels); n {
	case 0:
	case 1:
		r.event(ctx, r.st.Phase, "", "", "stopped watching the new replicas (1 watch)")
	default:
		r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("stopped watching the new replicas (%d watches)", n))
	}
}

// bake holds the end of a release that rolled out until every changed service's bake time
// (verification.bake, counted from its last wave) has passed, its replicas still watched:
// a bad event meanwhile fails the release as during the rollout. A fast-track release (a
// rollback to a known-good version) does not bake. Then the sweep.
func (r *release) bake(ctx workflow.Context) error {
	if !r.watch.on {
		return nil
	}
	var until time.Time
	var parts []string
	for _, name := range sortedKeys(r.watch.doneAt) {
		b := bakeTime(r.in.Spec, name)
		if b <= 0 || r.in.FastTrack {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s", name, b))
		if t := r.watch.doneAt[name].Add(b); t.After(until) {
			until = t
		}
	}
	if now := workflow.Now(ctx); until.After(now) {
		r.setPhase(ctx, PhaseBaking, fmt.Sprintf("baking: the new replicas stay watched for %s more (bake: %s)", until.Sub(now), strings.Join(parts, ", ")))
		if err := workflow.Sleep(ctx, until.Sub(now)); err != nil {
			return err
		}
		if r.failure != nil || r.abort != nil {
			return errStop
		}
	}
	if err := r.sweep(ctx); err != nil {
		return err
	}
	if len(parts) > 0 {
		r.event(ctx, PhaseBaking, "", "", "bake passed: no new replica exited, ran out of memory, was restarted or turned unhealthy")
	}
	return nil
}

// sweep is the last look before a release may succeed: for every watch, a short
// WatchReplicas from the moment that watch started, so the engine answers now and replays
// what it still holds of the whole watch. A watch that was retrying against an engine that
// did not answer cannot let a release pass unseen: its sweep fails the same way (missing
// data is never a pass), and a bad event it replays fails the release.
func (r *release) sweep(ctx workflow.Context) error {
	var keys []watchKey
	for _, svc := range sortedKeys(r.watch.doneAt) {
		for _, c := range r.in.Spec.Clusters {
			if k := (watchKey{svc, c.Name}); r.watch.running[k] {
				keys = append(keys, k)
			}
		}
	}
	return parallel(ctx, sweepCap*r.fanOutCap(ctx), len(keys), func(gctx workflow.Context, i int) error {
		k := keys[i]
		s, _ := findService(r.in.Spec, k.service)
		cp := r.plan.Service(k.service).Cluster(k.cluster)
		in := WatchInput{Target: r.tgt[k.cluster], Release: r.in.ID, Service: s.Name, Version: s.Version, Slots: cp.ReplicasTo,
			Since: r.watch.from[k], Window: sweepWindow}
		var res WatchResult
		err := workflow.ExecuteActivity(optionsFor(gctx, ActivityWatchReplicas, sweepWindow), ActivityWatchReplicas, in).Get(gctx, &res)
		switch {
		case r.failure != nil || r.abort != nil:
			return errStop
		case err != nil:
			return r.activityFailed(gctx, s.Name, k.cluster, "watching the new replicas", err)
		case res.Event != nil:
			ev := *res.Event
			return r.judge(gctx, Verdict{Result: VerdictFailed, Service: s.Name, Cluster: k.cluster, Stage: StageWatch,
				Reason: "new replica " + ev.String(), Evidence: Evidence{Event: &ev}})
		}
		return nil
	})
}

// bakeTime is a service's verification.bake (spec.DefaultBake for an input that was not
// defaulted).
func bakeTime(env spec.Environment, service string) time.Duration {
	s, ok := findService(env, service)
	if !ok {
		return 0
	}
	if s.Verification != nil && s.Verification.Bake != nil {
		return s.Verification.Bake.D()
	}
	return spec.DefaultBake
}
