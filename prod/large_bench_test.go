package prod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkLargeRelease (issue 14): the 120-service release on the production topology (two
// Temporal server processes on PostgreSQL, two workers, two API replicas), against the same
// release on the embedded default (`slipway dev`: Temporal on SQLite, worker and API in one
// process) in the same run. Each side gets an environment of its own: 120 small services
// (SLIPWAY_LARGE_SERVICES overrides the number), 1 replica each, on cluster a (even) or b
// (odd; both on the machine's engine), in three depends_on layers, seeded at 1.0.0 directly
// through the activities (16 at a time), then released to 1.1.0 through the side's API (a
// POST of the spec; no canary, no verification: the engine work and the orchestration, not
// the soaks). While the release runs, its status is read every 200 ms (GET
// /v1/releases/{id}, alternating between the replicas: each a live query to a worker).
// Reported per side: wall time (POST to the outcome seen), the release's history (events,
// MB), the events of all its workflows (the release and its locks), status p50/p99 and the
// load average. SLIPWAY_LARGE_EMBEDDED=0 leaves the embedded side out. A worker log that
// shows the SDK's "invalid state transition" panic gets the release's history saved under
// /tmp (BENCHMARKS.md, Large releases). Run with -benchtime=1x.
func BenchmarkLargeRelease(b *testing.B) {
	testenv.DemoImages(b)
	testenv.RequirePostgres(b)
	n := largeServices()
	envCluster := testenv.UniqueEnv(b)
	withEmbedded := os.Getenv("SLIPWAY_LARGE_EMBEDDED") != "0"
	envEmbedded := ""
	if withEmbedded {
		envEmbedded = testenv.UniqueEnv(b)
	}
	p := newTopology(b, envCluster)
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	p.checkCluster(ctx)

	type side struct {
		name string
		env  string
		apis []*apiclient.Client
		tc   func() (client.Client, error)
		logs []string // the worker logs
	}
	sides := []side{{
		name: "cluster", env: envCluster, apis: p.api[:],
		tc: func() (client.Client, error) { return p.temporal(ctx, 0) },
		logs: []string{
			filepath.Join(p.dir, "state", "log", "worker-1.log"),
			filepath.Join(p.dir, "state", "log", "worker-2.log"),
		},
	}}
	if withEmbedded {
		b.Cleanup(func() { removeEnvironment(b, envEmbedded) }) // after the embedded side stopped
		bin := filepath.Join(p.dir, "bin", "slipway")
		if v := os.Getenv("SLIPWAY_PROD_BIN"); v != "" {
			bin = filepath.Join(v, "slipway")
		}
		devTemporal, devAPI := freePort(b), freePort(b)
		spawn(b, p.dir, "dev", bin, "dev", "--data-dir", filepath.Join(p.dir, "dev"), "--temporal-port", strconv.Itoa(devTemporal),
			"--ui-port", "-1", "--api-addr", fmt.Sprintf("127.0.0.1:%d", devAPI), "--deployments", filepath.Join(p.dir, "deployments"),
			"--tokens-file", filepath.Join(p.dir, "state", "tokens.yaml"), "--secrets-dir", "")
		url := fmt.Sprintf("http://127.0.0.1:%d", devAPI)
		waitReady(b, url, "/readyz")
		api := apiclient.New(url, p.token)
		api.Timeout = 30 * time.Second
		var once sync.Once
		var dc client.Client
		var derr error
		b.Cleanup(func() {
			if dc != nil {
				dc.Close()
			}
		})
		sides = append(sides, side{
			name: "embedded", env: envEmbedded, apis: []*apiclient.Client{api},
			tc: func() (client.Client, error) {
				once.Do(func() {
					dc, derr = client.DialContext(ctx, client.Options{HostPort: fmt.Sprintf("127.0.0.1:%d", devTemporal)})
				})
				return dc, derr
			},
			logs: []string{filepath.Join(p.dir, "dev.log")},
		})
	}

	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		if it > 0 {
			b.Fatal("run it once (-benchtime=1x): each iteration would need environments of its own")
		}
		res := map[string]largeRelease{}
		for _, sd := range sides {
			seedLarge(ctx, b, sd.env, n)
			load0 := testenv.LoadAverage(b)
			m := releaseLarge(ctx, b, sd.apis, sd.tc, sd.env, n)
			m.load = (load0 + testenv.LoadAverage(b)) / 2
			res[sd.name] = m
			b.Logf("%s: release of %d services %s (%s) in %s; release history %d events, %.2f MB; %d workflows, %d events in all (%.2f MB); status p50 %s p99 %s (%d reads, %d failed); load %.1f",
				sd.name, n, m.rel.ID, m.outcome, m.wall.Round(100*time.Millisecond), m.events, float64(m.bytes)/1e6, m.workflows,
				m.allEvents, float64(m.allBytes)/1e6, m.pct(50).Round(time.Millisecond), m.pct(99).Round(time.Millisecond), len(m.lat), m.failed, m.load)
			saveOnPanic(ctx, b, sd.tc, sd.logs, m.rel.ID)
			if m.outcome != workflows.OutcomeSucceeded {
				b.Errorf("%s: release %s ended %s: %s", sd.name, m.rel.ID, m.outcome, m.reason)
				continue
			}
			requireServing(ctx, b, sd.env, n, "1.1.0")
			b.ReportMetric(m.wall.Seconds(), sd.name+"-release-s")
			b.ReportMetric(float64(m.events), sd.name+"-release-events")
			b.ReportMetric(float64(m.bytes)/1e6, sd.name+"-release-MB")
			b.ReportMetric(float64(m.allEvents), sd.name+"-all-events")
			b.ReportMetric(ms(m.pct(50)), sd.name+"-status-p50-ms")
			b.ReportMetric(ms(m.pct(99)), sd.name+"-status-p99-ms")
			b.ReportMetric(m.load, sd.name+"-load1")
		}
		if c, e := res["cluster"], res["embedded"]; c.wall > 0 && e.wall > 0 {
			b.ReportMetric(c.wall.Seconds()/e.wall.Seconds(), "release-cluster/embedded")
		}
	}
}

