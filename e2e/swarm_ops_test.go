package e2e

import (
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// TestSwarmPlanAndLoadTest reads and acts on the swarm of the mixed environment outside a
// release, through the real worker and the embedded Temporal server: the Plan workflow (what
// POST /v1/plan and the fleet view of GET /v1/environments/{env} run) sees the swarm's
// serving version and plans its change exactly as the plain cluster's; and a load test with
// scale_factor 2 on the swarm scales the serving version's Swarm service out (its extra
// replicas labelled as the load test's), loads it, passes its SLOs and scales back in to the
// stable replicas, nothing of the load test left.
func TestSwarmPlanAndLoadTest(t *testing.T) {
	t.Parallel() // mostly waits: health, load, scale
	f := newMixedFixture(t)
	f.startWorker()
	f.seedSpec(f.swarmSpec("1.0.0"))
	sw := f.targets[1]
	require.Equal(t, spec.KindSwarm, sw.Kind)

	// 1. The plan of 1.1.0, as the API runs it.
	run, err := srv.Client().ExecuteWorkflow(ctxT(t, time.Minute), client.StartWorkflowOptions{
		ID: workflows.PlanWorkflowID(f.env, "swarm"), TaskQueue: f.queue, WorkflowExecutionTimeout: 2 * time.Minute,
		WorkflowTaskTimeout: workflows.WorkflowTaskTimeout,
	}, workflows.PlanWorkflowName, f.swarmSpec("1.1.0"))
	require.NoError(t, err)
	var pr workflows.PlanResult
	require.NoError(t, run.Get(ctxT(t, 2*time.Minute), &pr))
	require.Empty(t, pr.Plan.Unreachable)
	require.Equal(t, [][]string{{"web"}}, pr.Plan.Layers)
	sp := pr.Plan.Service("web")
	require.NotNil(t, sp)
	require.Equal(t, workflows.ActionUpdate, sp.Action)
	require.Equal(t, "1.0.0", sp.FromVersion)
	require.Equal(t, "1.1.0", sp.ToVersion)
	plans := map[string]workflows.ClusterPlan{}
	for _, cluster := range []string{"a", "s"} {
		cp := sp.Cluster(cluster)
		require.NotNil(t, cp, "no plan for cluster %s", cluster)
		t.Logf("plan on %s: %+v", cluster, *cp)
		require.Equal(t, workflows.ActionUpdate, cp.Action, cluster)
		require.Equal(t, "1.0.0", cp.FromVersion, cluster)
		require.Equal(t, "1.1.0", cp.ToVersion, cluster)
		require.Equal(t, 2, cp.ReplicasFrom, cluster)
		require.Equal(t, 2, cp.ReplicasTo, cluster)
		require.Len(t, cp.Old, 2, "replicas of 1.0.0 in traffic on %s", cluster)
		require.Empty(t, cp.Existing, cluster)
		plans[cluster] = *cp
	}
	require.True(t, plans["s"].Canary, "the swarm is the canary cluster")
	require.Equal(t, 1, plans["s"].Wave)
	// The same plan on both kinds of cluster, but for the cluster's name, wave and canary and
	// its replicas' names.
	norm := func(cp workflows.ClusterPlan) workflows.ClusterPlan {
		cp.Cluster, cp.Wave, cp.Canary, cp.Old = "", 0, false, nil
		return cp
	}
	require.Equal(t, norm(plans["a"]), norm(plans["s"]))
	// The live state the plan (and the fleet view) shows: the swarm's Swarm service as two
	// running replicas in traffic, as the plain engine's two containers.
	for _, cluster := range []string{"a", "s"} {
		cs := pr.Live.Cluster(cluster)
		require.NotNil(t, cs, cluster)
		require.Empty(t, cs.Error, cluster)
		serving := 0
		for _, c := range cs.Containers("web") {
			require.Equal(t, "1.0.0", c.Version, "%s on %s", c.Name, cluster)
			require.Equal(t, engine.RoleStable, c.Role, "%s on %s", c.Name, cluster)
			if c.Running() && c.InTraffic && c.Address != "" {
				serving++
			}
		}
		require.Equal(t, 2, serving, "replicas serving on %s", cluster)
	}

	// 2. A load test of the swarm's replicas with scale_factor 2.
	env := f.swarmSpec("1.0.0")
	env.LoadTests = []spec.LoadTest{{
		Name: "peak", Service: "web", Clusters: []string{"s"},
		Rate: 60, WarmUp: spec.Duration(time.Second), Duration: spec.Duration(3 * time.Second), ScaleFactor: 2,
		Requests: []spec.Probe{{Path: "/", ExpectStatus: 200}},
		// loose: two small hosts run several helpers' tests at once
		SLO: spec.SLOs{P95: spec.Duration(time.Second), MaxErrorRate: 0.05, MinThroughput: 30},
	}}
	in, err := workflows.LoadTestInputFor(&env, "peak", workflows.LoadTestManual)
	require.NoError(t, err)
	require.Len(t, in.Targets, 1)
	require.Equal(t, spec.KindSwarm, in.Targets[0].Kind)
	in.TriggeredBy = "e2e"
	lt, err := srv.Client().ExecuteWorkflow(ctxT(t, time.Minute), client.StartWorkflowOptions{
		ID: workflows.LoadTestWorkflowID(f.env, "peak", "1"), TaskQueue: f.queue, WorkflowExecutionTimeout: 3 * time.Minute,
		WorkflowTaskTimeout: workflows.WorkflowTaskTimeout,
	}, workflows.LoadTestWorkflowName, in)
	require.NoError(t, err)
	done := make(chan error, 1)
	var res workflows.LoadTestResult
	ltCtx := ctxT(t, 3*time.Minute)
	go func() { done <- lt.Get(ltCtx, &res) }()

	// While it runs: the most replicas of the load test seen on the swarm, through the
	// adapter, with the Swarm service's scale at that moment.
	var peak []engine.Container
	peakReplicas := ""
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-time.After(200 * time.Millisecond):
			var mine []engine.Container
			for _, c := range f.live(sw)["1.0.0"] {
				if c.Role == workflows.RoleLoadTest && c.Running() && c.InTraffic {
					mine = append(mine, c)
				}
			}
			if len(mine) > len(peak) {
				peak, peakReplicas = mine, swarmServices(t, sw.Endpoint, f.env, "1.0.0")
			}
		}
	}
	require.NoError(t, err)
	t.Logf("load test: %s; scale %+v", res.Reason, res.Scale)
	require.Equal(t, workflows.LoadTestPassed, res.Outcome, res.Reason)
	require.Equal(t, "1.0.0", res.Version)
	require.Empty(t, res.ScaleBackErrors)
	require.Len(t, res.Scale, 1)
	sc := res.Scale[0]
	require.Equal(t, "s", sc.Cluster)
	require.Equal(t, 2, sc.Base)
	require.Equal(t, 4, sc.Peak, "2 × the 2 serving replicas on the swarm during the load")
	require.NotNil(t, res.Metrics)
	require.Positive(t, res.Metrics.Requests)
	require.Len(t, res.Metrics.Targets, 4, "the load went to the stable and the extra replicas")

	// The scale-out was on the swarm: two extra replicas of the load test (its run's
	// release), in the serving version's one Swarm service, at scale 4 then.
	require.Len(t, peak, 2, "the load test's replicas seen on the swarm")
	for _, c := range peak {
		require.Equal(t, lt.GetID(), c.Release, c.Name)
		require.GreaterOrEqual(t, c.Slot, 2, "%s: the stable replicas keep slots 0 and 1", c.Name)
	}
	t.Logf("swarm services at the peak: %s", peakReplicas)
	require.Equal(t, "4/4", peakReplicas, "the Swarm service of 1.0.0 (running/desired tasks)")

	// Scaled back in: the stable replicas as seeded, nothing of the load test left, the
	// Swarm service back at its two replicas, and 1.0.0 serving on both clusters.
	after := f.live(sw)
	require.Len(t, after, 1, "versions on the swarm: %v", after)
	require.Len(t, after["1.0.0"], 2)
	for _, c := range after["1.0.0"] {
		require.Equal(t, engine.RoleStable, c.Role, c.Name)
		require.Equal(t, "seed", c.Release, c.Name)
		require.Less(t, c.Slot, 2, c.Name)
	}
	require.Equal(t, "2/2", swarmServices(t, sw.Endpoint, f.env, "1.0.0"), "the Swarm service of 1.0.0 (running/desired tasks)")
	require.Equal(t, "2/2", swarmServices(t, sw.Endpoint, f.env, ""), "the only Swarm service of the environment")
	f.requireServes("1.0.0")
}

// swarmServices is `docker service ls` on the swarm for env's Swarm services (of version,
// when not empty): their running/desired tasks, one service a line, sorted.
func swarmServices(t *testing.T, host, env, version string) string {
	t.Helper()
	args := []string{"-H", host, "service", "ls", "--filter", "label=" + engine.LabelEnvironment + "=" + env}
	if version != "" {
		args = append(args, "--filter", "label="+engine.LabelVersion+"="+version)
	}
	out, err := exec.CommandContext(ctxT(t, time.Minute), "docker", append(args, "--format", "{{.Replicas}}")...).CombinedOutput()
	require.NoError(t, err, string(out))
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
