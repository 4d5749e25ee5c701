// Package apiclient is a small Go client of Slipway's HTTP API and the API's wire types.
// The starter package serves these types; the CLI and the tests consume them.
package apiclient

import (
	"fmt"
	"strings"
	"time"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Release is the API's view of one release.
type Release struct {
	// ID is the release id used in every /v1/releases/{id} URL. It is the Temporal workflow
	// ID (release-<environment>-<short id>), so the same id finds the release in the Web UI.
	ID          string `json:"id"`
	RunID       string `json:"run_id,omitempty"`
	Environment string `json:"environment"`
	// Running is false once the workflow has closed.
	Running bool              `json:"running"`
	Phase   workflows.Phase   `json:"phase"`
	Outcome workflows.Outcome `json:"outcome,omitempty"`
	Reason  string            `json:"reason,omitempty"`
	// Existing is true when a POST with an Idempotency-Key found the release it had already
	// started (nothing new was started).
	Existing bool `json:"existing,omitempty"`
	// Status is the whole picture from the release's status query (or its final result).
	Status *workflows.ReleaseStatus `json:"status,omitempty"`
	// StatusError says why Status is missing (e.g. no worker answered the status query);
	// Phase and Outcome then come from the release's search attributes.
	StatusError string `json:"status_error,omitempty"`
	Links       Links  `json:"links"`
}

// Links point at a release's API resources and its page in the Temporal Web UI.
type Links struct {
	Self   string `json:"self"`
	Events string `json:"events"`
	WebUI  string `json:"web_ui,omitempty"`
}

// AwaitingHuman reports whether the release stands at a human gate (awaiting approval or paused).
func (r *Release) AwaitingHuman() bool {
	if r.Status != nil && r.Status.Paused {
		return true
	}
	return r.Phase == workflows.PhaseAwaitingApproval || r.Phase == workflows.PhasePaused
}

// ReleaseSummary is one row of GET /v1/releases, read from Temporal visibility.
type ReleaseSummary struct {
	ID          string            `json:"id"`
	RunID       string            `json:"run_id,omitempty"`
	Environment string            `json:"environment,omitempty"`
	Services    []string          `json:"services,omitempty"`
	Versions    []string          `json:"versions,omitempty"`
	Phase       workflows.Phase   `json:"phase,omitempty"`
	Outcome     workflows.Outcome `json:"outcome,omitempty"`
	TriggeredBy string            `json:"triggered_by,omitempty"`
	// Description, BuildURL and Commit are what the release was started with (its memo).
	Description string `json:"description,omitempty"`
	BuildURL    string `json:"build_url,omitempty"`
	Commit      string `json:"commit,omitempty"`
	// ExecutionStatus is Temporal's: Running, Completed, Failed (a release that did not
	// succeed), Terminated, ...
	ExecutionStatus string    `json:"execution_status"`
	StartedAt       time.Time `json:"started_at"`
	ClosedAt        time.Time `json:"closed_at,omitzero"`
	Links           Links     `json:"links"`
}

// ReleaseList is a page of GET /v1/releases.
type ReleaseList struct {
	Releases      []ReleaseSummary `json:"releases"`
	NextPageToken string           `json:"next_page_token,omitempty"`
}

// TriggerRequest is the JSON body of POST /v1/releases that releases services of an
// environment's checked-in spec (deployments/<environment>.yaml) at new versions.
type TriggerRequest struct {
	Environment string            `json:"environment"`
	Services    map[string]string `json:"services"`
	Description string            `json:"description,omitempty"`
	BuildURL    string            `json:"build_url,omitempty"`
	Commit      string            `json:"commit,omitempty"`
}

// DecisionRequest is the optional JSON body of approve / abort / pause / resume / rollback.
type DecisionRequest struct {
	Reason string `json:"reason,omitempty"`
	// Service and Cluster name a pending gate (approve and abort only; the status lists the
	// gates). An approve without them approves every pending gate, as long as that is one
	// per service; with two gates of one service pending (two clusters of a wave), it must
	// name the cluster. An abort naming a gate refuses it: the release rolls back.
	Service string `json:"service,omitempty"`
	Cluster string `json:"cluster,omitempty"`
}

// Resolution is the answer of POST /v1/releases/{id}/resolve: the locks freed, by whom, why.
type Resolution struct {
	ID       string         `json:"id"`
	By       string         `json:"by"`
	Reason   string         `json:"reason"`
	Resolved []ResolvedLock `json:"resolved"`
}

// ResolvedLock is one lock a resolve freed: held since HeldSince, for Hold's reason.
type ResolvedLock struct {
	Service   string              `json:"service"`
	Lock      string              `json:"lock"`
	HeldSince time.Time           `json:"held_since"`
	Hold      *workflows.HoldInfo `json:"hold,omitempty"`
}

// StreamEvent is one Server-Sent Event of GET /v1/releases/{id}/events.
//   - "phase": Event holds one entry of the release's timeline (in seq order, never repeated);
//   - "status": Status holds the whole picture after a change;
//   - "outcome": the release ended; Release holds the final view. The stream ends after it.
//   - "error": Problem says why the stream stops early.
type StreamEvent struct {
	Type    string                   `json:"type"`
	Event   *workflows.Event         `json:"event,omitempty"`
	Status  *workflows.ReleaseStatus `json:"status,omitempty"`
	Release *Release                 `json:"release,omitempty"`
	Problem *Problem                 `json:"problem,omitempty"`
}

// SSE event names.
const (
	EventPhase   = "phase"
	EventStatus  = "status"
	EventOutcome = "outcome"
	EventError   = "error"
)

// Health is the body of /healthz and /readyz.
type Health struct {
	Ready bool `json:"ready"`
	// Checks maps each check to "ok" or what is wrong.
	Checks map[string]string `json:"checks,omitempty"`
}

// FieldError is one problem with a spec: where it is and what is wrong.
type FieldError struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (e FieldError) String() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Problem is an RFC 9457 problem document (application/problem+json), the body of every
// error the API returns. It is also the error type the client returns for them.
type Problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors lists every problem of a rejected spec (400) with its field path and line.
	Errors []FieldError `json:"errors,omitempty"`
	// InFlight names the release in flight that a refused release overlaps (409).
	InFlight string `json:"in_flight,omitempty"`
	// RetryAfter is the number of seconds to wait after a 429 (also the Retry-After header).
	RetryAfter int `json:"retry_after,omitempty"`
	// Missing lists what /readyz found not ready (503).
	NotReady map[string]string `json:"not_ready,omitempty"`
}

