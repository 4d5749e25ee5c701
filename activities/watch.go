package activities

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// defaultWatchWindow bounds a watch whose input does not say.
const defaultWatchWindow = time.Hour

// oomGrace is how long a watch that saw an oom event waits for the die that usually follows
// it, so the evidence carries the exit code too.
const oomGrace = 2 * time.Second

// watchProgress is WatchReplicas' heartbeat: where a retry resumes.
type watchProgress struct {
	Since time.Time `json:"since"`
}

// WatchReplicas watches the new replicas of a service version on a cluster through the
// engine's events until the workflow cancels it or the input's window ends, and returns the
// first bad event as its result (not as an error): a replica that exited, was killed for
// memory, was restarted or turned unhealthy (image health checks). Only the replicas the
// release manages count: containers of that version in slots [0, Slots), canary or stable;
// load-test replicas and probe containers do not. The release cancels the watch before it
// stops or removes any of them, so Slipway's own stops are never reported.
//
// With nothing bad by the end of the window it returns no event and the engine time to
// resume from. It heartbeats that time (the last event's, or when it started), so a retry
// after a lost worker or an engine that stopped answering resumes there: the engine replays
// what it buffered meanwhile. An engine that cannot be reached is a retryable error.
func (a *Activities) WatchReplicas(ctx context.Context, in workflows.WatchInput) (workflows.WatchResult, error) {
	t := in.Target
	if in.Service == "" || in.Version == "" || in.Slots < 1 {
		return workflows.WatchResult{}, badInput("watch replicas: need a service, a version and slots (got %q, %q, %d)", in.Service, in.Version, in.Slots)
	}
	since := in.Since
	var prog watchProgress
	if resume(ctx, &prog) && prog.Since.After(since) {
		since = prog.Since
	}
	var mu sync.Mutex
	mark := since // where the next watch resumes: the last event seen (engine time)
	if mark.IsZero() {
		mark = time.Now()
	}
	// Heartbeats from the start (the engine can be slow to answer).
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, watchProgress{Since: mark})
	defer hb.close()
	e, err := a.dial(ctx, t)
	if err != nil {
		return workflows.WatchResult{}, err
	}
	resumeAt := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return mark
	}

	window := in.Window
	if window <= 0 {
		window = defaultWatchWindow
	}
	wctx, cancel := context.WithTimeout(ctx, window)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // nothing of the stream outlives the activity (or its heartbeats)
	}()
	bad := make(chan engine.Event, 64)
	done := make(chan error, 1)
	sel := engine.Selector{Environment: t.Environment, Cluster: t.Cluster, Service: in.Service, Version: in.Version}
	wg.Add(1)
	go func() {
		defer wg.Done()
		done <- e.Events(wctx, sel, since, func(ev engine.Event) {
			mu.Lock()
			if ev.At.After(mark) {
				mark = ev.At
			}
			p := watchProgress{Since: mark}
			mu.Unlock()
			hb.set(ctx, p)
			if !counts(in, ev) {
				return
			}
			select {
			case bad <- ev:
			default: // the first ones are enough
			}
		})
	}()

	found := func(ev engine.Event) (workflows.WatchResult, error) {
		if ev.Action == engine.EventOOM {
			ev = withExitCode(ev, bad, oomGrace)
		}
		logInfo(ctx, "bad replica event", "service", in.Service, "version", in.Version, "cluster", t.Cluster, "event", ev.String())
		return workflows.WatchResult{Event: &ev, Since: resumeAt()}, nil
	}
	select {
	case ev := <-bad:
		return found(ev)
	case err := <-done:
		select {
		case ev := <-bad: // reported just before the stream ended
			return found(ev)
		default:
		}
		switch {
		case ctx.Err() != nil:
			return workflows.WatchResult{}, ctx.Err() // cancelled: the release is ending
		case errors.Is(err, context.DeadlineExceeded) && wctx.Err() != nil:
			return workflows.WatchResult{Since: resumeAt()}, nil // the window ended quietly
		}
		return workflows.WatchResult{}, classify(fmt.Sprintf("watch the replicas of %s %s on cluster %s", in.Service, in.Version, t.Cluster), err)
	}
}

// counts reports whether an event is about a replica the release manages.
func counts(in workflows.WatchInput, ev engine.Event) bool {
	if ev.Version != in.Version || ev.Service != in.Service || ev.Slot < 0 || ev.Slot >= in.Slots {
		return false
	}
	return ev.Role != workflows.RoleLoadTest
}

// withExitCode completes an oom event with the exit code of the die of the same container
// that follows it (within grace).
func withExitCode(ev engine.Event, more <-chan engine.Event, grace time.Duration) engine.Event {
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for {
		select {
		case next := <-more:
			if next.ID == ev.ID && next.Action == engine.EventDie {
				ev.ExitCode = next.ExitCode
				if next.Detail != "" {
					ev.Detail = next.Detail
				}
				return ev
			}
		case <-timer.C:
			return ev
		}
	}
}
