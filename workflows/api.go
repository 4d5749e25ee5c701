// Package workflows holds Slipway's durable workflows (Release, LoadTest) and everything a
// caller needs to talk to them: task queue, workflow and message names, input, status and
// result types, search attributes. Workflows decide; activities act. Nothing here touches
// Docker, the network, files or the wall clock.
package workflows

import (
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/judgment"
	"github.com/slipwayhq/slipway/spec"
)

// TaskQueue is the one task queue Slipway's worker polls.
const TaskQueue = "slipway"

// Registered names. They are part of the durable contract: never rename.
const (
	ReleaseWorkflowName  = "Release"
	LoadTestWorkflowName = "LoadTest"

	QueryStatus = "status"

	UpdateApprove = "approve"
	UpdateAbort   = "abort"
	UpdatePause   = "pause"
	UpdateResume  = "resume"
)

// Custom search attributes, registered on the namespace at start (devserver) and upserted by
// every release so the Web UI and the API filter releases by them.
const (
	SAEnvironment = "SlipwayEnvironment" // Keyword
	SAServices    = "SlipwayServices"    // KeywordList
	SAVersions    = "SlipwayVersions"    // KeywordList ("svc=1.2.3")
	SAPhase       = "SlipwayPhase"       // Keyword
	SAOutcome     = "SlipwayOutcome"     // Keyword
	SATriggeredBy = "SlipwayTriggeredBy" // Keyword
	SAKind        = "SlipwayKind"        // Keyword: "release" | "loadtest"
)

// SearchAttributeTypes maps each custom search attribute to its Temporal type name
// ("Keyword", "KeywordList"), for registration.
var SearchAttributeTypes = map[string]string{
	SAEnvironment: "Keyword",
	SAServices:    "KeywordList",
	SAVersions:    "KeywordList",
	SAPhase:       "Keyword",
	SAOutcome:     "Keyword",
	SATriggeredBy: "Keyword",
	SAKind:        "Keyword",
}

// Phase is where a release (or one service/cluster of it) stands.
type Phase string

// Phases.
const (
	PhasePending          Phase = "pending"
	PhasePlanning         Phase = "planning"
	PhaseCanary           Phase = "canary"
	PhaseVerifying        Phase = "verifying"
	PhaseAwaitingApproval Phase = "awaiting_approval"
	PhasePaused           Phase = "paused"
	PhaseRollingOut       Phase = "rolling_out"
	PhaseBaking           Phase = "baking" // rolled out; the new replicas are watched for the bake time
	PhaseRollingBack      Phase = "rolling_back"
	PhaseCleaningUp       Phase = "cleaning_up"
	PhaseDone             Phase = "done"
	PhaseSkipped          Phase = "skipped" // service unchanged
	// PhaseRolledBack: a service (or cluster) the release changed runs what ran before again.
	PhaseRolledBack Phase = "rolled_back"
	// PhaseFailed: a service's (or cluster's) rollback could not finish; the release's
	// Running says what runs there.
	PhaseFailed Phase = "failed"
)

// Outcome is how a release ended. A rollback is never reported as success.
type Outcome string

// Outcomes.
const (
	OutcomeNone       Outcome = ""            // still running
	OutcomeSucceeded  Outcome = "succeeded"   // every changed service runs its new version
	OutcomeRolledBack Outcome = "rolled_back" // everything touched runs what ran before
	OutcomeFailed     Outcome = "failed"      // the rollback itself could not finish
	// OutcomeRefused: nothing was changed because the release could not start: another
	// release of one of the same services was in flight (Reason names the lock and, through
	// it, the release holding it), or an image of a new version is not on a cluster that
	// needs it (Reason names the image and the cluster).
	OutcomeRefused Outcome = "refused"
	// OutcomeTerminated: the release was closed from outside Slipway (terminated or reset
	// in the Web UI, the Temporal CLI or an SDK, or timed out) and Slipway repaired it;
	// ReleaseStatus.Repair says how (rolled_back, succeeded, or failed).
	OutcomeTerminated Outcome = "terminated"
)

