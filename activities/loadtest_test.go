package activities

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

func ltCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// ltDeploy runs n replicas of the demo image tag as service web of env on the default
// engine (cluster "a"), in traffic, through the real StartReplicas activity, and removes
// every container and the network of env at the end.
func ltDeploy(t testing.TB, d engine.Dialer, env, tag string, n int) (workflows.Target, spec.Service) {
	t.Helper()
	return ltDeployOn(t, d, env, "", tag, n)
}

// ltDeployOn is ltDeploy on the engine at endpoint ("" = the default one).
func ltDeployOn(t testing.TB, d engine.Dialer, env, endpoint, tag string, n int) (workflows.Target, spec.Service) {
	t.Helper()
	tgt := workflows.Target{Environment: env, Cluster: "a", Endpoint: endpoint}
	svc := spec.Service{Name: "web", Image: testenv.DemoRepository, Version: tag, Port: 8080,
		Health: &spec.Health{HTTPPath: "/healthz", Interval: spec.Duration(200 * time.Millisecond), Timeout: spec.Duration(time.Second), Retries: 3, Deadline: spec.Duration(30 * time.Second)}}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e, err := dockerengine.New(tgt.EngineEndpoint(), dockerengine.Options{})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer func() { _ = e.Close() }()
		list, err := e.List(ctx, engine.Selector{Environment: env})
		if err != nil {
			t.Errorf("cleanup: list: %v", err)
		}
		for _, c := range list {
			if err := e.Remove(ctx, c.Name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := e.RemoveNetwork(ctx, tgt.Network()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	base := New(d, Options{})
	ctx := ltCtx(t, 2*time.Minute)
	if err := base.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tgt}); err != nil {
		t.Fatal(err)
	}
	var slots []int
	for i := 0; i < n; i++ {
		slots = append(slots, i)
	}
	if _, err := base.StartReplicas(ctx, workflows.StartReplicasInput{
		Target: tgt, Release: "r0", Role: engine.RoleStable, Service: svc, Slots: slots, Attach: true, HealthDeadline: 30 * time.Second,
	}); err != nil {
		t.Fatalf("start %d replicas of %s: %v", n, tag, err)
	}
	return tgt, svc
}

func ltList(t *testing.T, d engine.Dialer, env string) []engine.Container {
	t.Helper()
	e, err := d.Dial(context.Background(), engine.Endpoint{Cluster: "a"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.List(ltCtx(t, 30*time.Second), engine.Selector{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// TestLoadTestScaleOutLoadScaleIn runs the activities against the real engine: one replica
// of the demo service, scaled out ×3 (twice: idempotent), loaded over every replica, and
// scaled back in (twice: idempotent) to exactly the replica that was there.
func TestLoadTestScaleOutLoadScaleIn(t *testing.T) {
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	d := dockerengine.NewDialer(dockerengine.Options{})
	t.Cleanup(func() { _ = d.Close() })
	tgt, svc := ltDeploy(t, d, env, "1.0.0", 1)
	a := NewLoadTest(d, LoadTestOptions{HeartbeatEvery: 200 * time.Millisecond})
	ctx := ltCtx(t, 2*time.Minute)
	runID := "loadtest-" + env + "-peak-1"

	prep, err := a.Prepare(ctx, workflows.LoadTestPrepareInput{Environment: env, Service: "web", Targets: []workflows.Target{tgt}, Rate: 100, Duration: 2 * time.Second, ScaleFactor: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(prep.Clusters) != 1 || prep.Clusters[0].Replicas != 1 || prep.Clusters[0].Version != "1.0.0" {
		t.Fatalf("prepare = %+v, want 1 replica of 1.0.0", prep)
	}

	in := workflows.LoadTestScaleInput{Target: tgt, RunID: runID, Service: svc, Factor: 3, HealthDeadline: 30 * time.Second}
	out, err := a.ScaleOut(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if out.Base != 1 || out.Total != 3 || len(out.Containers) != 2 || out.Version != "1.0.0" {
		t.Fatalf("scale out = %+v, want 1 → 3 replicas of 1.0.0", out)
	}
	again, err := a.ScaleOut(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Containers, out.Containers) || again.Total != 3 {
		t.Fatalf("second scale out = %+v, want the same replicas %v", again, out.Containers)
	}
	var mine, serving int
	for _, c := range ltList(t, d, env) {
		if c.Running() && c.InTraffic {
			serving++
		}
		if c.Role == workflows.RoleLoadTest && c.Release == runID {
			mine++
		}
	}
	if serving != 3 || mine != 2 {
		t.Fatalf("after scale out: %d serving, %d load-test replicas; want 3 and 2", serving, mine)
	}

	m, err := a.Generate(ctx, workflows.LoadTestGenerateInput{
		Environment: env, Service: "web", Targets: []workflows.Target{tgt},
		Requests: []spec.Probe{{Path: "/", Method: "GET", ExpectStatus: 200}}, Rate: 100, WarmUp: 300 * time.Millisecond, Duration: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Targets) != 3 || m.Errors != 0 || m.Requests < 100 || m.StatusCodes["200"] != m.Requests {
		t.Fatalf("load over 3 replicas: %+v", m)
	}

	for i := 0; i < 2; i++ {
		res, err := a.ScaleIn(ctx, workflows.LoadTestScaleInput{Target: tgt, RunID: runID, Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[int]int{0: 2, 1: 0}[i]; len(res.Containers) != want || res.Total != 1 {
			t.Fatalf("scale in #%d = %+v, want %d removed and 1 left serving", i+1, res, want)
		}
	}
	left := ltList(t, d, env)
	if len(left) != 1 || left[0].Slot != 0 || left[0].Role != engine.RoleStable || !left[0].InTraffic {
		t.Fatalf("after scale in: %+v, want only the original replica, in traffic", left)
	}
	if _, err := a.ScaleIn(ctx, workflows.LoadTestScaleInput{Target: tgt, Service: svc}); !ltIsType(err, workflows.ErrBadInput) {
		t.Fatalf("scale in without a run id: err = %v, want BadInput (it must never sweep)", err)
	}
}

// TestLoadTestOnAnIsolatedEngine: the load is generated next to the replicas, so a load test
// runs on an engine whose container addresses the worker cannot reach.
func TestLoadTestOnAnIsolatedEngine(t *testing.T) {
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	d := dockerengine.NewDialer(dockerengine.Options{})
	t.Cleanup(func() { _ = d.Close() })
	tgt, _ := ltDeployOn(t, d, env, testenv.IsolatedDaemon(t), "1.0.0", 2)
	e, err := d.Dial(context.Background(), tgt.EngineEndpoint())
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.List(ltCtx(t, time.Minute), engine.Selector{Environment: env})
	if err != nil || len(list) != 2 {
		t.Fatalf("replicas: %+v, %v", list, err)
	}
	for _, c := range list {
		testenv.AssertUnreachable(t, c.Address)
	}
	a := NewLoadTest(d, LoadTestOptions{HeartbeatEvery: 200 * time.Millisecond})
	m, err := a.Generate(ltCtx(t, 2*time.Minute), workflows.LoadTestGenerateInput{
		Environment: env, Service: "web", Targets: []workflows.Target{tgt},
		Requests: []spec.Probe{{Path: "/", Method: "GET", ExpectStatus: 200}}, Rate: 200, WarmUp: 300 * time.Millisecond, Duration: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Targets) != 2 || m.Errors != 0 || m.Requests < 300 || m.StatusCodes["200"] != m.Requests {
		t.Fatalf("load over 2 replicas of an isolated engine: %+v", m)
	}
	if !strings.Contains(m.GeneratedFrom, "probe container") || m.P95 <= 0 {
		t.Fatalf("generated from %q (p95 %s): want a probe container on the engine", m.GeneratedFrom, m.P95)
	}
}

func ltIsType(err error, typ string) bool {
	var ae *temporal.ApplicationError
	return errors.As(err, &ae) && ae.Type() == typ
}

func TestLoadTestPrepareRefusals(t *testing.T) {
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	d := dockerengine.NewDialer(dockerengine.Options{})
	t.Cleanup(func() { _ = d.Close() })
	a := NewLoadTest(d, LoadTestOptions{MaxRate: 1000, MaxDuration: time.Minute})
	ctx := ltCtx(t, time.Minute)
	tgt := workflows.Target{Environment: env, Cluster: "a"}
	base := workflows.LoadTestPrepareInput{Environment: env, Service: "web", Targets: []workflows.Target{tgt}, Rate: 100, Duration: 10 * time.Second}

	over := base
	over.Rate = 1001
	if _, err := a.Prepare(ctx, over); !ltIsType(err, workflows.ErrLoadTestLimit) || !strings.Contains(err.Error(), "1000 req/s") {
		t.Errorf("rate over the cap: err = %v", err)
	}
	long := base
	long.Duration = 61 * time.Second
	if _, err := a.Prepare(ctx, long); !ltIsType(err, workflows.ErrLoadTestLimit) {
		t.Errorf("duration over the cap: err = %v", err)
	}
	// nothing runs in this environment: no target
	if _, err := a.Prepare(ctx, base); !ltIsType(err, workflows.ErrNoTargets) {
		t.Errorf("no replica: err = %v, want NoTargets", err)
	}
	ltDeploy(t, d, env, "1.0.0", 2)
	capped := base
	capped.ScaleFactor = 4
	capped.Targets = []workflows.Target{{Environment: env, Cluster: "a", Policy: spec.ClusterPolicy{MaxReplicas: 6}}}
	if _, err := a.Prepare(ctx, capped); !ltIsType(err, workflows.ErrPolicyDenied) || !strings.Contains(err.Error(), "max_replicas 6") {
		t.Errorf("scale over max_replicas: err = %v", err)
	}
	// another service's containers are never targets
	other := base
	other.Service = "api"
	if _, err := a.Prepare(ctx, other); !ltIsType(err, workflows.ErrNoTargets) {
		t.Errorf("other service: err = %v, want NoTargets", err)
	}
	// a target of another environment is refused outright
	foreign := base
	foreign.Targets = []workflows.Target{{Environment: "prod", Cluster: "a"}}
	if _, err := a.Prepare(ctx, foreign); !ltIsType(err, workflows.ErrBadInput) {
		t.Errorf("foreign target: err = %v, want BadInput", err)
	}
}

// TestGeneratorMeasures checks the generator's numbers against an in-process server on
// 127.0.0.1 whose behaviour is known: every other request fails, every request takes 20 ms.
func TestGeneratorMeasures(t *testing.T) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		if r.Header.Get("X-Team") != "platform" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if n.Add(1)%2 == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	a := NewLoadTest(nil, LoadTestOptions{HeartbeatEvery: 100 * time.Millisecond})
	var beats []workflows.LoadTestProgress
	m, err := a.runLoad(ltCtx(t, time.Minute), loadSpec{
		Addresses: []string{srv.Listener.Addr().String()},
		Requests:  []spec.Probe{{Path: "/", Method: "GET", ExpectStatus: 200, Headers: map[string]string{"X-Team": "platform"}}},
		Rate:      200, WarmUp: 500 * time.Millisecond, Duration: 2 * time.Second,
	}, func(p workflows.LoadTestProgress) { beats = append(beats, p) })
	if err != nil {
		t.Fatal(err)
	}
	if m.WarmUpRequests < 50 || m.Requests < 300 {
		t.Errorf("requests: %d measured, %d warm-up; want about 400 and 100", m.Requests, m.WarmUpRequests)
	}
	if m.ErrorRate < 0.45 || m.ErrorRate > 0.55 || m.StatusCodes["500"] == 0 || m.StatusCodes["400"] != 0 {
		t.Errorf("error rate %.3f, codes %v: want half 500s and no 400 (headers sent)", m.ErrorRate, m.StatusCodes)
	}
	if m.P50.D() < 20*time.Millisecond || m.P99 < m.P95 || m.P95 < m.P50 {
		t.Errorf("latencies p50 %s p95 %s p99 %s: want p50 ≥ 20ms and ordered", m.P50, m.P95, m.P99)
	}
	if m.Throughput <= 0 || m.Throughput > m.Rate {
		t.Errorf("throughput %.1f, rate %.1f: want 0 < throughput ≤ rate", m.Throughput, m.Rate)
	}
	if len(beats) < 5 || beats[0].Phase != "warm-up" || beats[len(beats)-1].Phase != "measuring" || beats[len(beats)-1].Requests == 0 {
		t.Errorf("heartbeats %+v: want warm-up then measuring progress", beats)
	}
}

// TestGeneratorDialsOnlyReplicas: a replica that redirects elsewhere does not move load
// there, and addresses outside the allowed networks are refused before anything is sent.
func TestGeneratorDialsOnlyReplicas(t *testing.T) {
	var elsewhere atomic.Int64
	// 127.0.0.2 is loopback too, but not a replica of the service.
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	other := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) })}}
	other.Start()
	t.Cleanup(other.Close)
	replica := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/", http.StatusFound)
	}))
	t.Cleanup(replica.Close)

	a := NewLoadTest(nil, LoadTestOptions{})
	m, err := a.runLoad(ltCtx(t, time.Minute), loadSpec{
		Addresses: []string{replica.Listener.Addr().String()}, Requests: []spec.Probe{{Path: "/", ExpectStatus: 200}},
		Rate: 50, Duration: time.Second,
	}, func(workflows.LoadTestProgress) {})
	if err != nil {
		t.Fatal(err)
	}
	if elsewhere.Load() != 0 {
		t.Errorf("%d requests followed the redirect to a non-replica", elsewhere.Load())
	}
	if m.StatusCodes["302"] != m.Requests || m.ErrorRate != 1 {
		t.Errorf("codes %v error rate %v: a 302 where 200 is expected is an error", m.StatusCodes, m.ErrorRate)
	}

	strict := NewLoadTest(nil, LoadTestOptions{Networks: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	_, err = strict.runLoad(ltCtx(t, time.Minute), loadSpec{
		Addresses: []string{replica.Listener.Addr().String()}, Requests: []spec.Probe{{Path: "/"}}, Rate: 10, Duration: time.Second,
	}, func(workflows.LoadTestProgress) {})
	if err == nil || !strings.Contains(err.Error(), "outside the networks") {
		t.Errorf("address outside the allowed networks: err = %v", err)
	}
	for _, addr := range []string{"8.8.8.8:80", "[2001:db8::1]:80", "example.com:80"} {
		if err := a.allowed(addr); err == nil {
			t.Errorf("allowed(%s) = nil, want refused", addr)
		}
	}
	for _, addr := range []string{"127.0.0.1:8080", "172.17.0.3:8080", "[::1]:80"} {
		if err := a.allowed(addr); err != nil {
			t.Errorf("allowed(%s) = %v", addr, err)
		}
	}
}

func TestGeneratorStopsOnCancel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	a := NewLoadTest(nil, LoadTestOptions{HeartbeatEvery: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var requests int64
	_, err := a.runLoad(ctx, loadSpec{
		Addresses: []string{srv.Listener.Addr().String()}, Requests: []spec.Probe{{Path: "/"}}, Rate: 100, Duration: time.Hour,
	}, func(p workflows.LoadTestProgress) {
		requests = p.Requests
		if p.Requests > 20 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v after %d requests, want context.Canceled", err, requests)
	}
}
