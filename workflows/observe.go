package workflows

import (
	"time"

	"go.temporal.io/sdk/workflow"
)

// Release metrics, emitted through workflow.GetMetricsHandler: the SDK drops them while a
// workflow replays its history, so a worker restart or a cache eviction never counts a
// release twice. The worker's client carries the handler (metrics.Registry's
// TemporalHandler): counters get _total, timers become histograms in seconds (_seconds).
// docs/observability.md lists the series.
const (
	// MetricReleases counts ended releases by environment, service (each service the
	// release changed, or "" when it changed none) and outcome.
	MetricReleases = "slipway_releases"
	// MetricReleaseDuration is how long ended releases took, by environment and outcome.
	MetricReleaseDuration = "slipway_release_duration"
	// MetricPhaseDuration is how long a release spent in each phase, by environment and phase.
	MetricPhaseDuration = "slipway_phase_duration"
	// MetricVerdicts counts verdicts by environment, service, stage kind (canary, batch,
	// wave, bake) and result (passed, failed, inconclusive).
	MetricVerdicts = "slipway_verdicts"
	// MetricRollbacks counts releases that rolled back, by environment and outcome
	// (rolled_back, or failed when the rollback could not finish).
	MetricRollbacks = "slipway_rollbacks"
	// MetricTimeToRollback is how long a rollback took, from the release deciding to roll
	// back (phase rolling_back) until the rollback ended, by environment and outcome.
	MetricTimeToRollback = "slipway_time_to_rollback"
)

// observer is what the release's metrics and notifications remember between phases.
type observer struct {
	phaseSince    time.Time
	rollbackSince time.Time
	started       bool    // the started notification was queued
	out           *outbox // webhook notifications (notify.go); nil until the first one
}

// observePhase is called by setPhase when the phase changes from prev to p.
func (r *release) observePhase(ctx workflow.Context, prev, p Phase) {
	if r.kind == KindRepair {
		return
	}
	now := workflow.Now(ctx)
	env := r.in.Spec.Environment
	m := workflow.GetMetricsHandler(ctx)
	if !r.obs.phaseSince.IsZero() && prev != "" {
		m.WithTags(map[string]string{"environment": env, "phase": string(prev)}).Timer(MetricPhaseDuration).Record(now.Sub(r.obs.phaseSince))
	}
	r.obs.phaseSince = now
	switch p {
	case PhaseRollingBack:
		if r.obs.rollbackSince.IsZero() {
			r.obs.rollbackSince = now
		}
	case PhaseDone:
		out := string(r.st.Outcome)
		services := r.plan.Changed()
		if len(services) == 0 {
			services = []string{""}
		}
		for _, s := range services {
			m.WithTags(map[string]string{"environment": env, "service": s, "outcome": out}).Counter(MetricReleases).Inc(1)
		}
		m.WithTags(map[string]string{"environment": env, "outcome": out}).Timer(MetricReleaseDuration).Record(now.Sub(r.st.StartedAt))
		if !r.obs.rollbackSince.IsZero() {
			tags := map[string]string{"environment": env, "outcome": out}
			m.WithTags(tags).Counter(MetricRollbacks).Inc(1)
			m.WithTags(tags).Timer(MetricTimeToRollback).Record(now.Sub(r.obs.rollbackSince))
		}
	}
	r.notifyPhase(ctx, p)
}

// observeVerdict counts a verdict and notifies a passed canary.
func (r *release) observeVerdict(ctx workflow.Context, v Verdict) {
	if r.kind == KindRepair {
		return
	}
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{
		"environment": r.in.Spec.Environment, "service": v.Service, "stage": stageKind(v.Stage), "result": string(v.Result),
	}).Counter(MetricVerdicts).Inc(1)
	r.notifyVerdict(ctx, v)
}

// stageKind is a verdict's stage without its numbers ("batch 2/3" is "batch"), so the
// label's values stay few.
func stageKind(stage string) string {
	for i, c := range stage {
		if c == ' ' {
			return stage[:i]
		}
	}
	return stage
}
