package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.temporal.io/sdk/workflow"
)

// KindRelease is the SlipwayKind of a release.
const KindRelease = "release"

// Message handlers: the status and repair-state queries and the approve / abort / pause /
// resume updates with their validators. Progress reporting is in progress.go.

// registerHandlers registers the status query and the approve / abort / pause / resume
// updates. Validators reject what makes no sense in the current state; a rejected update
// leaves no trace in the history.
func (r *release) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ReleaseStatus, error) {
		return r.status(), nil
	}); err != nil {
		return fmt.Errorf("register query %s: %w", QueryStatus, err)
	}
	if err := workflow.SetQueryHandler(ctx, QueryRepairState, func() (RepairState, error) {
		return r.repairState(), nil
	}); err != nil {
		return fmt.Errorf("register query %s: %w", QueryRepairState, err)
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
	matched, err := r.matchGates(d, "approval")
	if err != nil {
		return err
	}
	// Two gates of one service and no cluster named: which one is meant?
	by := map[string][]string{}
	for _, g := range matched {
		by[g.service] = append(by[g.service], orCanary(g.cluster))
	}
	for _, s := range sortedKeys(by) {
		if len(by[s]) > 1 {
			return fmt.Errorf("service %s has %d gates pending, on clusters %s: name the cluster to approve", s, len(by[s]), strings.Join(by[s], ", "))
		}
	}
	return nil
}

// matchGates returns the pending gates a decision names (every one when it names none),
// sorted by service and cluster, or an error listing what is pending when it names a gate
// that is not.
func (r *release) matchGates(d Decision, what string) ([]*gate, error) {
	var out []*gate
	for _, g := range r.pendingGates() {
		if (d.Service == "" || d.Service == g.service) && (d.Cluster == "" || d.Cluster == g.cluster) {
			out = append(out, g)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	var pending []string
	for _, g := range r.pendingGates() {
		pending = append(pending, g.where())
	}
	named := "service " + d.Service
	switch {
	case d.Service == "":
		named = "cluster " + d.Cluster
	case d.Cluster != "":
		named += " on cluster " + d.Cluster
	}
	if len(pending) == 0 {
		return nil, fmt.Errorf("%s is not awaiting %s (nothing is)", named, what)
	}
	return nil, fmt.Errorf("%s is not awaiting %s (awaiting: %s)", named, what, strings.Join(pending, ", "))
}

// pendingGates are the open gates sorted by service, then cluster.
func (r *release) pendingGates() []*gate {
	out := make([]*gate, 0, len(r.approvals))
	//workflowcheck:ignore map order: sorted below
	for _, g := range r.approvals {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].service != out[j].service {
			return out[i].service < out[j].service
		}
		return out[i].cluster < out[j].cluster
	})
	return out
}

func orCanary(cluster string) string {
	if cluster == "" {
		return "(canary approval)"
	}
	return cluster
}

func (r *release) onApprove(ctx workflow.Context, d Decision) error {
	r.st.ApprovedBy = d.Actor
	matched, _ := r.matchGates(d, "approval")
	for _, g := range matched {
		g.decided, g.approved = true, true
		r.event(ctx, PhaseAwaitingApproval, g.service, g.cluster, fmt.Sprintf("approved by %s%s", d.Actor, withReason(d.Reason)))
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
	if d.Service != "" || d.Cluster != "" {
		// An abort that names a gate refuses that gate: if it is no longer pending, the
		// caller decided on something that has moved on.
		if _, err := r.matchGates(d, "a decision"); err != nil {
			return fmt.Errorf("%w; abort without service and cluster to abort the release anyway", err)
		}
	}
	return nil
}

func (r *release) onAbort(ctx workflow.Context, d Decision) error {
	dc := d
	r.abort = &dc
	r.st.AbortedBy = d.Actor
	at := ""
	if d.Service != "" || d.Cluster != "" {
		var gates []string
		matched, _ := r.matchGates(d, "a decision")
		for _, g := range matched {
			gates = append(gates, g.where())
		}
		at = " at the gate of " + strings.Join(gates, ", ")
	}
	r.event(ctx, r.st.Phase, d.Service, d.Cluster, fmt.Sprintf("aborted by %s%s%s", d.Actor, at, withReason(d.Reason)))
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
