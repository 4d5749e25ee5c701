package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// rollbackSet is the services that go back, in rollback order (dependents first). A service
// goes back when it is not finished, when it failed, when the release was aborted, or when
// its own rollback.scope is "release" (the default): a finished service only keeps its new
// version when it says scope "service".
func (r *release) rollbackSet() [][]string {
	var layers [][]string
	for i := len(r.plan.Layers) - 1; i >= 0; i-- {
		var l []string
		for _, name := range r.plan.Layers[i] {
			if len(r.touched[name]) == 0 {
				continue
			}
			keep := r.completed[name] && !r.failed[name] && r.abort == nil && r.pol[name].Scope == spec.ScopeService
			if !keep {
				l = append(l, name)
			}
		}
		if len(l) > 0 {
			layers = append(layers, l)
		}
	}
	return layers
}

// rollback puts every service it must back to what ran before, in three steps: undo (per
// layer, dependents first, each service and cluster in parallel), check (the live state
// against what ran before) and record (each service's and cluster's truth, the outcome, and
// what runs where when it could not finish). It runs on a disconnected context: it still runs
// after an abort or a cancellation. A repair runs it too, on a release rebuilt from the
// state of a run closed from outside Slipway (repair.go).
func (r *release) rollback(ctx workflow.Context) {
	r.rollingBack = true
	reason := r.failure.reason
	r.setPhase(ctx, PhaseRollingBack, "rolling back: "+reason)
	layers := r.rollbackSet()
	var kept []string
	for _, name := range sortedKeys(r.touched) {
		if r.completed[name] && !inLayers(layers, name) {
			kept = append(kept, name)
		}
	}
	if len(layers) == 0 {
		r.st.Outcome = OutcomeRolledBack
		r.st.Reason = reason
		if len(kept) == 0 {
			r.event(ctx, PhaseRollingBack, "", "", "nothing was changed: nothing to roll back")
		}
		return
	}
	rb := &rollbackResult{bad: map[string]map[string]bool{}}
	r.undo(ctx, layers, rb)
	live, err := r.checkRollback(ctx, rb)
	r.recordRollback(ctx, reason, kept, rb, live, err)
}

// rollbackResult is what the rollback's steps found: the services it put back (in order),
// the problems, and which service on which cluster could not be put back.
type rollbackResult struct {
	all      []string
	problems []string
	bad      map[string]map[string]bool
}

func (rb *rollbackResult) fail(service, cluster, problem string) {
	if problem != "" {
		rb.problems = append(rb.problems, problem)
	}
	if rb.bad[service] == nil {
		rb.bad[service] = map[string]bool{}
	}
	rb.bad[service][cluster] = true
}

// undo rolls each service of each layer back on every cluster it touched.
func (r *release) undo(ctx workflow.Context, layers [][]string, rb *rollbackResult) {
	for _, layer := range layers {
		type pair struct{ service, cluster string }
		var pairs []pair
		for _, name := range layer {
			rb.all = append(rb.all, name)
			r.svcPhase(name, PhaseRollingBack)
			for _, c := range sortedKeys(r.touched[name]) {
				pairs = append(pairs, pair{name, c})
			}
		}
		_ = parallel(ctx, r.fanOutCap(ctx), len(pairs), func(gctx workflow.Context, i int) error {
			p := pairs[i]
			if err := r.rollbackCluster(gctx, p.service, p.cluster); err != nil {
				rb.fail(p.service, p.cluster, fmt.Sprintf("%s on %s: %s", p.service, p.cluster, errText(err)))
				r.clusterProgress(gctx, p.service, p.cluster, func(c *ClusterProgress) { c.Message = "rollback failed: " + errText(err) })
				return err
			}
			return nil
		})
	}
}

// checkRollback reads the live state of what was rolled back and checks it: the previous
// replicas serve, nothing of the new version is left.
func (r *release) checkRollback(ctx workflow.Context, rb *rollbackResult) (InspectResult, error) {
	live, err := r.inspect(ctx, rb.all, true)
	if err != nil {
		rb.problems = append(rb.problems, "could not inspect after the rollback: "+errText(err))
		for _, name := range rb.all {
			for _, c := range sortedKeys(r.touched[name]) {
				rb.fail(name, c, "") // unknown: not known to be back
			}
		}
		return live, err
	}
	for _, name := range rb.all {
		sp := r.plan.Service(name)
		for _, c := range sortedKeys(r.touched[name]) {
			cs := live.Cluster(c)
			if cs != nil && cs.Error != "" {
				rb.fail(name, c, fmt.Sprintf("%s on %s: cannot check, engine does not answer: %s", name, c, cs.Error))
				continue
			}
			for _, p := range rollbackCheck(*sp.Cluster(c), cs.Containers(name)) {
				rb.fail(name, c, fmt.Sprintf("%s on %s: %s", name, c, p))
			}
		}
	}
	return live, nil
}

