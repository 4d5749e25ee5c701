package engine

import (
	"fmt"
	"time"
)

// EventAction is what happened to a replica, as Engine.Events reports it. Only the actions
// that say a running replica went wrong are reported.
type EventAction string

// Event actions.
const (
	// EventDie: the container's main process ended (ExitCode; OOMKilled when the kernel
	// killed it for memory). A container Slipway stops also dies: whoever watches must stop
	// watching before it stops or removes the replicas it watches.
	EventDie EventAction = "die"
	// EventOOM: the kernel's out-of-memory killer hit a process of the container.
	EventOOM EventAction = "oom"
	// EventRestart: the container was restarted (Slipway's replicas have no restart policy,
	// so someone restarted it by hand).
	EventRestart EventAction = "restart"
	// EventUnhealthy: the engine's own health check (the image's HEALTHCHECK, health.image)
	// turned unhealthy. HTTP health checks run in Slipway, not in the engine: they give no
	// events.
	EventUnhealthy EventAction = "unhealthy"
)

// Event is one thing that happened to one of Slipway's replicas, from the engine's event
// stream, with what the engine says about it.
type Event struct {
	Key
	Name    string      `json:"name"`
	ID      string      `json:"id,omitempty"`
	Release string      `json:"release,omitempty"`
	Role    Role        `json:"role,omitempty"`
	Action  EventAction `json:"action"`
	// ExitCode of a die event (0 for the other actions).
	ExitCode int `json:"exit_code"`
	// OOMKilled: the container was killed for memory (an oom event, or a die whose
	// container state says so).
	OOMKilled bool `json:"oom_killed,omitempty"`
	// Detail is what else the engine said: the state's error of a dead container, the last
	// output of a failing health check.
	Detail string `json:"detail,omitempty"`
	// At is the engine's time of the event.
	At time.Time `json:"at"`
}

// String says what happened in a few words: "slipway.e.a.web.2.0.0 exited with code 137
// (out of memory) at 12:00:03".
func (ev Event) String() string {
	var what string
	switch ev.Action {
	case EventDie:
		what = fmt.Sprintf("exited with code %d", ev.ExitCode)
		if ev.OOMKilled {
			what += " (out of memory)"
		}
	case EventOOM:
		what = "was killed for memory (out of memory)"
		if ev.ExitCode != 0 {
			what += fmt.Sprintf(", exit code %d", ev.ExitCode)
		}
	case EventRestart:
		what = "was restarted"
	case EventUnhealthy:
		what = "turned unhealthy (its image's health check)"
	default:
		what = string(ev.Action)
	}
	if ev.Detail != "" {
		what += ": " + ev.Detail
	}
	if !ev.At.IsZero() {
		what += " at " + ev.At.UTC().Format(time.RFC3339)
	}
	return ev.Name + " " + what
}
