package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Large releases (BENCHMARKS.md, Large releases): 120 small services (1 replica each, 60 on
// each of the two clusters, in three depends_on layers) released from 1.0.0 to 1.1.0 through
// the real worker, the embedded Temporal server and the real engines.

// largeServices is the size of the large release (SLIPWAY_LARGE_SERVICES overrides it).
func largeServices() int {
	if v, err := strconv.Atoi(os.Getenv("SLIPWAY_LARGE_SERVICES")); err == nil && v > 0 {
		return v
	}
	return 120
}

// largeLayers are the services' names by depends_on layer: a fifth are bases, two fifths
// depend on a base, the rest on one of those.
func largeLayers(n int) [][]string {
	base, mid := n/5, n/5+2*n/5
	layers := make([][]string, 3)
	for i := 0; i < n; i++ {
		l := 0
		switch {
		case i >= mid:
			l = 2
		case i >= base:
			l = 1
		}
		layers[l] = append(layers[l], largeName(i))
	}
	return layers
}

func largeName(i int) string { return fmt.Sprintf("svc-%03d", i) }

// largeSpec is the environment of n services at version, parsed like a spec file: service i
// on cluster a (even i) or b (odd), 1 replica, the fixture's health check, a 1-replica
// canary soaked 2 s, 2 s verification windows at the default rate, no bake.
func (f *fixture) largeSpec(n int, version string) spec.Environment {
	f.t.Helper()
	base, mid := n/5, n/5+2*n/5
	var b strings.Builder
	fmt.Fprintf(&b, "environment: %s\nclusters:\n%sservices:\n", f.env, f.clustersYAML())
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `  - name: %s
    image: slipway/demo
    version: "%s"
    port: 8080
    replicas: 1
    clusters: [%s]
    health: {http_path: /healthz, interval: 250ms, timeout: 1s, retries: 3, deadline: 60s}
    canary: {replicas: 1, soak: 2s}
    verification: {duration: 2s, min_samples: 50, max_error_rate: 0.05, bake: 0s}
`, largeName(i), version, f.targets[i%len(f.targets)].Cluster)
		switch {
		case i >= mid:
			fmt.Fprintf(&b, "    depends_on: [%s]\n", largeName(base+(i-mid)%(mid-base)))
		case i >= base:
			fmt.Fprintf(&b, "    depends_on: [%s]\n", largeName((i-base)%base))
		}
	}
	env, err := spec.Parse("large.yaml", []byte(b.String()))
	require.NoError(f.t, err)
	return *env
}

// target is the fixture's target of a cluster.
func (f *fixture) target(cluster string) workflows.Target {
	for _, tg := range f.targets {
		if tg.Cluster == cluster {
			return tg
		}
	}
	f.t.Fatalf("no cluster %s", cluster)
	return workflows.Target{}
}

// largeEach runs fn over the services of env (by name) at most limit at a time (0: all at
// once), each up to 3 times (the engine calls are idempotent; the worker retries its
// activities too: dozens of container starts at once on a loaded engine can outlast the
// client's call timeout), and fails on an error of the last attempt.
func (f *fixture) largeEach(names []string, limit int, fn func(name string) error) {
	f.t.Helper()
	if limit <= 0 {
		limit = len(names)
	}
	sem := make(chan struct{}, limit)
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			for attempt := 0; attempt < 3; attempt++ {
				if errs[i] = fn(name); errs[i] == nil {
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	require.NoError(f.t, errors.Join(errs...))
}

// largeSeed makes every service of env serve its version (1 replica on its cluster) without
// a release, 16 at a time, through the real activities.
func (f *fixture) largeSeed(env spec.Environment) {
	f.t.Helper()
	a := activities.New(f.dialer, activities.Options{})
	ctx := ctxT(f.t, 10*time.Minute)
	for _, tg := range f.targets {
		require.NoError(f.t, a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tg}))
	}
	var names []string
	for _, s := range env.Services {
		names = append(names, s.Name)
	}
	f.largeEach(names, 16, func(name string) error {
		s, _ := env.Service(name)
		_, err := a.StartReplicas(ctx, workflows.StartReplicasInput{Target: f.target(s.Clusters[0]), Release: "seed", Role: engine.RoleStable,
			Service: s, Slots: []int{0}, Attach: true, HealthDeadline: s.Health.Deadline.D()})
		return err
	})
}

// largeRelease is what one large release measured.
type largeRelease struct {
	st         workflows.ReleaseStatus
	wall       time.Duration
	maxEvents  int    // the largest history's events (the release's own)
	maxBytes   int    // and its bytes
	maxID      string // whose
	events     int    // every history of the release: itself and its locks
	bytes      int
	workflows  int
	queries    []time.Duration // status query latencies during the release, sorted
	statusSize int             // the largest status answer (bytes)
}

func (m largeRelease) pct(p float64) time.Duration {
	if len(m.queries) == 0 {
		return 0
	}
	return m.queries[min(len(m.queries)-1, int(p*float64(len(m.queries))))]
}