// largeServices is the size of the large release (SLIPWAY_LARGE_SERVICES overrides 120).
func largeServices() int {
	if v, err := strconv.Atoi(os.Getenv("SLIPWAY_LARGE_SERVICES")); err == nil && v > 0 {
		return v
	}
	return 120
}

func largeName(i int) string { return fmt.Sprintf("svc-%03d", i) }

// largeSpecYAML is the environment of n services at version (as e2e/large_bench_test.go):
// service i on cluster a (even i, wave 1) or b (odd, wave 2), 1 replica, three depends_on
// layers (a fifth are bases, two fifths depend on a base, the rest on one of those); no
// canary, no verification, no bake.
func largeSpecYAML(env string, n int, version string) string {
	base, mid := n/5, n/5+2*n/5
	var b strings.Builder
	fmt.Fprintf(&b, "environment: %s\nclusters:\n", env)
	for i, c := range clusters {
		fmt.Fprintf(&b, "  - name: %s\n    wave: %d\n", c, i+1)
	}
	b.WriteString(`defaults:
  replicas: 1
  health: {http_path: /healthz, interval: 250ms, timeout: 1s, retries: 3, deadline: 60s}
  canary: {skip: true}
  verification: {skip: true, bake: 0s}
services:
`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: %s\n    image: slipway/demo\n    version: %q\n    port: 8080\n    stop_grace: 2s\n    clusters: [%s]\n",
			largeName(i), version, clusters[i%len(clusters)])
		switch {
		case i >= mid:
			fmt.Fprintf(&b, "    depends_on: [%s]\n", largeName(base+(i-mid)%(mid-base)))
		case i >= base:
			fmt.Fprintf(&b, "    depends_on: [%s]\n", largeName((i-base)%base))
		}
	}
	return b.String()
}

// seedLarge makes every service of env serve 1.0.0 (1 replica on its cluster) without a
// release, 16 at a time, through the real activities; each start is tried up to 3 times (a
// loaded engine can outlast a call's timeout).
func seedLarge(ctx context.Context, b *testing.B, env string, n int) {
	b.Helper()
	s, err := spec.Parse(env+".yaml", []byte(largeSpecYAML(env, n, "1.0.0")))
	if err != nil {
		b.Fatal(err)
	}
	d := dockerengine.NewDialer(dockerengine.Options{})
	defer func() { _ = d.Close() }()
	a := activities.New(d, activities.Options{})
	targets := map[string]workflows.Target{}
	for _, c := range s.Clusters {
		targets[c.Name] = workflows.TargetOf(env, c)
		if err := a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: targets[c.Name]}); err != nil {
			b.Fatal(err)
		}
	}
	began := time.Now()
	sem := make(chan struct{}, 16)
	errs := make([]error, len(s.Services))
	var wg sync.WaitGroup
	for i, svc := range s.Services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			for attempt := 0; attempt < 3; attempt++ {
				_, errs[i] = a.StartReplicas(ctx, workflows.StartReplicasInput{Target: targets[svc.Clusters[0]], Release: "seed",
					Role: engine.RoleStable, Service: svc, Slots: []int{0}, Attach: true, HealthDeadline: svc.Health.Deadline.D()})
				if errs[i] == nil {
					return
				}
				time.Sleep(500 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatalf("seed %s: %v", env, err)
	}
	b.Logf("seeded %s: %d services at 1.0.0 in %s", env, n, time.Since(began).Round(100*time.Millisecond))
}

// largeRelease is what one large release measured.
type largeRelease struct {
	rel           *apiclient.Release
	outcome       workflows.Outcome
	reason        string
	wall          time.Duration
	events, bytes int // the release's history
	workflows     int // the release and its locks
	allEvents     int
	allBytes      int
	lat           []time.Duration // the status reads that answered, sorted
	failed        int
	load          float64
}

func (m largeRelease) pct(p int) time.Duration {
	if len(m.lat) == 0 {
		return 0
	}
	return pctl(m.lat, p)
}

