package dockerengine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/engine"
)

// eventLog collects the events of one Events call running in the background.
type eventLog struct {
	mu     sync.Mutex
	events []engine.Event
	cancel context.CancelFunc
	done   chan struct{}
	err    error // what Events returned, once done is closed
}

func watchEvents(t *testing.T, e *Engine, sel engine.Selector, since time.Time) *eventLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l := &eventLog{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.err = e.Events(ctx, sel, since, func(ev engine.Event) {
			l.mu.Lock()
			l.events = append(l.events, ev)
			l.mu.Unlock()
		})
	}()
	t.Cleanup(func() { _ = l.stop() }) // tests that check the stop call it themselves
	return l
}

// stop ends the stream and returns what Events returned.
func (l *eventLog) stop() error {
	l.cancel()
	<-l.done
	return l.err
}

// waitFor returns the first event satisfying ok, failing the test after d.
func (l *eventLog) waitFor(t *testing.T, d time.Duration, ok func(engine.Event) bool) engine.Event {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		for _, ev := range l.events {
			if ok(ev) {
				l.mu.Unlock()
				return ev
			}
		}
		l.mu.Unlock()
		select {
		case <-l.done:
			t.Fatalf("the event stream ended: %v", l.err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("no such event within %s; got %+v", d, l.events)
	return engine.Event{}
}

func (l *eventLog) all() []engine.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]engine.Event(nil), l.events...)
}

// TestEventsCrashLater: a replica of bad-crash-later serves, then exits 1 after 20 s: the
// stream reports a die with exit code 1 and the replica's labels; replayed with since, the
// same die comes again; a replica of another version (same service) is not reported.
func TestEventsCrashLater(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	sel := engine.Selector{Environment: f.env, Cluster: "a", Service: "web", Version: "bad-crash-later"}
	before := time.Now().Add(-time.Second)
	log := watchEvents(t, f.e, sel, time.Time{})

	other := f.spec("a", "web", "bad-crash", 1) // exits at once: another version, not selected
	mustEnsure(t, f.e, other)
	s := f.spec("a", "web", "bad-crash-later", 0)
	s.Release = "r-crash"
	mustEnsure(t, f.e, s)
	mustHealthy(t, f.e, s.ContainerName())

	die := log.waitFor(t, 45*time.Second, func(ev engine.Event) bool { return ev.Action == engine.EventDie })
	if die.Name != s.ContainerName() || die.ExitCode != 1 || die.OOMKilled || die.Version != "bad-crash-later" ||
		die.Service != "web" || die.Cluster != "a" || die.Slot != 0 || die.Release != "r-crash" || die.Role != engine.RoleStable || die.ID == "" {
		t.Fatalf("die event: %+v", die)
	}
	if d := time.Since(die.At); d < 0 || d > time.Minute || die.At.Before(before) {
		t.Fatalf("event time %s (now %s)", die.At, time.Now())
	}
	if got := die.String(); !strings.Contains(got, "exited with code 1") {
		t.Fatalf("String: %q", got)
	}
	for _, ev := range log.all() {
		if ev.Version != "bad-crash-later" {
			t.Fatalf("an event of another version came through the selector: %+v", ev)
		}
	}

	// since replays the engine's buffered events.
	replay := watchEvents(t, f.e, sel, before)
	again := replay.waitFor(t, 10*time.Second, func(ev engine.Event) bool { return ev.Action == engine.EventDie })
	if again.ID != die.ID || again.ExitCode != 1 {
		t.Fatalf("replayed %+v, first %+v", again, die)
	}
	if err := log.stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled stream returns the context's error, got %v", err)
	}
}

// TestEventsOOM: bad-oom under a 64 MiB limit is killed by the kernel: the stream says
// out of memory (an oom event, or a die whose state says OOMKilled, exit code 137).
func TestEventsOOM(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	sel := engine.Selector{Environment: f.env, Cluster: "a", Service: "leaky"}
	log := watchEvents(t, f.e, sel, time.Time{})
	s := f.spec("a", "leaky", "bad-oom", 0)
	s.MemoryBytes = 64 << 20
	s.Health = engine.HealthCheck{} // it may die before any probe would answer
	mustEnsure(t, f.e, s)

	ev := log.waitFor(t, 45*time.Second, func(ev engine.Event) bool { return ev.OOMKilled })
	if ev.Name != s.ContainerName() || (ev.Action != engine.EventOOM && ev.Action != engine.EventDie) {
		t.Fatalf("oom event: %+v", ev)
	}
	die := log.waitFor(t, 20*time.Second, func(ev engine.Event) bool { return ev.Action == engine.EventDie })
	if die.ExitCode != 137 || !die.OOMKilled {
		t.Fatalf("die after the OOM kill: %+v (all: %+v)", die, log.all())
	}
	t.Logf("events: %+v", log.all())
}

// TestEventsUnhealthy: the image's HEALTHCHECK of slow-start says unhealthy after ~3 s
// (it answers 503 for 12 s): the stream reports it with the check's output. HTTP health
// checks (Slipway's own) give no events.
func TestEventsUnhealthy(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	log := watchEvents(t, f.e, engine.Selector{Environment: f.env, Cluster: "a"}, time.Time{})
	img := f.spec("a", "img", "slow-start", 0)
	img.Health = engine.HealthCheck{UseImage: true}
	mustEnsure(t, f.e, img)
	http := f.spec("a", "http", "slow-start", 0) // HTTP check: judged by Slipway, no engine events
	mustEnsure(t, f.e, http)

	ev := log.waitFor(t, 30*time.Second, func(ev engine.Event) bool { return ev.Action == engine.EventUnhealthy })
	if ev.Name != img.ContainerName() || ev.Detail == "" || ev.ExitCode != 0 {
		t.Fatalf("unhealthy event: %+v", ev)
	}
	for _, ev := range log.all() {
		if ev.Service == "http" {
			t.Fatalf("an HTTP-checked replica gave an engine event: %+v", ev)
		}
	}
}

// TestEventsUnavailable: a stream from an engine that does not answer ends with
// KindUnavailable, for a socket nobody listens on, a closed port, and a listener that
// accepts and never answers (caught by the ping).
func TestEventsUnavailable(t *testing.T) {
	t.Parallel()
	hosts := deadHosts(t)
	d := NewDialer(Options{CallTimeout: 500 * time.Millisecond, PingTimeout: 500 * time.Millisecond})
	defer func() { _ = d.Close() }()
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) {
			eng, err := d.Dial(context.Background(), engine.Endpoint{Cluster: "down", Host: host})
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 20*time.Second)
			err = eng.Events(ctx, engine.Selector{Environment: "x"}, time.Time{}, func(engine.Event) {})
			wantKind(t, err, engine.KindUnavailable)
			if ctx.Err() != nil {
				t.Fatal("the caller's deadline was reached: the engine was not given up on")
			}
		})
	}
	eng, err := d.Dial(context.Background(), engine.Endpoint{Cluster: "down", Host: hosts[1]})
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, eng.Events(context.Background(), engine.Selector{}, time.Time{}, func(engine.Event) {}), engine.KindInvalid)
}