// runLarge releases env (fast track or full) as release id with the fixture's worker,
// querying its status every 100 ms while it runs, and measures it: wall time, query
// latencies, the status answer's size (its JSON), and the history of the release and of
// each of its locks.
func (f *fixture) runLarge(env spec.Environment, id string, fastTrack bool) largeRelease {
	f.t.Helper()
	c := srv.Client()
	ctx := ctxT(f.t, 20*time.Minute)
	t0 := time.Now()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.ReleaseWorkflowID(f.env, id), TaskQueue: f.queue, WorkflowExecutionTimeout: 20 * time.Minute,
		WorkflowTaskTimeout: workflows.WorkflowTaskTimeout,
	}, workflows.ReleaseWorkflowName, workflows.ReleaseInput{ID: id, TriggeredBy: "e2e", Spec: env, FastTrack: fastTrack})
	require.NoError(f.t, err)

	var m largeRelease
	qctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for qctx.Err() == nil {
			q0 := time.Now()
			v, err := c.QueryWorkflow(qctx, run.GetID(), run.GetRunID(), workflows.QueryStatus)
			if err == nil {
				m.queries = append(m.queries, time.Since(q0))
				var raw json.RawMessage
				if v.Get(&raw) == nil {
					m.statusSize = max(m.statusSize, len(raw))
				}
			}
			select {
			case <-qctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	m.st, err = workflows.ReleaseResult(ctx, run)
	m.wall = time.Since(t0)
	stop()
	<-done
	if err != nil {
		f.dumpHistory(run)
		f.t.Fatalf("release %s: %v", run.GetID(), err)
	}
	sort.Slice(m.queries, func(i, j int) bool { return m.queries[i] < m.queries[j] })

	ids := []string{run.GetID()}
	for _, s := range env.Services {
		ids = append(ids, workflows.LockWorkflowID(f.env, s.Name))
	}
	for _, wid := range ids {
		it := c.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		events, bytes := 0, 0
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(f.t, err)
			events++
			bytes += proto.Size(ev)
		}
		m.workflows++
		m.events += events
		m.bytes += bytes
		if events > m.maxEvents {
			m.maxEvents, m.maxBytes, m.maxID = events, bytes, wid
		}
	}
	return m
}

// largeDirect does the fast-track release's engine work directly with the same parallelism
// (rollout.max_parallel_services services at once, as the release: 8 by default): two
// Inspects (the plan, and the plan again under the locks), CheckImages, EnsureNetwork on
// both clusters; per layer, per service StartReplicas of 1.1.0 (attached once healthy) and
// SetTraffic detaching the 1.0.0 replica; an Inspect for the cleanup and StopReplicas of the
// 1.0.0 replicas, as many at once.
func (f *fixture) largeDirect(env spec.Environment, from string) time.Duration {
	f.t.Helper()
	a := activities.New(f.dialer, activities.Options{})
	ctx := ctxT(f.t, 10*time.Minute)
	var names []string
	for _, s := range env.Services {
		names = append(names, s.Name)
	}
	inspect := func() {
		_, err := a.Inspect(ctx, workflows.InspectInput{Environment: f.env, Services: names, Targets: f.targets})
		require.NoError(f.t, err)
	}
	old := func(s spec.Service) string {
		return engine.Key{Environment: f.env, Cluster: s.Clusters[0], Service: s.Name, Version: from}.ContainerName()
	}
	t0 := time.Now()
	inspect()
	inspect()
	var checks workflows.CheckImagesInput
	for _, s := range env.Services {
		checks.Checks = append(checks.Checks, workflows.ImageCheck{Target: f.target(s.Clusters[0]), Service: s.Name, Image: s.ImageRef()})
	}
	res, err := a.CheckImages(ctx, checks)
	require.NoError(f.t, err)
	require.Empty(f.t, res.Missing)
	for _, tg := range f.targets {
		require.NoError(f.t, a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tg}))
	}
	for _, layer := range largeLayers(len(env.Services)) {
		f.largeEach(layer, env.Rollout.MaxParallelServices, func(name string) error {
			s, _ := env.Service(name)
			tg := f.target(s.Clusters[0])
			if _, err := a.StartReplicas(ctx, workflows.StartReplicasInput{Target: tg, Release: "direct", Role: engine.RoleStable,
				Service: s, Slots: []int{0}, Attach: true, HealthDeadline: s.Health.Deadline.D()}); err != nil {
				return err
			}
			return a.SetTraffic(ctx, workflows.SetTrafficInput{Target: tg, Service: name, Detach: []string{old(s)}})
		})
	}
	inspect()
	f.largeEach(names, env.Rollout.MaxParallelServices, func(name string) error {
		s, _ := env.Service(name)
		_, err := a.StopReplicas(ctx, workflows.ContainersInput{Target: f.target(s.Clusters[0]), Names: []string{old(s)}, StopTimeout: s.StopGrace.D()})
		return err
	})
	return time.Since(t0)
}