// recordRollback writes the rollback's truth: each service and cluster back on what ran
// before or failed, the outcome (rolled_back, or failed with what runs where), the timeline.
func (r *release) recordRollback(ctx workflow.Context, reason string, kept []string, rb *rollbackResult, live InspectResult, inspectErr error) {
	for _, name := range rb.all {
		p := PhaseRolledBack
		for _, c := range sortedKeys(r.touched[name]) {
			if rb.bad[name][c] {
				p = PhaseFailed
				r.clusterProgress(ctx, name, c, func(cp *ClusterProgress) { cp.Phase = PhaseFailed })
			}
		}
		r.svcPhase(name, p)
	}
	if len(rb.problems) > 0 {
		r.st.Outcome = OutcomeFailed
		r.st.Reason = reason + "; rollback could not finish: " + strings.Join(rb.problems, "; ")
		if inspectErr == nil {
			r.st.Running = runningMap(live, r.plan.Changed())
		} else {
			r.st.Running = map[string]map[string][]string{}
			for _, name := range rb.all {
				for _, c := range sortedKeys(r.touched[name]) {
					if r.st.Running[c] == nil {
						r.st.Running[c] = map[string][]string{}
					}
					r.st.Running[c][name] = []string{"unknown: " + errText(inspectErr)}
				}
			}
		}
		r.event(ctx, PhaseRollingBack, "", "", "ROLLBACK INCOMPLETE: "+strings.Join(rb.problems, "; "))
		return
	}
	r.st.Outcome = OutcomeRolledBack
	r.st.Reason = reason
	if len(kept) > 0 {
		r.st.Reason += fmt.Sprintf(" (kept at their new version, rollback scope service: %s)", strings.Join(kept, ", "))
	}
	r.event(ctx, PhaseRollingBack, "", "", fmt.Sprintf("rolled back %s; checked: the previous version serves and no new replica is left", strings.Join(rb.all, ", ")))
}

func inLayers(layers [][]string, name string) bool {
	for _, l := range layers {
		for _, n := range l {
			if n == name {
				return true
			}
		}
	}
	return false
}

// rollbackCluster puts one service on one cluster back: start the old replicas that were
// stopped, attach every old replica and detach the new ones in one step, then remove the
// new replicas (stop the new-version containers that existed before the release).
func (r *release) rollbackCluster(ctx workflow.Context, service, cluster string) error {
	sp := r.plan.Service(service)
	cp := sp.Cluster(cluster)
	pol := r.pol[service]
	tgt := r.tgt[cluster]
	r.clusterProgress(ctx, service, cluster, func(p *ClusterProgress) { p.Phase = PhaseRollingBack; p.Message = "rolling back" })
	ctx = withSummary(ctx, "roll back %s on %s", service, cluster) // metadata.go
	if stopped := r.stopped[service][cluster]; len(stopped) > 0 {
		in := ContainersInput{Target: tgt, Names: stopped, HealthDeadline: pol.HealthDeadline}
		if err := workflow.ExecuteActivity(rollbackOptionsFor(ctx, ActivityStartStopped, pol.HealthDeadline), ActivityStartStopped, in).Get(ctx, nil); err != nil {
			return fmt.Errorf("starting the stopped previous replicas: %w", err)
		}
	}
	current := map[string]bool{}
	for _, n := range cp.Current {
		current[n] = true
	}
	existing := map[string]bool{}
	for _, n := range cp.Existing {
		existing[n] = true
	}
	var detach, remove, stop []string
	for _, n := range r.started[service][cluster] {
		switch {
		case current[n]:
		case existing[n]:
			detach = append(detach, n)
			stop = append(stop, n)
		default:
			detach = append(detach, n)
			remove = append(remove, n)
		}
	}
	in := SetTrafficInput{Target: tgt, Service: service, Attach: cp.Old, Detach: detach}
	if err := workflow.ExecuteActivity(rollbackOptionsFor(ctx, ActivitySetTraffic, 0), ActivitySetTraffic, in).Get(ctx, nil); err != nil {
		return fmt.Errorf("switching traffic back: %w", err)
	}
	r.clusterProgress(ctx, service, cluster, func(p *ClusterProgress) {
		p.Updated = len(cp.Current)
		p.Message = "previous version back in traffic"
	})
	r.event(ctx, PhaseRollingBack, service, cluster, fmt.Sprintf("previous version back in traffic (%d replicas)", len(cp.Old)))
	rm := RemoveReplicasInput{Target: tgt, Names: remove, Service: service, Version: cp.ToVersion, Keep: cp.Existing}
	if err := workflow.ExecuteActivity(rollbackOptionsFor(ctx, ActivityRemoveReplicas, 0), ActivityRemoveReplicas, rm).Get(ctx, nil); err != nil {
		return fmt.Errorf("removing the new replicas: %w", err)
	}
	if len(stop) > 0 {
		res, err := r.stopReplicas(ctx, rollbackOptionsFor(ctx, ActivityStopReplicas, pol.StopGrace), service, cluster, stop)
		if err != nil {
			return fmt.Errorf("stopping the new-version replicas that existed before: %w", err)
		}
		r.event(ctx, PhaseRollingBack, service, cluster, "new-version replicas that existed before the release: "+stopSummary(stop, res, pol.StopGrace))
	}
	r.clusterProgress(ctx, service, cluster, func(p *ClusterProgress) { p.Phase = PhaseRolledBack; p.Message = "rolled back" })
	return nil
}