func (p *Problem) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", p.Status, p.Title)
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	for _, e := range p.Errors {
		b.WriteString("\n  ")
		b.WriteString(e.String())
	}
	return b.String()
}

// EnvironmentView is GET /v1/environments/{env}: what runs where, and what releasing the
// checked-in spec would change.
type EnvironmentView struct {
	Environment string `json:"environment"`
	// Live is per cluster and service: versions, replicas running, in traffic, healthy.
	Live workflows.InspectResult `json:"live"`
	// Drift is the plan of the checked-in spec against Live (every action "none": no drift).
	Drift workflows.Plan `json:"drift"`
}

// LoadTestRun is a load-test run as the API shows it (POST /v1/loadtests, GET
// /v1/loadtests/{id}, POST /v1/loadtests/{id}/cancel).
type LoadTestRun struct {
	// ID is the run's workflow ID: "loadtest-<environment>-<test>-<id>" for runs started
	// through the API, "loadtest-<environment>-<test>-<scheduled time>" for scheduled ones.
	ID          string `json:"id"`
	RunID       string `json:"run_id,omitempty"`
	Environment string `json:"environment"`
	Test        string `json:"test,omitempty"`
	// Service, Rate, Duration and WarmUp are what the run loads (from its status or result;
	// empty when neither answered).
	Service  string        `json:"service,omitempty"`
	Rate     int           `json:"rate,omitempty"`
	Duration spec.Duration `json:"duration,omitempty"`
	WarmUp   spec.Duration `json:"warm_up,omitempty"`
	// Status is Temporal's: Running, Completed, Failed, Canceled, Terminated, TimedOut.
	Status  string                  `json:"status"`
	Running bool                    `json:"running"`
	Phase   workflows.LoadTestPhase `json:"phase,omitempty"`
	Message string                  `json:"message,omitempty"`
	// Outcome: passed, failed, refused, canceled, error (empty while running).
	Outcome string `json:"outcome,omitempty"`
	// Result is the full result once the run completed.
	Result *workflows.LoadTestResult `json:"result,omitempty"`
	// Error is why a run that could not measure failed.
	Error string `json:"error,omitempty"`
	// StatusError says why the live phase of a running run is missing (no worker answered).
	StatusError string `json:"status_error,omitempty"`
	// Existing is set when an Idempotency-Key named a run that already existed.
	Existing bool          `json:"existing,omitempty"`
	Links    LoadTestLinks `json:"links"`
}

// LoadTestLinks are a run's links.
type LoadTestLinks struct {
	Self  string `json:"self"`
	WebUI string `json:"web_ui,omitempty"`
}
