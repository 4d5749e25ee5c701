package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Typed search attribute keys (see the SA* names in api.go).
var (
	saEnvironment = temporal.NewSearchAttributeKeyKeyword(SAEnvironment)
	saServices    = temporal.NewSearchAttributeKeyKeywordList(SAServices)
	saVersions    = temporal.NewSearchAttributeKeyKeywordList(SAVersions)
	saPhase       = temporal.NewSearchAttributeKeyKeyword(SAPhase)
	saOutcome     = temporal.NewSearchAttributeKeyKeyword(SAOutcome)
	saTriggeredBy = temporal.NewSearchAttributeKeyKeyword(SATriggeredBy)
	saKind        = temporal.NewSearchAttributeKeyKeyword(SAKind)
)

// KindRelease is the SlipwayKind of a release.
const KindRelease = "release"

// registerHandlers registers the status query and the approve / abort / pause / resume
// updates. Validators reject what makes no sense in the current state; a rejected update
// leaves no trace in the history.
func (r *release) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ReleaseStatus, error) {
		return r.status(), nil
	}); err != nil {
		return fmt.Errorf("register query %s: %w", QueryStatus, err)
	}
	updates := []struct {
		name      string
		handler   func(workflow.Context, Decision) error
		validator func(workflow.Context, Decision) error
	}{
		{UpdateApprove, r.onApprove, r.validateApprove},
		{UpdateAbort, r.onAbort, r.validateAbort},
		{UpdatePause, r.onPause, r.validatePause},
		{UpdateResume, r.onResume, r.validateResume},
	}
	for _, u := range updates {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, u.handler, workflow.UpdateHandlerOptions{Validator: u.validator}); err != nil {
			return fmt.Errorf("register update %s: %w", u.name, err)
		}
	}
	return nil
}

func (r *release) running() error {
	switch {
	case r.finished:
		return fmt.Errorf("release %s has ended (%s)", r.in.ID, r.st.Outcome)
	case r.rollingBack:
		return fmt.Errorf("release %s is rolling back", r.in.ID)
	case r.st.Phase == PhaseCleaningUp:
		return fmt.Errorf("release %s has succeeded and is cleaning up", r.in.ID)
	}
	return nil
}

func needActor(d Decision) error {
	if strings.TrimSpace(d.Actor) == "" {
		return errors.New("a decision needs an actor (who decides)")
	}
	return nil
}

func (r *release) validateApprove(_ workflow.Context, d Decision) error {
	if err := needActor(d); err != nil {
		return err
	}
	if err := r.running(); err != nil {
		return err
	}
	if r.abort != nil {
		return errors.New("release is being aborted")
	}
	if len(r.approvals) == 0 {
		return fmt.Errorf("release %s is not awaiting approval (phase %s)", r.in.ID, r.st.Phase)
	}
	if d.Service != "" && r.approvals[d.Service] == nil {
		return fmt.Errorf("service %s is not awaiting approval (awaiting: %s)", d.Service, strings.Join(sortedKeys(r.approvals), ", "))
	}
	return nil
}

func (r *release) onApprove(ctx workflow.Context, d Decision) error {
	r.st.ApprovedBy = d.Actor
	for _, name := range sortedKeys(r.approvals) {
		g := r.approvals[name]
		if d.Service != "" && d.Service != name {
			continue
		}
		g.decided, g.approved = true, true
		r.event(ctx, PhaseAwaitingApproval, name, "", fmt.Sprintf("approved by %s%s", d.Actor, withReason(d.Reason)))
	}
	return nil
}

func (r *release) validateAbort(_ workflow.Context, d Decision) error {
	if err := needActor(d); err != nil {
		return err
	}
	if err := r.running(); err != nil {
		return err
	}
	if r.abort != nil {
		return fmt.Errorf("release %s is already being aborted by %s", r.in.ID, r.abort.Actor)
	}
	if r.failure != nil {
		return fmt.Errorf("release %s has already failed and is about to roll back: %s", r.in.ID, r.failure.reason)
	}
	return nil
}

func (r *release) onAbort(ctx workflow.Context, d Decision) error {
	dc := d
	r.abort = &dc
	r.st.AbortedBy = d.Actor
	r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("aborted by %s%s", d.Actor, withReason(d.Reason)))
	if r.cancelRun != nil {
		r.cancelRun()
	}
	return nil
}

func (r *release) validatePause(_ workflow.Context, d Decision) error {
	if err := needActor(d); err != nil {
		return err
	}
	if err := r.running(); err != nil {
		return err
	}
	if r.paused {
		return fmt.Errorf("release %s is already paused", r.in.ID)
	}
	return nil
}

func (r *release) onPause(ctx workflow.Context, d Decision) error {
	r.paused = true
	r.st.Paused = true
	r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("paused by %s%s (holds before the next batch or wave)", d.Actor, withReason(d.Reason)))
	return nil
}

func (r *release) validateResume(_ workflow.Context, d Decision) error {
	if err := needActor(d); err != nil {
		return err
	}
	if r.finished {
		return fmt.Errorf("release %s has ended", r.in.ID)
	}
	if !r.paused {
		return fmt.Errorf("release %s is not paused", r.in.ID)
	}
	return nil
}