// cleanup runs after a verified rollout: per service and cluster it changed, it keeps the
// new replicas, stops the previous version (one revision kept, stopped, for a fast manual
// rollback) and removes everything older. A cleanup problem does not undo a good release;
// it is reported in the reason and the timeline.
func (r *release) cleanup(ctx workflow.Context) {
	changed := r.plan.Changed()
	if len(changed) == 0 {
		return
	}
	r.setPhase(ctx, PhaseCleaningUp, "removing older revisions, keeping the previous one stopped")
	live, err := r.inspect(ctx, changed, false)
	if err != nil {
		r.st.Reason = "every changed service runs its new version; cleanup skipped: " + errText(err)
		r.event(ctx, PhaseCleaningUp, "", "", r.st.Reason)
		return
	}
	type job struct {
		service, cluster string
		plan             cleanupPlan
	}
	var jobs []job
	for _, name := range changed {
		for _, cp := range r.plan.Service(name).Clusters {
			if cp.Action == ActionNone {
				continue
			}
			cl := planCleanup(cp, live.Cluster(cp.Cluster).Containers(name))
			if len(cl.Stop)+len(cl.Remove) > 0 {
				jobs = append(jobs, job{name, cp.Cluster, cl})
			}
		}
	}
	var problems []string
	_ = parallel(ctx, r.fanOutCap(ctx), len(jobs), func(gctx workflow.Context, i int) error {
		j := jobs[i]
		tgt := r.tgt[j.cluster]
		stopped := "stopped 0"
		if len(j.plan.Stop) > 0 {
			grace := r.pol[j.service].StopGrace
			res, err := r.stopReplicas(gctx, optionsFor(gctx, ActivityStopReplicas, grace), j.service, j.cluster, j.plan.Stop)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s on %s: stop previous: %s", j.service, j.cluster, errText(err)))
				stopped = "could not stop " + plural(len(j.plan.Stop), "replica")
			} else {
				stopped = stopSummary(j.plan.Stop, res, grace)
			}
		}
		if len(j.plan.Remove) > 0 {
			in := RemoveReplicasInput{Target: tgt, Names: j.plan.Remove}
			if err := workflow.ExecuteActivity(optionsFor(gctx, ActivityRemoveReplicas, 0), ActivityRemoveReplicas, in).Get(gctx, nil); err != nil {
				problems = append(problems, fmt.Sprintf("%s on %s: remove old: %s", j.service, j.cluster, errText(err)))
			}
		}
		r.event(gctx, PhaseCleaningUp, j.service, j.cluster, fmt.Sprintf("previous version: %s; older revisions: removed %d", stopped, len(j.plan.Remove)))
		return nil
	})
	if len(problems) > 0 {
		r.st.Reason = "every changed service runs its new version; cleanup incomplete: " + strings.Join(problems, "; ")
		r.event(ctx, PhaseCleaningUp, "", "", r.st.Reason)
	}
}
