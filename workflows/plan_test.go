package workflows

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

func liveOf(t *testing.T, w *fakeWorld, env spec.Environment) InspectResult {
	t.Helper()
	in := InspectInput{Environment: env.Environment, AllowUnreachable: true}
	for _, c := range env.Clusters {
		in.Targets = append(in.Targets, TargetOf(env.Environment, c))
	}
	live, err := w.Inspect(context.Background(), in)
	require.NoError(t, err)
	return live
}

func TestComputePlan(t *testing.T) {
	env := testSpec(
		svc("db", "2.0.0"),
		svc("web", "1.1.0", func(s *spec.Service) { s.DependsOn = []string{"db"} }),
		svc("api", "3.0.0"),
		svc("new", "0.1.0", func(s *spec.Service) { s.Clusters = []string{"b"} }),
		svc("scale", "1.0.0", func(s *spec.Service) { s.Replicas = 3 }),
	)
	env.Clusters[1].Policy.MaxReplicas = 2
	w := newWorld("staging")
	w.seed("a", "db", "1.0.0", 2)
	w.seed("b", "db", "1.0.0", 2)
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.1.0", 2) // b already runs the new web
	w.seed("a", "api", "3.0.0", 2)
	w.seed("b", "api", "3.0.0", 2)
	w.seed("a", "scale", "1.0.0", 2)
	w.seed("b", "scale", "1.0.0", 2)
	w.seedState("a", "web", "1.1.0", 1, "exited", false) // a stopped revision of the new version
	w.down["b"] = false
	p, err := ComputePlan(env, nil, liveOf(t, w, env))
	require.NoError(t, err)

	require.Equal(t, [][]string{{"db", "new", "scale"}, {"web"}}, p.Layers)
	require.Equal(t, []string{"db", "new", "scale", "web", "api"}, func() (out []string) {
		for _, s := range p.Services {
			out = append(out, s.Service)
		}
		return
	}())
	api := p.Service("api")
	require.Equal(t, ActionNone, api.Action)
	require.Equal(t, -1, api.Layer)

	web := p.Service("web")
	require.Equal(t, ActionUpdate, web.Action)
	require.Equal(t, "1.0.0", web.FromVersion)
	wa, wb := web.Cluster("a"), web.Cluster("b")
	require.Equal(t, ActionUpdate, wa.Action)
	require.True(t, wa.Canary)
	require.Equal(t, []string{"slipway.staging.a.web.1.0.0.0", "slipway.staging.a.web.1.0.0.1"}, wa.Old)
	require.Equal(t, []string{"slipway.staging.a.web.1.1.0.0"}, wa.Existing)
	require.Empty(t, wa.Current)
	require.Equal(t, ActionNone, wb.Action)
	require.Equal(t, 2, wb.Wave)

	nw := p.Service("new")
	require.Equal(t, ActionCreate, nw.Action)
	require.Len(t, nw.Clusters, 1)
	require.True(t, nw.Clusters[0].Canary, "the service's own first cluster hosts its canary")

	sc := p.Service("scale")
	require.Equal(t, ActionScale, sc.Cluster("a").Action)
	require.Equal(t, 3, sc.Cluster("a").ReplicasTo)
	require.Equal(t, ActionNone, sc.Cluster("b").Action, "capped by b's max_replicas")

	// an unreachable cluster is reported
	w.down["b"] = true
	p, err = ComputePlan(env, []string{"web"}, liveOf(t, w, env))
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, p.Unreachable)
	require.Len(t, p.Services, 1)

	_, err = ComputePlan(env, []string{"nope"}, InspectResult{})
	require.ErrorContains(t, err, `service "nope" is not in the spec`)
}

func TestPlanCleanup(t *testing.T) {
	c := func(v string, slot int, state string, traffic bool) engine.Container {
		k := engine.Key{Environment: "e", Cluster: "a", Service: "web", Version: v, Slot: slot}
		return engine.Container{Key: k, Name: k.ContainerName(), State: state, InTraffic: traffic}
	}
	cp := ClusterPlan{FromVersion: "1.0.0", ToVersion: "1.1.0", ReplicasTo: 2}
	got := planCleanup(cp, []engine.Container{
		c("1.1.0", 0, "running", true), c("1.1.0", 1, "running", true), c("1.1.0", 2, "running", true), // a third canary slot
		c("1.0.0", 0, "running", false), c("1.0.0", 1, "exited", false),
		c("0.9.0", 0, "exited", false),
	})
	require.Equal(t, []string{"e.a.web.1.0.0.0"}, trimNames(got.Stop))
	require.Equal(t, []string{"e.a.web.1.1.0.2", "e.a.web.0.9.0.0"}, trimNames(got.Remove))
}

func trimNames(ns []string) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n[len("slipway."):])
	}
	return out
}

func TestRollbackCheck(t *testing.T) {
	c := func(v string, slot int, state string, traffic bool) engine.Container {
		k := engine.Key{Environment: "e", Cluster: "a", Service: "web", Version: v, Slot: slot}
		return engine.Container{Key: k, Name: k.ContainerName(), State: state, InTraffic: traffic}
	}
	old0, old1 := c("1.0.0", 0, "running", true), c("1.0.0", 1, "running", true)
	cp := ClusterPlan{ToVersion: "1.1.0", Old: []string{old0.Name, old1.Name}, Existing: []string{"slipway.e.a.web.1.1.0.5"}}
	require.Empty(t, rollbackCheck(cp, []engine.Container{old0, old1, c("1.1.0", 5, "exited", false)}))
	probs := rollbackCheck(cp, []engine.Container{old0, c("1.0.0", 1, "running", false), c("1.1.0", 0, "running", false), c("1.1.0", 5, "running", false)})
	require.Equal(t, []string{
		"slipway.e.a.web.1.0.0.1 is out of traffic",
		"slipway.e.a.web.1.1.0.0 (1.1.0) is left (running)",
		"slipway.e.a.web.1.1.0.5 (1.1.0) still runs",
	}, probs)
	require.Equal(t, []string{"slipway.e.a.web.1.0.0.1 is gone"}, rollbackCheck(cp, []engine.Container{old0}))
}
