package activities

import (
	"context"
	"fmt"
	"sync"

	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// ltScaleProgress is the scale steps' heartbeat.
type ltScaleProgress struct {
	Healthy []string `json:"healthy,omitempty"`
	Removed []string `json:"removed,omitempty"`
}

// isLoadTestReplica says whether c is an extra replica started by the load test runID.
func isLoadTestReplica(c engine.Container, runID string) bool {
	return runID != "" && c.Release == runID && c.Role == workflows.RoleLoadTest
}

// ScaleOut makes the service run Factor × its serving replicas on the target: it starts
// extra replicas of the version in traffic (same image as the serving replicas, the
// service's container spec from the input) in slots no container of that version uses,
// labelled role=loadtest and release=RunID, waits until they are healthy and puts them in
// traffic. Idempotent: replicas a previous attempt started count, and are reused. The
// service's secrets are resolved on the worker the way StartReplicas resolves them.
func (a *LoadTestActivities) ScaleOut(ctx context.Context, in workflows.LoadTestScaleInput) (_ workflows.LoadTestScaleResult, err error) {
	t := in.Target
	out := workflows.LoadTestScaleResult{Cluster: t.Cluster}
	if in.RunID == "" || in.Service.Name == "" || in.Factor < 1 {
		return out, badInput("scale out needs a run id, a service and a factor ≥ 1 (got %q, %q, %d)", in.RunID, in.Service.Name, in.Factor)
	}
	var prog ltScaleProgress
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, prog)
	defer hb.close()
	e, err := a.base.dial(ctx, t)
	if err != nil {
		return out, err
	}
	all, err := e.List(ctx, engine.Selector{Environment: t.Environment, Cluster: t.Cluster, Service: in.Service.Name})
	if err != nil {
		return out, classify("list "+in.Service.Name+" on cluster "+t.Cluster, err)
	}
	var base, mine []engine.Container
	for _, c := range all {
		switch {
		case isLoadTestReplica(c, in.RunID):
			mine = append(mine, c)
		case c.Running() && c.InTraffic:
			base = append(base, c)
		}
	}
	if len(base) == 0 {
		return out, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no running replica of %s in traffic on cluster %s: nothing to scale out", in.Service.Name, t.Cluster), workflows.ErrNoTargets, nil)
	}
	version, _ := ltMajority(base)
	image := ""
	for _, c := range base {
		if c.Version == version {
			image = c.Image
			break
		}
	}
	want := len(base) * in.Factor
	if t.Policy.MaxReplicas > 0 && want > t.Policy.MaxReplicas {
		return out, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("scaling %s to %d replicas exceeds cluster %s's max_replicas %d", in.Service.Name, want, t.Cluster, t.Policy.MaxReplicas),
			workflows.ErrPolicyDenied, nil)
	}
	out.Version, out.Base = version, len(base)

	// Slots: keep this run's replicas, add new ones in the lowest slots no container of
	// the version uses (whatever its state or role).
	used := map[int]bool{}
	for _, c := range all {
		if c.Version == version {
			used[c.Slot] = true
		}
	}
	var slots []int
	for _, c := range mine {
		if c.Version == version {
			slots = append(slots, c.Slot)
		}
	}
	for s := 0; len(slots) < want-len(base); s++ {
		if !used[s] {
			slots = append(slots, s)
		}
	}
	slots = slots[:max(0, want-len(base))]

	svc := in.Service
	svc.Version = version
	specs, secretValues, err := a.base.containerSpecs(ctx, t, in.RunID, workflows.RoleLoadTest, svc, slots)
	if err != nil {
		return out, err
	}
	defer func() { err = redact(err, secretValues) }()
	for i := range specs {
		if image != "" {
			specs[i].Image = image // exactly what serves, even when the spec's repository moved
		}
	}

	deadline := in.HealthDeadline
	if deadline <= 0 {
		deadline = defaultHealthDeadline
	}
	var mu sync.Mutex
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, cs := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := cs.ContainerName()
			if errs[i] = ensureHealthy(ctx, e, cs, deadline, false); errs[i] != nil {
				return
			}
			mu.Lock()
			prog.Healthy = append(prog.Healthy, name)
			p := ltScaleProgress{Healthy: append([]string(nil), prog.Healthy...)}
			mu.Unlock()
			hb.set(ctx, p)
		}()
	}
	wg.Wait()
	if err := firstError(errs); err != nil {
		return out, err
	}
	names := make([]string, len(specs))
	for i, cs := range specs {
		names[i] = cs.ContainerName()
	}
	if err := a.base.attach(ctx, e, t, in.Service.Name, names); err != nil {
		return out, err
	}
	out.Containers = names
	out.Total = len(base) + len(names)
	logInfo(ctx, "load test scaled out", "service", in.Service.Name, "cluster", t.Cluster, "version", version, "base", len(base), "total", out.Total)
	return out, nil
}

// ScaleIn removes every replica the load test RunID started on the target (detached from
// traffic first) and nothing else. Removing what is gone is success, so it can run any
// number of times, also when the scale-out never ran or failed half-way.
func (a *LoadTestActivities) ScaleIn(ctx context.Context, in workflows.LoadTestScaleInput) (workflows.LoadTestScaleResult, error) {
	t := in.Target
	out := workflows.LoadTestScaleResult{Cluster: t.Cluster}
	if in.RunID == "" || in.Service.Name == "" {
		// Never sweep without a run id: it would match containers of no load test.
		return out, badInput("scale in needs a run id and a service (got %q, %q)", in.RunID, in.Service.Name)
	}
	hb := startHeartbeat(ctx, a.opts.HeartbeatEvery, ltScaleProgress{})
	defer hb.close()
	e, err := a.base.dial(ctx, t)
	if err != nil {
		return out, err
	}
	all, err := e.List(ctx, engine.Selector{Environment: t.Environment, Cluster: t.Cluster, Service: in.Service.Name})
	if err != nil {
		return out, classify("list "+in.Service.Name+" on cluster "+t.Cluster, err)
	}
	var names, inTraffic []string
	for _, c := range all {
		if !isLoadTestReplica(c, in.RunID) {
			if c.Running() && c.InTraffic {
				out.Total++
			}
			continue
		}
		names = append(names, c.Name)
		if c.InTraffic {
			inTraffic = append(inTraffic, c.Name)
		}
	}
	out.Base = out.Total
	if err := a.base.detach(ctx, e, t, inTraffic); err != nil {
		return out, err
	}
	if err := each(names, func(n string) error {
		err := e.Remove(ctx, n)
		if engine.KindOf(err) == engine.KindNotFound {
			return nil
		}
		return classify("remove "+n, err)
	}); err != nil {
		return out, err
	}
	out.Containers = names
	logInfo(ctx, "load test scaled in", "service", in.Service.Name, "cluster", t.Cluster, "removed", len(names))
	return out, nil
}