func (r *release) onResume(ctx workflow.Context, d Decision) error {
	r.paused = false
	r.st.Paused = false
	r.event(ctx, r.st.Phase, "", "", fmt.Sprintf("resumed by %s%s", d.Actor, withReason(d.Reason)))
	return nil
}

func withReason(s string) string {
	if s == "" {
		return ""
	}
	return ": " + s
}

// event appends one entry to the timeline.
func (r *release) event(ctx workflow.Context, phase Phase, service, cluster, msg string) {
	r.seq++
	r.now = workflow.Now(ctx)
	r.st.Events = append(r.st.Events, Event{Seq: r.seq, At: r.now, Phase: phase, Service: service, Cluster: cluster, Message: msg})
}

// setPhase changes the release's phase, notes it in the timeline and upserts the search
// attributes.
func (r *release) setPhase(ctx workflow.Context, p Phase, msg string) {
	r.tick(ctx)
	changed := r.st.Phase != p
	r.st.Phase = p
	if msg != "" || changed {
		if msg == "" {
			msg = "phase " + string(p)
		}
		r.event(ctx, p, "", "", msg)
	}
	if changed {
		r.upsert(ctx)
	}
}

// tick refreshes the clock used by event (workflow.Now needs a context; event does not take one).
func (r *release) tick(ctx workflow.Context) { r.now = workflow.Now(ctx) }

func (r *release) svcPhase(service string, p Phase) {
	for i := range r.st.Services {
		if r.st.Services[i].Service == service {
			r.st.Services[i].Phase = p
		}
	}
}

func (r *release) clusterProgress(ctx workflow.Context, service, cluster string, f func(*ClusterProgress)) {
	r.tick(ctx)
	for i := range r.st.Services {
		if r.st.Services[i].Service != service {
			continue
		}
		for j := range r.st.Services[i].Clusters {
			if c := &r.st.Services[i].Clusters[j]; c.Cluster == cluster {
				f(c)
				c.UpdatedAt = r.now
			}
		}
	}
}

// initServices fills the per-service, per-cluster progress from the plan.
func (r *release) initServices() {
	r.st.Services = nil
	for _, sp := range r.plan.Services {
		p := ServiceProgress{Service: sp.Service, FromVersion: sp.FromVersion, ToVersion: sp.ToVersion, Phase: PhasePending}
		if sp.Action == ActionNone {
			p.Phase = PhaseSkipped
		}
		for _, cp := range sp.Clusters {
			cpr := ClusterProgress{Cluster: cp.Cluster, Wave: cp.Wave, Phase: PhasePending, FromVersion: cp.FromVersion,
				ToVersion: cp.ToVersion, Replicas: cp.ReplicasTo, Updated: len(cp.Current), UpdatedAt: r.now}
			if cp.Action == ActionNone {
				cpr.Phase = PhaseSkipped
			}
			p.Clusters = append(p.Clusters, cpr)
		}
		r.st.Services = append(r.st.Services, p)
	}
}

// status is a deep copy of the status (a query must not hand out the workflow's own slices).
func (r *release) status() ReleaseStatus {
	s := r.st
	s.Services = make([]ServiceProgress, len(r.st.Services))
	for i, sp := range r.st.Services {
		sp.Clusters = append([]ClusterProgress(nil), sp.Clusters...)
		s.Services[i] = sp
	}
	s.Verdicts = append([]Verdict(nil), r.st.Verdicts...)
	s.Events = append([]Event(nil), r.st.Events...)
	if r.st.Running != nil {
		s.Running = map[string]map[string][]string{}
		for c, m := range r.st.Running {
			s.Running[c] = map[string][]string{}
			for k, v := range m {
				s.Running[c][k] = append([]string(nil), v...)
			}
		}
	}
	return s
}

// upsert keeps the search attributes and the memo current.
func (r *release) upsert(ctx workflow.Context) {
	var services, versions []string
	if len(r.plan.Layers) > 0 {
		services = r.plan.Changed()
	} else {
		services = ReleaseServices(r.in)
	}
	sort.Strings(services)
	for _, name := range services {
		if s, ok := findService(r.in.Spec, name); ok {
			versions = append(versions, name+"="+s.Version)
		}
	}
	outcome := string(r.st.Outcome)
	if outcome == "" {
		outcome = "running"
	}
	err := workflow.UpsertTypedSearchAttributes(ctx,
		saKind.ValueSet(KindRelease),
		saEnvironment.ValueSet(r.in.Spec.Environment),
		saServices.ValueSet(services),
		saVersions.ValueSet(versions),
		saPhase.ValueSet(string(r.st.Phase)),
		saOutcome.ValueSet(outcome),
		saTriggeredBy.ValueSet(r.in.TriggeredBy),
	)
	if err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
	summary := fmt.Sprintf("%s %s: %s [%s]", r.in.Spec.Environment, r.in.ID, strings.Join(versions, ", "), r.st.Phase)
	if r.st.Outcome != OutcomeNone {
		summary += " " + outcome + ": " + r.st.Reason
	}
	if err := workflow.UpsertMemo(ctx, map[string]any{"summary": summary}); err != nil {
		workflow.GetLogger(ctx).Warn("upsert memo", "error", err)
	}
}