// VerdictResult of a verification.
type VerdictResult string

// Verdict results.
const (
	VerdictPassed       VerdictResult = "passed"
	VerdictFailed       VerdictResult = "failed"
	VerdictInconclusive VerdictResult = "inconclusive"
)

// ReleaseInput is the Release workflow's input: the validated, defaulted spec, frozen.
type ReleaseInput struct {
	// ID is the caller-visible release id (also in the workflow ID).
	ID string `json:"id"`
	// Spec is validated and defaulted (spec.ApplyDefaults) before the workflow starts.
	Spec spec.Environment `json:"spec"`
	// Overrides service=version already applied to Spec; kept for the record.
	Overrides   map[string]string `json:"overrides,omitempty"`
	TriggeredBy string            `json:"triggered_by"`
	Description string            `json:"description,omitempty"`
	BuildURL    string            `json:"build_url,omitempty"`
	Commit      string            `json:"commit,omitempty"`
	// Services limits the release to these services (empty: every service in Spec).
	Services []string `json:"services,omitempty"`
	// FastTrack skips canary and soak (a rollback release to a known-good version).
	FastTrack bool `json:"fast_track,omitempty"`
	// RollbackOf is the release id this release reverts, when FastTrack.
	RollbackOf string `json:"rollback_of,omitempty"`
	// Queue makes a release that overlaps one in flight wait for it (up to QueueTimeout,
	// default 1h) instead of being refused.
	Queue        bool          `json:"queue,omitempty"`
	QueueTimeout spec.Duration `json:"queue_timeout,omitempty"`
	// MaxPause is how long the release may stay paused before it rolls back (default 24h).
	MaxPause spec.Duration `json:"max_pause,omitempty"`
}

// Evidence is the numbers behind a verdict.
type Evidence struct {
	Samples        int           `json:"samples"`
	Errors         int           `json:"errors"`
	ErrorRate      float64       `json:"error_rate"`
	P50            time.Duration `json:"p50"`
	P95            time.Duration `json:"p95"`
	P99            time.Duration `json:"p99,omitempty"`
	BaselineP95    time.Duration `json:"baseline_p95,omitempty"`
	BaselineErrors float64       `json:"baseline_error_rate,omitempty"`
	StatusCodes    map[int]int   `json:"status_codes,omitempty"`
	// Unreachable counts probes of the new replicas that could not run (no address,
	// connection refused): any of them makes a verdict at best inconclusive.
	Unreachable int `json:"unreachable,omitempty"`
	// BaselineSamples and BaselineUnreachable are the same counts for the stable replicas.
	BaselineSamples     int `json:"baseline_samples,omitempty"`
	BaselineUnreachable int `json:"baseline_unreachable,omitempty"`
	// Targets and BaselineTargets are how many replicas were probed on each side.
	Targets         int `json:"targets,omitempty"`
	BaselineTargets int `json:"baseline_targets,omitempty"`
	// MinSamples is the threshold the verdict was judged against.
	MinSamples int `json:"min_samples,omitempty"`
	// ProbedFrom says where the probes ran and latency was measured: on the replicas' own
	// engine (a probe container on their network), or from the worker (probes: direct).
	ProbedFrom string `json:"probed_from,omitempty"`
	// Rule is the rule that decided, in words; Baseline is false when the verdict was
	// judged on absolute thresholds only (no stable version to compare with).
	Rule     string `json:"rule,omitempty"`
	Baseline bool   `json:"baseline"`
	// Statistics is the whole judgment: both sides' counts, error rates and percentiles,
	// every test with its statistic, p-value and threshold.
	Statistics *judgment.Result `json:"statistics,omitempty"`
	// Event is what the engine reported of a new replica (stage "watch"): it exited, was
	// killed for memory, was restarted or turned unhealthy.
	Event *engine.Event `json:"event,omitempty"`
}

