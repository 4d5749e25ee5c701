package workflows

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// fakeWorld stands in for the activities in workflow tests: an in-memory model of the
// containers on each cluster that the fake activities change the way the real ones change
// Docker, so that the rollback check (Inspect after the rollback) and the assertions on
// "what runs where" mean something. Failures are injected per cluster, version or stage.
type fakeWorld struct {
	mu       sync.Mutex
	env      string
	clusters map[string]map[string]*engine.Container // cluster → name → container
	calls    []string

	down      map[string]bool // cluster → engine does not answer (retryable errors)
	unhealthy map[string]bool // version → its replicas never become healthy
	missing   map[string]bool // image ref → not in any engine store
	stubborn  map[string]bool // version → its replicas ignore SIGTERM (killed after the grace)
	verdict   func(VerifyInput) Verdict
	// hook sees every call as it is recorded, with the world locked (it may change down,
	// unhealthy, missing directly), e.g. to bring an engine down mid-release.
	hook     func(call string)
	verifies []VerifyInput
	stops    []ContainersInput
	watch    fakeWatch // what the engines report of the new replicas (watch_fake_test.go)
	// pace holds StartReplicas, StopReplicas and RemoveReplicas that long before they act, so the calls a
	// workflow runs together overlap; inFlight and maxInFlight count them (by activity).
	pace        time.Duration
	inFlight    map[string]int
	maxInFlight map[string]int
}

func newWorld(env string) *fakeWorld {
	return &fakeWorld{
		env: env, clusters: map[string]map[string]*engine.Container{},
		down: map[string]bool{}, unhealthy: map[string]bool{}, missing: map[string]bool{}, stubborn: map[string]bool{},
		inFlight: map[string]int{}, maxInFlight: map[string]int{},
	}
}

// enter counts one call of an activity in flight until the returned func runs, and holds
// it for pace first (unlocked: the calls overlap).
func (w *fakeWorld) enter(activity string) (leave func()) {
	w.mu.Lock()
	w.inFlight[activity]++
	w.maxInFlight[activity] = max(w.maxInFlight[activity], w.inFlight[activity])
	pace := w.pace
	w.mu.Unlock()
	time.Sleep(pace)
	return func() {
		w.mu.Lock()
		w.inFlight[activity]--
		w.mu.Unlock()
	}
}

// MaxInFlight is the most calls of an activity that ran at once.
func (w *fakeWorld) MaxInFlight(activity string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxInFlight[activity]
}

type activityRegistry interface {
	RegisterActivityWithOptions(a any, options activity.RegisterOptions)
}

