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

// rollback puts every service it must back to what ran before, then checks the live state.
// It runs on a disconnected context: it still runs after an abort or a cancellation.
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
	var problems []string
	var all []string
	bad := map[string]map[string]bool{} // service → cluster → its rollback could not finish
	fail := func(service, cluster string) {
		if bad[service] == nil {
			bad[service] = map[string]bool{}
		}
		bad[service][cluster] = true
	}
	for _, layer := range layers {
		type pair struct{ service, cluster string }
		var pairs []pair
		for _, name := range layer {
			all = append(all, name)
			r.svcPhase(name, PhaseRollingBack)
			for _, c := range sortedKeys(r.touched[name]) {
				pairs = append(pairs, pair{name, c})
			}
		}
		_ = parallel(ctx, 0, len(pairs), func(gctx workflow.Context, i int) error {
			p := pairs[i]
			if err := r.rollbackCluster(gctx, p.service, p.cluster); err != nil {
				problems = append(problems, fmt.Sprintf("%s on %s: %s", p.service, p.cluster, errText(err)))
				fail(p.service, p.cluster)
				r.clusterProgress(gctx, p.service, p.cluster, func(c *ClusterProgress) { c.Message = "rollback failed: " + errText(err) })
				return err
			}
			return nil
		})
	}
	// Check: the old replicas serve, nothing of the new version is left.
	live, err := r.inspect(ctx, all, true)
	if err != nil {
		problems = append(problems, "could not inspect after the rollback: "+errText(err))
		for _, name := range all {
			for _, c := range sortedKeys(r.touched[name]) {
				fail(name, c)
			}
		}
	} else {
		for _, name := range all {
			sp := r.plan.Service(name)
			for _, c := range sortedKeys(r.touched[name]) {
				cs := live.Cluster(c)
				if cs != nil && cs.Error != "" {
					problems = append(problems, fmt.Sprintf("%s on %s: cannot check, engine does not answer: %s", name, c, cs.Error))
					fail(name, c)
					continue
				}
				for _, p := range rollbackCheck(*sp.Cluster(c), cs.Containers(name)) {
					problems = append(problems, fmt.Sprintf("%s on %s: %s", name, c, p))
					fail(name, c)
				}
			}
		}
	}
	// Each service and cluster says its own truth: back on what ran before, or not.
	for _, name := range all {
		p := PhaseRolledBack
		for _, c := range sortedKeys(r.touched[name]) {
			if bad[name][c] {
				p = PhaseFailed
				r.clusterProgress(ctx, name, c, func(cp *ClusterProgress) { cp.Phase = PhaseFailed })
			}
		}
		r.svcPhase(name, p)
	}
	if len(problems) > 0 {
		r.st.Outcome = OutcomeFailed
		r.st.Reason = reason + "; rollback could not finish: " + strings.Join(problems, "; ")
		if err == nil {
			r.st.Running = runningMap(live, r.plan.Changed())
		} else {
			r.st.Running = map[string]map[string][]string{}
			for _, name := range all {
				for _, c := range sortedKeys(r.touched[name]) {
					if r.st.Running[c] == nil {
						r.st.Running[c] = map[string][]string{}
					}
					r.st.Running[c][name] = []string{"unknown: " + errText(err)}
				}
			}
		}
		r.event(ctx, PhaseRollingBack, "", "", "ROLLBACK INCOMPLETE: "+strings.Join(problems, "; "))
		return
	}
	r.st.Outcome = OutcomeRolledBack
	r.st.Reason = reason
	if len(kept) > 0 {
		r.st.Reason += fmt.Sprintf(" (kept at their new version, rollback scope service: %s)", strings.Join(kept, ", "))
	}
	r.event(ctx, PhaseRollingBack, "", "", fmt.Sprintf("rolled back %s; checked: the previous version serves and no new replica is left", strings.Join(all, ", ")))
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
	_ = parallel(ctx, 0, len(jobs), func(gctx workflow.Context, i int) error {
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
