package activities

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// Inspect reports what runs on every target cluster of an environment: per service, per
// version, its containers with state, health and whether they take traffic. Clusters are
// inspected in parallel. With AllowUnreachable an engine that does not answer is reported
// in its ClusterState; otherwise it fails the activity (retryable).
func (a *Activities) Inspect(ctx context.Context, in workflows.InspectInput) (workflows.InspectResult, error) {
	if in.Environment == "" {
		return workflows.InspectResult{}, badInput("inspect: no environment")
	}
	defer a.beat(ctx)()
	want := map[string]bool{}
	for _, s := range in.Services {
		want[s] = true
	}
	out := workflows.InspectResult{Clusters: make([]workflows.ClusterState, len(in.Targets)), At: time.Now().UTC()}
	errs := make([]error, len(in.Targets))
	var wg sync.WaitGroup
	for i, t := range in.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Clusters[i], errs[i] = a.inspectCluster(ctx, in.Environment, t, want)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil {
			continue
		}
		if !in.AllowUnreachable {
			return workflows.InspectResult{}, err
		}
		out.Clusters[i] = workflows.ClusterState{Cluster: in.Targets[i].Cluster, Error: err.Error()}
	}
	return out, nil
}

func (a *Activities) inspectCluster(ctx context.Context, env string, t workflows.Target, want map[string]bool) (workflows.ClusterState, error) {
	t.Environment = env
	e, err := a.dial(ctx, t)
	if err != nil {
		return workflows.ClusterState{}, err
	}
	cs, err := e.List(ctx, engine.Selector{Environment: env, Cluster: t.Cluster})
	if err != nil {
		return workflows.ClusterState{}, classify("list containers on cluster "+t.Cluster, err)
	}
	return groupState(t.Cluster, cs, want), nil
}

// groupState groups containers by service and version, both sorted.
func groupState(cluster string, cs []engine.Container, want map[string]bool) workflows.ClusterState {
	bySvc := map[string]map[string]*workflows.VersionState{}
	for _, c := range cs {
		if len(want) > 0 && !want[c.Service] {
			continue
		}
		if bySvc[c.Service] == nil {
			bySvc[c.Service] = map[string]*workflows.VersionState{}
		}
		v := bySvc[c.Service][c.Version]
		if v == nil {
			v = &workflows.VersionState{Version: c.Version}
			bySvc[c.Service][c.Version] = v
		}
		v.Containers = append(v.Containers, c)
		if c.Running() {
			v.Running++
			if c.InTraffic {
				v.InTraffic++
			}
			if c.Health == engine.HealthHealthy || c.Health == engine.HealthUnknown {
				v.Healthy++
			}
		}
	}
	st := workflows.ClusterState{Cluster: cluster}
	for _, svc := range sortedKeys(bySvc) {
		ss := workflows.ServiceState{Service: svc}
		for _, ver := range sortedKeys(bySvc[svc]) {
			v := bySvc[svc][ver]
			sort.Slice(v.Containers, func(i, j int) bool { return v.Containers[i].Name < v.Containers[j].Name })
			ss.Versions = append(ss.Versions, *v)
		}
		st.Services = append(st.Services, ss)
	}
	return st
}

// sortedKeys returns a map's keys in order (deterministic iteration, workflows included).
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// CheckImages checks, before anything changes, that every image is in the store of every
// cluster that needs it (nothing is ever pulled). Missing images are the result, not an
// error: the workflow refuses the release naming all of them at once.
func (a *Activities) CheckImages(ctx context.Context, in workflows.CheckImagesInput) (workflows.CheckImagesResult, error) {
	defer a.beat(ctx)()
	var (
		mu  sync.Mutex
		res workflows.CheckImagesResult
		wg  sync.WaitGroup
	)
	errs := make([]error, len(in.Checks))
	for i, c := range in.Checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := a.dial(ctx, c.Target)
			if err != nil {
				errs[i] = err
				return
			}
			err = e.ImagePresent(ctx, c.Image)
			switch engine.KindOf(err) {
			case "":
			case engine.KindImageMissing:
				mu.Lock()
				res.Missing = append(res.Missing, workflows.MissingImage{Cluster: c.Target.Cluster, Service: c.Service, Image: c.Image})
				mu.Unlock()
			default:
				errs[i] = classify("check image "+c.Image+" on cluster "+c.Target.Cluster, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return workflows.CheckImagesResult{}, err
		}
	}
	sort.Slice(res.Missing, func(i, j int) bool {
		a, b := res.Missing[i], res.Missing[j]
		if a.Cluster != b.Cluster {
			return a.Cluster < b.Cluster
		}
		return a.Image < b.Image
	})
	return res, nil
}

// EnsureNetwork creates the environment's network on a cluster when it is missing.
func (a *Activities) EnsureNetwork(ctx context.Context, in workflows.EnsureNetworkInput) error {
	defer a.beat(ctx)()
	e, err := a.dial(ctx, in.Target)
	if err != nil {
		return err
	}
	labels := map[string]string{
		engine.LabelManaged:     "true",
		engine.LabelEnvironment: in.Target.Environment,
		engine.LabelCluster:     in.Target.Cluster,
	}
	return classify("ensure network "+in.Target.Network(), e.EnsureNetwork(ctx, in.Target.Network(), labels))
}