func (w *fakeWorld) register(r activityRegistry) {
	for name, fn := range map[string]any{
		ActivityInspect:        w.Inspect,
		ActivityCheckImages:    w.CheckImages,
		ActivityEnsureNetwork:  w.EnsureNetwork,
		ActivityStartReplicas:  w.StartReplicas,
		ActivitySetTraffic:     w.SetTraffic,
		ActivityStopReplicas:   w.StopReplicas,
		ActivityStartStopped:   w.StartStopped,
		ActivityRemoveReplicas: w.RemoveReplicas,
		ActivityVerify:         w.Verify,
		// A lock's watch of its release: in the test environment a release only ends by
		// freeing its locks, so the watch always answers "still running".
		ActivityWatchRelease: func(context.Context, WatchReleaseInput) (ReleaseEnd, error) {
			return ReleaseEnd{Status: ReleaseStillRunning}, nil
		},
		ActivityDescribeLock: func(context.Context, DescribeLockInput) (LockState, error) { return LockState{}, nil },
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	w.registerWatch(r)
}

// seed puts n running, in-traffic replicas of service@version on a cluster.
func (w *fakeWorld) seed(cluster, service, version string, n int) {
	w.seedState(cluster, service, version, n, "running", true)
}

// seedState puts n replicas of service@version in the given state on a cluster.
func (w *fakeWorld) seedState(cluster, service, version string, n int, state string, inTraffic bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := 0; i < n; i++ {
		k := engine.Key{Environment: w.env, Cluster: cluster, Service: service, Version: version, Slot: i}
		w.put(&engine.Container{Key: k, Name: k.ContainerName(), Image: "slipway/demo:" + version, State: state,
			Health: engine.HealthHealthy, InTraffic: inTraffic, Role: engine.RoleStable, Address: fmt.Sprintf("10.0.0.%d:8080", i+1)})
	}
}

func (w *fakeWorld) put(c *engine.Container) {
	if w.clusters[c.Cluster] == nil {
		w.clusters[c.Cluster] = map[string]*engine.Container{}
	}
	w.clusters[c.Cluster][c.Name] = c
}

func (w *fakeWorld) call(format string, args ...any) {
	c := fmt.Sprintf(format, args...)
	w.calls = append(w.calls, c)
	if w.hook != nil {
		w.hook(c)
	}
}

// Calls returns the calls whose text starts with prefix.
func (w *fakeWorld) Calls(prefix string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, c := range w.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// serving returns "version×n" of the running, in-traffic replicas of a service on a cluster,
// and running the same for every running replica.
func (w *fakeWorld) serving(cluster, service string) (serving, running map[string]int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	serving, running = map[string]int{}, map[string]int{}
	for _, c := range w.clusters[cluster] {
		if c.Service != service || c.State != "running" {
			continue
		}
		running[c.Version]++
		if c.InTraffic {
			serving[c.Version]++
		}
	}
	return serving, running
}

// versions returns every version of service present on cluster (any state), sorted.
func (w *fakeWorld) versions(cluster, service string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := map[string]bool{}
	for _, c := range w.clusters[cluster] {
		if c.Service == service {
			seen[c.Version] = true
		}
	}
	return sortedKeys(seen)
}

func (w *fakeWorld) unavailable(cluster string) error {
	if w.down[cluster] {
		return temporal.NewApplicationError("engine of cluster "+cluster+" does not answer", ErrEngineUnavailable)
	}
	return nil
}

func (w *fakeWorld) Inspect(_ context.Context, in InspectInput) (InspectResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("Inspect")
	var out InspectResult
	for _, t := range in.Targets {
		if err := w.unavailable(t.Cluster); err != nil {
			if !in.AllowUnreachable {
				return InspectResult{}, err
			}
			out.Clusters = append(out.Clusters, ClusterState{Cluster: t.Cluster, Error: err.Error()})
			continue
		}
		by := map[string]map[string]*VersionState{}
		for _, name := range sortedKeys(w.clusters[t.Cluster]) {
			c := *w.clusters[t.Cluster][name]
			if by[c.Service] == nil {
				by[c.Service] = map[string]*VersionState{}
			}
			v := by[c.Service][c.Version]
			if v == nil {
				v = &VersionState{Version: c.Version}
				by[c.Service][c.Version] = v
			}
			v.Containers = append(v.Containers, c)
			if c.Running() {
				v.Running++
				v.Healthy++
				if c.InTraffic {
					v.InTraffic++
				}
			}
		}
		cs := ClusterState{Cluster: t.Cluster}
		for _, s := range sortedKeys(by) {
			ss := ServiceState{Service: s}
			for _, v := range sortedKeys(by[s]) {
				ss.Versions = append(ss.Versions, *by[s][v])
			}
			cs.Services = append(cs.Services, ss)
		}
		out.Clusters = append(out.Clusters, cs)
	}
	return out, nil
}

func (w *fakeWorld) CheckImages(_ context.Context, in CheckImagesInput) (CheckImagesResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("CheckImages %d", len(in.Checks))
	var res CheckImagesResult
	for _, c := range in.Checks {
		if err := w.unavailable(c.Target.Cluster); err != nil {
			return res, err
		}
		if w.missing[c.Image] {
			res.Missing = append(res.Missing, MissingImage{Cluster: c.Target.Cluster, Service: c.Service, Image: c.Image})
		}
	}
	return res, nil
}

func (w *fakeWorld) EnsureNetwork(_ context.Context, in EnsureNetworkInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("EnsureNetwork %s", in.Target.Cluster)
	return w.unavailable(in.Target.Cluster)
}

func (w *fakeWorld) StartReplicas(_ context.Context, in StartReplicasInput) (StartReplicasResult, error) {
	defer w.enter(ActivityStartReplicas)()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("StartReplicas %s %s %s %v %s", in.Target.Cluster, in.Service.Name, in.Service.Version, in.Slots, in.Role)
	if err := w.unavailable(in.Target.Cluster); err != nil {
		return StartReplicasResult{}, err
	}
	var out StartReplicasResult
	for _, slot := range in.Slots {
		k := engine.Key{Environment: in.Target.Environment, Cluster: in.Target.Cluster, Service: in.Service.Name, Version: in.Service.Version, Slot: slot}
		c := w.clusters[k.Cluster][k.ContainerName()]
		if c == nil {
			c = &engine.Container{Key: k, Name: k.ContainerName(), Release: in.Release, Role: in.Role, Image: in.Service.ImageRef(),
				Address: fmt.Sprintf("10.1.0.%d:8080", slot+1)}
			w.put(c)
		}
		c.State = "running"
		c.Health = engine.HealthHealthy
		if w.unhealthy[in.Service.Version] {
			c.State, c.Health = "exited", engine.HealthUnhealthy
			return StartReplicasResult{}, temporal.NewNonRetryableApplicationError(c.Name+" exited at start (exit code 1)", ErrUnhealthy, nil)
		}
		if in.Attach {
			c.InTraffic = true
		}
		out.Containers = append(out.Containers, *c)
	}
	return out, nil
}

func (w *fakeWorld) SetTraffic(_ context.Context, in SetTrafficInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("SetTraffic %s %s attach=%v detach=%v", in.Target.Cluster, in.Service, in.Attach, in.Detach)
	if err := w.unavailable(in.Target.Cluster); err != nil {
		return err
	}
	for _, n := range in.Attach {
		c := w.clusters[in.Target.Cluster][n]
		if c == nil {
			return temporal.NewNonRetryableApplicationError("attach "+n+": no such container", ErrNotFound, nil)
		}
		c.InTraffic = true
	}
	for _, n := range in.Detach {
		if c := w.clusters[in.Target.Cluster][n]; c != nil {
			c.InTraffic = false
		}
	}
	return nil
}

func (w *fakeWorld) StopReplicas(_ context.Context, in ContainersInput) (StopReplicasResult, error) {
	defer w.enter(ActivityStopReplicas)()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("StopReplicas %s %v", in.Target.Cluster, in.Names)
	w.stops = append(w.stops, in)
	if err := w.unavailable(in.Target.Cluster); err != nil {
		return StopReplicasResult{}, err
	}
	res := StopReplicasResult{Grace: in.StopTimeout}
	for _, n := range in.Names {
		if c := w.clusters[in.Target.Cluster][n]; c != nil {
			if c.Running() {
				res.Stopped = append(res.Stopped, n)
				if w.stubborn[c.Version] {
					res.Killed = append(res.Killed, n)
				}
			}
			c.State = "exited"
		}
	}
	return res, nil
}

func (w *fakeWorld) StartStopped(_ context.Context, in ContainersInput) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("StartStopped %s %v", in.Target.Cluster, in.Names)
	if err := w.unavailable(in.Target.Cluster); err != nil {
		return err
	}
	for _, n := range in.Names {
		c := w.clusters[in.Target.Cluster][n]
		if c == nil {
			return temporal.NewNonRetryableApplicationError("start "+n+": no such container", ErrNotFound, nil)
		}
		c.State = "running"
	}
	return nil
}

func (w *fakeWorld) RemoveReplicas(_ context.Context, in RemoveReplicasInput) error {
	defer w.enter(ActivityRemoveReplicas)()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.call("RemoveReplicas %s %v sweep=%s@%s", in.Target.Cluster, in.Names, in.Service, in.Version)
	if err := w.unavailable(in.Target.Cluster); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, n := range in.Keep {
		keep[n] = true
	}
	for _, n := range in.Names {
		delete(w.clusters[in.Target.Cluster], n)
	}
	if in.Service != "" && in.Version != "" {
		for n, c := range w.clusters[in.Target.Cluster] {
			if c.Service == in.Service && c.Version == in.Version && !keep[n] {
				delete(w.clusters[in.Target.Cluster], n)
			}
		}
	}
	return nil
}

func (w *fakeWorld) Verify(_ context.Context, in VerifyInput) (Verdict, error) {
	w.mu.Lock()
	w.call("Verify %s %s %s new=%d baseline=%d", in.Target.Cluster, in.Service, in.Stage, len(in.New), len(in.Baseline))
	w.verifies = append(w.verifies, in)
	judge := w.verdict
	err := w.unavailable(in.Target.Cluster)
	// like the real probes: a replica that is gone or not running has no address (a
	// detached one keeps its address: it only loses the service alias), and a verification
	// that cannot reach one side is inconclusive
	var unreachable []string
	for _, n := range append(append([]string(nil), in.New...), in.Baseline...) {
		if c := w.clusters[in.Target.Cluster][n]; c == nil || !c.Running() {
			unreachable = append(unreachable, n)
		}
	}
	w.mu.Unlock()
	if err == nil && len(unreachable) > 0 {
		return Verdict{Result: VerdictInconclusive, Reason: fmt.Sprintf("cannot reach %v", unreachable)}, nil
	}
	if err != nil {
		return Verdict{}, err
	}
	if judge != nil {
		if v := judge(in); v.Result != "" {
			return v, nil
		}
	}
	return Verdict{Result: VerdictPassed, Reason: "all good", Evidence: Evidence{Samples: 40, P50: 2e6, P95: 4e6, BaselineP95: 4e6}}, nil
}

// testSpec is a defaulted environment: clusters a (wave 1, canary) and b (wave 2), and the
// given services (image slipway/demo, 2 replicas, batch 1, short verification).
func testSpec(services ...spec.Service) spec.Environment {
	env := spec.Environment{
		Environment: "staging",
		Clusters:    []spec.Cluster{{Name: "a", Wave: 1}, {Name: "b", Wave: 2}},
		Services:    services,
	}
	spec.ApplyDefaults(&env)
	return env
}

func svc(name, version string, mods ...func(*spec.Service)) spec.Service {
	s := spec.Service{
		Name: name, Image: "slipway/demo", Version: version, Replicas: 2, Port: 8080,
		Health:       &spec.Health{HTTPPath: "/healthz"},
		Rollout:      &spec.Rollout{BatchSize: 1},
		Verification: &spec.Verification{Interval: spec.Duration(1e9), Duration: spec.Duration(5e9), MinSamples: 5, MaxErrorRate: 0.05},
	}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func sortedCalls(calls []string) []string {
	out := append([]string(nil), calls...)
	sort.Strings(out)
	return out
}
