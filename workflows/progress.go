package workflows

import (
	"fmt"
	"sort"
	"strings"

	"go.temporal.io/sdk/workflow"
)

// Progress reporting: the timeline, phases, per-service and per-cluster progress, the status
// the query answers, and the search attributes and memo the Web UI and the API filter on.
// The message handlers (messages.go) decide; these only report.

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
	prev := r.st.Phase
	changed := prev != p
	r.st.Phase = p
	if msg != "" || changed {
		if msg == "" {
			msg = "phase " + string(p)
		}
		r.event(ctx, p, "", "", msg)
	}
	if changed {
		r.upsert(ctx)
		r.observePhase(ctx, prev, p)
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
	s.WebhookFailures = append([]WebhookFailure(nil), r.st.WebhookFailures...)
	s.Gates = nil
	for _, g := range r.pendingGates() {
		s.Gates = append(s.Gates, Gate{Service: g.service, Cluster: g.cluster, Reason: g.why, Since: g.opened, Deadline: g.deadline, OnTimeout: g.onTimeout})
	}
	if r.st.Running != nil {
		s.Running = map[string]map[string][]string{}
		//workflowcheck:ignore map order: copies maps
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
	kind := r.kind
	if kind == "" {
		kind = KindRelease
	}
	err := workflow.UpsertTypedSearchAttributes(ctx,
		runAttributes(kind, r.in.Spec.Environment, services, versions, string(r.st.Phase), outcome, r.in.TriggeredBy)...)
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
	r.setDetails(ctx, versions) // metadata.go
}
