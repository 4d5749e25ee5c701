package dockerengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"github.com/slipwayhq/slipway/engine"
)

// Events streams the die, oom, restart and unhealthy events of Slipway's containers
// matching sel (Docker's event API, filtered by Slipway's labels on the engine's side) and
// calls fn for each, in order. since replays the engine's buffered events from that time on
// (zero: only new ones). A die is completed from the container's state (OOMKilled, its
// error), an unhealthy from its health log (the last check's output), when the container is
// still there. Probe containers are left out.
//
// It returns ctx.Err() when ctx ends, and a KindUnavailable error when the stream breaks or
// the engine stops answering: it is pinged every 2 × Options.PingTimeout (10s by default)
// while the stream is open, since a stream over TCP can stay open, silent, to an engine that
// is gone (or never answer at all). A caller resumes with since.
func (e *Engine) Events(ctx context.Context, sel engine.Selector, since time.Time, fn func(engine.Event)) error {
	op := "events " + sel.Environment
	if sel.Environment == "" {
		return &engine.Error{Kind: engine.KindInvalid, Op: op, Err: errors.New("selector without environment")}
	}
	f := filters.NewArgs(
		filters.Arg("type", string(events.ContainerEventType)),
		filters.Arg("label", engine.LabelManaged+"=true"),
		filters.Arg("label", engine.LabelEnvironment+"="+sel.Environment),
		filters.Arg("event", string(events.ActionDie)),
		filters.Arg("event", string(events.ActionOOM)),
		filters.Arg("event", string(events.ActionRestart)),
		// health_status is matched as a prefix ("health_status: unhealthy").
		filters.Arg("event", string(events.ActionHealthStatus)),
	)
	for _, l := range []struct{ key, value string }{
		{engine.LabelCluster, sel.Cluster}, {engine.LabelService, sel.Service}, {engine.LabelVersion, sel.Version},
	} {
		if l.value != "" {
			f.Add("label", l.key+"="+l.value)
		}
	}
	opts := events.ListOptions{Filters: f}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}

	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The client's Events waits for the engine's answer to the request: open the stream
	// aside, so a silent engine is caught by the ping below.
	type stream struct {
		msgs <-chan events.Message
		errs <-chan error
	}
	opened := make(chan stream, 1)
	go func() {
		msgs, errs := e.cli.Events(sctx, opts)
		opened <- stream{msgs, errs}
	}()
	var msgs <-chan events.Message
	var errs <-chan error
	tick := time.NewTicker(2 * e.opts.PingTimeout)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s := <-opened:
			msgs, errs = s.msgs, s.errs
		case err := <-errs:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = errors.New("the engine closed the event stream")
			}
			if k := kindOf(err); k == engine.KindInvalid {
				return classify(op, err) // the engine refuses the request as made
			}
			return &engine.Error{Kind: engine.KindUnavailable, Op: op, Err: err}
		case m := <-msgs:
			if ev, ok := e.toEvent(ctx, m); ok {
				fn(ev)
			}
		case <-tick.C:
			if err := e.Ping(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &engine.Error{Kind: engine.KindUnavailable, Op: op, Err: fmt.Errorf("the engine stopped answering while its events were watched: %w", err)}
			}
		}
	}
}

// toEvent converts one of Docker's container events; false for events that are not a
// replica's (probe containers) or not one of the reported actions.
func (e *Engine) toEvent(ctx context.Context, m events.Message) (engine.Event, bool) {
	a := m.Actor.Attributes // the container's labels, plus name, image, exitCode…
	if a[engine.LabelRole] == roleProbe || a[engine.LabelManaged] != "true" {
		return engine.Event{}, false
	}
	var action engine.EventAction
	switch m.Action {
	case events.ActionDie:
		action = engine.EventDie
	case events.ActionOOM:
		action = engine.EventOOM
	case events.ActionRestart:
		action = engine.EventRestart
	case events.ActionHealthStatusUnhealthy:
		action = engine.EventUnhealthy
	default: // health_status: healthy / starting / running…
		return engine.Event{}, false
	}
	slot, _ := strconv.Atoi(a[engine.LabelSlot])
	ev := engine.Event{
		Key: engine.Key{
			Environment: a[engine.LabelEnvironment],
			Cluster:     a[engine.LabelCluster],
			Service:     a[engine.LabelService],
			Version:     a[engine.LabelVersion],
			Slot:        slot,
		},
		Name:    a["name"],
		ID:      m.Actor.ID,
		Release: a[engine.LabelRelease],
		Role:    engine.Role(a[engine.LabelRole]),
		Action:  action,
		At:      time.Unix(0, m.TimeNano),
	}
	if m.TimeNano == 0 {
		ev.At = time.Unix(m.Time, 0)
	}
	if ev.Name == "" {
		ev.Name = ev.ContainerName()
	}
	if action == engine.EventDie {
		ev.ExitCode, _ = strconv.Atoi(a["exitCode"])
	}
	if action == engine.EventOOM {
		ev.OOMKilled = true
	}
	if action == engine.EventDie || action == engine.EventUnhealthy {
		e.describe(ctx, &ev)
	}
	return ev, true
}

// describe completes an event from the container's state, when it is still there: whether
// a dead container was killed for memory and its error, the last output of a failing
// health check.
func (e *Engine) describe(ctx context.Context, ev *engine.Event) {
	c, err := e.inspect(ctx, "inspect "+ev.Name, ev.ID)
	if err != nil || c.ContainerJSONBase == nil || c.State == nil {
		return // removed meanwhile: the event says enough
	}
	st := c.State
	switch ev.Action {
	case engine.EventDie:
		ev.OOMKilled = ev.OOMKilled || st.OOMKilled
		ev.Detail = st.Error
	case engine.EventUnhealthy:
		ev.Detail = lastHealthOutput(st.Health)
	}
}

// lastHealthOutput says how the image's health check failed: its failing streak and the
// last check's exit code and output (cut short).
func lastHealthOutput(h *container.Health) string {
	if h == nil {
		return ""
	}
	out := fmt.Sprintf("%d failed checks in a row", h.FailingStreak)
	if n := len(h.Log); n > 0 && h.Log[n-1] != nil {
		last := h.Log[n-1]
		text := strings.TrimSpace(last.Output)
		if len(text) > 300 {
			text = text[:300] + "…"
		}
		out += fmt.Sprintf(", last: exit %d", last.ExitCode)
		if text != "" {
			out += fmt.Sprintf(", %q", text)
		}
	}
	return out
}