// releaseLarge POSTs the release of env's n services to 1.1.0 (to the first API, the other
// when it does not answer), reads its status every 200 ms through the APIs in turn until it
// has ended, and measures it and its workflows' histories.
func releaseLarge(ctx context.Context, b *testing.B, apis []*apiclient.Client, tc func() (client.Client, error), env string, n int) largeRelease {
	b.Helper()
	var m largeRelease
	t0 := time.Now()
	req := apiclient.StartRequest{Spec: []byte(largeSpecYAML(env, n, "1.1.0")), SpecName: env + ".yaml", IdempotencyKey: "large-" + env}
	for i := 0; ; i++ {
		rel, err := apis[i%len(apis)].StartRelease(ctx, req)
		if err == nil {
			m.rel = rel
			break
		}
		if !retryable(err) || time.Since(t0) > 2*time.Minute {
			b.Fatalf("start the release of %s: %v", env, err)
		}
		time.Sleep(time.Second)
	}
	deadline := t0.Add(40 * time.Minute)
	for i := 0; ; i++ {
		q0 := time.Now()
		rel, err := apis[i%len(apis)].GetRelease(ctx, m.rel.ID, 0)
		if err != nil {
			m.failed++
			if !retryable(err) {
				b.Fatalf("release %s: %v", m.rel.ID, err)
			}
		} else {
			m.lat = append(m.lat, time.Since(q0))
			if !rel.Running && rel.Outcome != "" {
				m.wall = time.Since(t0)
				m.outcome, m.reason = rel.Outcome, rel.Reason
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("release %s did not end within %s (last error %v)", m.rel.ID, time.Since(t0).Round(time.Second), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(m.lat, func(i, j int) bool { return m.lat[i] < m.lat[j] })

	c, err := tc()
	if err != nil {
		b.Fatal(err)
	}
	ids := []string{m.rel.ID}
	for i := 0; i < n; i++ {
		ids = append(ids, workflows.LockWorkflowID(env, largeName(i)))
	}
	for k, wid := range ids {
		h, err := history(ctx, c, wid)
		if err != nil {
			b.Errorf("history of %s: %v", wid, err)
			continue
		}
		size := 0
		for _, ev := range h.GetEvents() {
			size += proto.Size(ev)
		}
		if k == 0 {
			m.events, m.bytes = len(h.GetEvents()), size
		}
		m.workflows++
		m.allEvents += len(h.GetEvents())
		m.allBytes += size
	}
	return m
}

// history reads a workflow's whole history (its latest run).
func history(ctx context.Context, c client.Client, wid string) (*historypb.History, error) {
	h := &historypb.History{}
	it := c.GetWorkflowHistory(ctx, wid, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return nil, err
		}
		h.Events = append(h.Events, ev)
	}
	return h, nil
}

// saveOnPanic: when a worker log shows the SDK's "invalid state transition" panic, the
// release's history goes to /tmp (JSON, as `temporal workflow show --output json` writes it)
// with the log lines, for the diagnosis.
func saveOnPanic(ctx context.Context, b *testing.B, tc func() (client.Client, error), logs []string, wid string) {
	var lines []string
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			b.Logf("worker log %s: %v", l, err)
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "invalid state transition") {
				lines = append(lines, filepath.Base(l)+": "+line)
			}
		}
	}
	if len(lines) == 0 {
		b.Logf("no \"invalid state transition\" in the worker logs %v", logs)
		return
	}
	c, err := tc()
	if err != nil {
		b.Errorf("the SDK panicked (%d log lines) but no client to save the history: %v", len(lines), err)
		return
	}
	h, err := history(ctx, c, wid)
	if err != nil {
		b.Errorf("the SDK panicked (%d log lines) but the history of %s is unreadable: %v", len(lines), wid, err)
		return
	}
	data, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		b.Error(err)
		return
	}
	out := filepath.Join(os.TempDir(), "slipway-panic-"+wid+".json")
	if err := os.WriteFile(out, data, 0o644); err != nil {
		b.Error(err)
		return
	}
	if err := os.WriteFile(strings.TrimSuffix(out, ".json")+".log", []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		b.Error(err)
	}
	b.Logf("the SDK's \"invalid state transition\" panic appears %d times in the worker logs; history of %s saved in %s", len(lines), wid, out)
}

// requireServing: every service of env runs exactly one replica, at version (docker's view).
func requireServing(ctx context.Context, b *testing.B, env string, n int, version string) {
	out, err := exec.CommandContext(ctx, "docker", "ps", "--filter", "label="+engine.LabelEnvironment+"="+env,
		"--format", `{{.Label "`+engine.LabelService+`"}} {{.Label "`+engine.LabelVersion+`"}}`).Output()
	if err != nil {
		b.Fatalf("docker ps: %v", err)
	}
	running := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if svc, v, ok := strings.Cut(line, " "); ok && strings.HasPrefix(svc, "svc-") {
			running[svc] = append(running[svc], v)
		}
	}
	for i := 0; i < n; i++ {
		if got := running[largeName(i)]; len(got) != 1 || got[0] != version {
			b.Errorf("%s runs %v, want [%s]", largeName(i), got, version)
		}
	}
}