// Verdict of one verification.
type Verdict struct {
	Result   VerdictResult `json:"result"`
	Reason   string        `json:"reason"`
	Service  string        `json:"service"`
	Cluster  string        `json:"cluster"`
	Stage    string        `json:"stage"` // "canary", "batch 2/3", "wave 1"
	Evidence Evidence      `json:"evidence"`
	At       time.Time     `json:"at"`
}

// ClusterProgress is one service on one cluster.
type ClusterProgress struct {
	Cluster     string    `json:"cluster"`
	Wave        int       `json:"wave"`
	Phase       Phase     `json:"phase"`
	FromVersion string    `json:"from_version,omitempty"`
	ToVersion   string    `json:"to_version"`
	Replicas    int       `json:"replicas"`
	Updated     int       `json:"updated"` // new-version replicas in traffic
	Message     string    `json:"message,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ServiceProgress is one service of a release.
type ServiceProgress struct {
	Service     string            `json:"service"`
	FromVersion string            `json:"from_version,omitempty"`
	ToVersion   string            `json:"to_version"`
	Phase       Phase             `json:"phase"`
	Clusters    []ClusterProgress `json:"clusters"`
}

// Event is one entry of a release's timeline (phase changes, verdicts, decisions).
type Event struct {
	Seq     int       `json:"seq"`
	At      time.Time `json:"at"`
	Phase   Phase     `json:"phase"`
	Service string    `json:"service,omitempty"`
	Cluster string    `json:"cluster,omitempty"`
	Message string    `json:"message"`
}

// ReleaseStatus is the whole picture, returned by the status query and, at the end, as the
// workflow result.
type ReleaseStatus struct {
	ID          string            `json:"id"`
	Environment string            `json:"environment"`
	Phase       Phase             `json:"phase"`
	Outcome     Outcome           `json:"outcome,omitempty"`
	Reason      string            `json:"reason,omitempty"`
	Paused      bool              `json:"paused,omitempty"`
	TriggeredBy string            `json:"triggered_by"`
	Description string            `json:"description,omitempty"` // with BuildURL and Commit: the input's (Jenkins)
	BuildURL    string            `json:"build_url,omitempty"`
	Commit      string            `json:"commit,omitempty"`
	ApprovedBy  string            `json:"approved_by,omitempty"`
	AbortedBy   string            `json:"aborted_by,omitempty"`
	Services    []ServiceProgress `json:"services"`
	Verdicts    []Verdict         `json:"verdicts,omitempty"`
	Events      []Event           `json:"events,omitempty"`
	StartedAt   time.Time         `json:"started_at"`
	EndedAt     time.Time         `json:"ended_at,omitempty"`
	// Running says exactly what runs where after a failed rollback: cluster → service → versions.
	Running map[string]map[string][]string `json:"running,omitempty"`
	// Gates are the human decisions the release waits for right now, by service and cluster.
	Gates []Gate `json:"gates,omitempty"`
	// Repair says how a release closed from outside Slipway was repaired (outcome terminated).
	Repair *Repair `json:"repair,omitempty"`
	// WebhookFailures are the notifications a webhook did not take after their retries
	// (the release went on; notify.go).
	WebhookFailures []WebhookFailure `json:"webhook_failures,omitempty"`
}

// Gate is a pending human decision: approve (go on) or abort (roll back) before Deadline,
// after which the release does OnTimeout ("proceed" or "rollback"). A verdict that could not
// decide opens a gate per service and cluster; a service's canary approval opens one with
// no cluster.
type Gate struct {
	Service   string    `json:"service"`
	Cluster   string    `json:"cluster,omitempty"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
	Deadline  time.Time `json:"deadline"`
	OnTimeout string    `json:"on_timeout"`
}

// Decision is the argument of the approve / abort / pause / resume updates.
type Decision struct {
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
	// Service and Cluster name the gate an approve is for. Empty Service: every service's
	// gate; empty Cluster: the service's only pending gate (an approve that would match two
	// gates of one service is rejected, listing their clusters). An abort that names them
	// refuses that gate (rejected when it is not pending); the whole release rolls back, as
	// with any abort.
	Service string `json:"service,omitempty"`
	Cluster string `json:"cluster,omitempty"`
}