// requireLargeServes checks that every service serves 1.1.0 (one running replica in
// traffic) and nothing else.
func (f *fixture) requireLargeServes(env spec.Environment, version string) {
	f.t.Helper()
	serving := map[string][]string{}
	for _, tg := range f.targets {
		for v, cs := range f.live(tg) {
			for _, c := range cs {
				if c.Running() && c.InTraffic {
					serving[c.Service] = append(serving[c.Service], v)
				}
			}
		}
	}
	for _, s := range env.Services {
		require.Equal(f.t, []string{version}, serving[s.Name], "%s in traffic", s.Name)
	}
}

func loadAvg1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return v
}

func (m largeRelease) report(b *testing.B) {
	b.ReportMetric(m.wall.Seconds(), "release-s")
	b.ReportMetric(float64(m.maxEvents), "max-events")
	b.ReportMetric(float64(m.maxBytes)/1e6, "max-history-MB")
	b.ReportMetric(float64(m.events), "total-events")
	b.ReportMetric(float64(m.workflows), "workflows")
	b.ReportMetric(float64(m.pct(0.5).Microseconds())/1000, "query-p50-ms")
	b.ReportMetric(float64(m.pct(0.99).Microseconds())/1000, "query-p99-ms")
	b.ReportMetric(float64(len(m.queries)), "queries")
	b.ReportMetric(float64(m.statusSize)/1e3, "status-kB")
}

func (m largeRelease) log(t testing.TB, what string) {
	t.Logf("%s: %s in %s; largest history %s: %d events, %.2f MB; %d workflows, %d events in all (%.2f MB); status %d kB; %d queries p50 %s p99 %s",
		what, m.st.Outcome, m.wall.Round(time.Millisecond), m.maxID, m.maxEvents, float64(m.maxBytes)/1e6, m.workflows, m.events,
		float64(m.bytes)/1e6, m.statusSize/1000, len(m.queries), m.pct(0.5).Round(time.Millisecond), m.pct(0.99).Round(time.Millisecond))
}

// BenchmarkRelease120 (issue 14): a fast-track release (no canary, no verification) of 120
// services, 1 replica each, 60 per cluster on two clusters (a on the default engine, b on an
// isolated one), three depends_on layers, 1.0.0 → 1.1.0 including the cleanup, against the
// same engine work done directly with the same parallelism (largeDirect), each side on a
// fresh environment seeded with 1.0.0 (the side that goes first alternates). With
// SLIPWAY_LARGE_FULL=1 the release side then runs a full release (canary soaked 2 s, 2 s
// verification windows) of the same services to 2.0.0 and reports it too. Reports the wall times, the events and bytes
// of the largest history (the release's own) and of all (the release and its 120 locks),
// the status query's p50 and p99 while the release runs (every 100 ms), the status answer's
// size, and the load average.
func BenchmarkRelease120(b *testing.B) {
	n := largeServices()
	for i := 0; i < b.N; i++ {
		load0 := loadAvg1()
		var direct time.Duration
		var m largeRelease
		sides := []func(){
			func() {
				f := newFixture(b, 2)
				env := f.largeSpec(n, "1.1.0")
				f.largeSeed(f.largeSpec(n, "1.0.0"))
				direct = f.largeDirect(env, "1.0.0")
				f.requireLargeServes(env, "1.1.0")
			},
			func() {
				f := newFixture(b, 2)
				f.startWorker()
				env := f.largeSpec(n, "1.1.0")
				f.largeSeed(f.largeSpec(n, "1.0.0"))
				m = f.runLarge(env, "large", true)
				require.Equal(b, workflows.OutcomeSucceeded, m.st.Outcome, m.st.Reason)
				f.requireLargeServes(env, "1.1.0")
				m.log(b, fmt.Sprintf("fast-track release of %d services", n))
				if os.Getenv("SLIPWAY_LARGE_FULL") == "1" {
					full := f.runLargeFull(n)
					full.log(b, fmt.Sprintf("full release of %d services", n))
					b.ReportMetric(full.wall.Seconds(), "full-release-s")
					b.ReportMetric(float64(full.maxEvents), "full-max-events")
					b.ReportMetric(float64(full.maxBytes)/1e6, "full-max-history-MB")
					b.ReportMetric(float64(full.pct(0.99).Microseconds())/1000, "full-query-p99-ms")
				}
			},
		}
		if i%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		sides[0]()
		sides[1]()
		m.report(b)
		b.ReportMetric(direct.Seconds(), "direct-s")
		b.ReportMetric(m.wall.Seconds()/direct.Seconds(), "ratio")
		b.ReportMetric((load0+loadAvg1())/2, "load1")
	}
}

// runLargeFull releases the fixture's services from 1.1.0 to 2.0.0 with canaries and
// verification (the full path), as a second release on the same environment.
func (f *fixture) runLargeFull(n int) largeRelease {
	f.t.Helper()
	env := f.largeSpec(n, "2.0.0")
	m := f.runLarge(env, "large-full", false)
	require.Equal(f.t, workflows.OutcomeSucceeded, m.st.Outcome, m.st.Reason)
	f.requireLargeServes(env, "2.0.0")
	return m
}
