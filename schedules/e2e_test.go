package schedules_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/schedules"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// startWorker runs a real worker on the embedded server with the LoadTest workflow, the
// release lock and the real load-test activities on the real Docker engine.
func startWorker(t *testing.T, c client.Client, queue string) *dockerengine.Dialer {
	t.Helper()
	d := dockerengine.NewDialer(dockerengine.Options{})
	w := sdkworker.New(c, queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(workflows.ReleaseLock, workflow.RegisterOptions{Name: workflows.LockWorkflowName})
	workflows.RegisterLoadTest(w)
	activities.RegisterLoadTest(w, activities.NewLoadTest(d, activities.LoadTestOptions{HeartbeatEvery: 500 * time.Millisecond}))
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() {
		w.Stop()
		_ = d.Close()
	})
	return d
}

// deploy runs the spec's services on the default engine (cluster a) through the real
// StartReplicas activity, in traffic, and removes every container and the network of the
// environment when the test ends.
func deploy(t *testing.T, d engine.Dialer, env *spec.Environment) {
	t.Helper()
	tgt := workflows.TargetOf(env.Environment, env.Clusters[0])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e, err := dockerengine.New(engine.Endpoint{Cluster: tgt.Cluster}, dockerengine.Options{})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer func() { _ = e.Close() }()
		list, err := e.List(ctx, engine.Selector{Environment: env.Environment})
		if err != nil {
			t.Errorf("cleanup: %v", err)
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
	a := activities.New(d, activities.Options{})
	ctx := ctxT(t, 2*time.Minute)
	if err := a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tgt}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, len(env.Services))
	done := make(chan int)
	for i, s := range env.Services {
		go func() {
			var slots []int
			for j := 0; j < s.Replicas; j++ {
				slots = append(slots, j)
			}
			_, errs[i] = a.StartReplicas(ctx, workflows.StartReplicasInput{
				Target: tgt, Release: "r0", Role: engine.RoleStable, Service: s, Slots: slots, Attach: true, HealthDeadline: 30 * time.Second,
			})
			done <- i
		}()
	}
	for range env.Services {
		<-done
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("deploy: %v", err)
	}
}

// containers lists the environment's containers by service.
func containers(t *testing.T, d engine.Dialer, env string) map[string][]engine.Container {
	t.Helper()
	e, err := d.Dial(context.Background(), engine.Endpoint{Cluster: "a"})
	if err != nil {
		t.Fatal(err)
	}
	list, err := e.List(ctxT(t, 30*time.Second), engine.Selector{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]engine.Container{}
	for _, c := range list {
		out[c.Service] = append(out[c.Service], c)
	}
	return out
}

func run(t *testing.T, c client.Client, env *spec.Environment, test, id string) (workflows.LoadTestResult, error) {
	t.Helper()
	in, err := workflows.LoadTestInputFor(env, test, workflows.LoadTestManual)
	if err != nil {
		t.Fatal(err)
	}
	in.TriggeredBy = "e2e test"
	ctx := ctxT(t, 3*time.Minute)
	wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.LoadTestWorkflowID(env.Environment, test, id), TaskQueue: workflows.TaskQueue,
	}, workflows.LoadTestWorkflowName, in)
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.LoadTestResult
	err = wr.Get(ctx, &res)
	return res, err
}

func slo(res workflows.LoadTestResult, name string) workflows.SLOCheck {
	for _, c := range res.SLOs {
		if c.Name == name {
			return c
		}
	}
	return workflows.SLOCheck{Name: name + " (missing)"}
}

// waitVisible waits until visibility finds n workflows for query.
func waitVisible(t *testing.T, c client.Client, query string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.ListWorkflow(ctxT(t, 10*time.Second), &workflowservice.ListWorkflowExecutionsRequest{Query: query})
		if err == nil && len(resp.Executions) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("visibility: %d workflows for %q (err %v), want %d", len(resp.GetExecutions()), query, err, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const e2eSpec = `
environment: %s
clusters:
  - name: a
defaults:
  health: {http_path: /healthz, interval: 200ms, timeout: 1s, retries: 3, deadline: 30s}
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
    replicas: 2
  - name: slow
    image: slipway/demo
    version: bad-latency
    port: 8080
  - name: flaky
    image: slipway/demo
    version: bad-errors
    port: 8080
load_tests:
  - name: peak
    service: web
    rate: 100
    warm_up: 1s
    duration: 3s
    scale_factor: 2
    schedule: "0 3 * * *"
    requests:
      - {path: /, expect_status: 200, headers: {X-Load-Test: peak}}
    slo: {p50: 50ms, p95: 100ms, max_error_rate: 0.01, min_throughput: 80}
  - name: slow
    service: slow
    rate: 40
    warm_up: 500ms
    duration: 2s
    requests: [{path: /}]
    slo: {p95: 100ms, max_error_rate: 0.01}
  - name: flaky
    service: flaky
    rate: 40
    warm_up: 500ms
    duration: 2s
    requests: [{path: /}]
    slo: {p95: 100ms, max_error_rate: 0.01}
`

// TestLoadTestsOnDemoContainers runs the LoadTest workflow on the embedded Temporal server
// with a real worker against demo-service containers on the real engine: the healthy
// version passes its SLOs (scaled out ×2 during the load and back after), the one with
// +300 ms fails p95 with the latency in the result, the one with 50 % 500s fails the error
// rate with the status codes in the result; a second run is compared with the first; the
// schedule synced from the spec starts a run that passes.
func TestLoadTestsOnDemoContainers(t *testing.T) {
	testenv.DemoImages(t)
	envName := testenv.UniqueEnv(t)
	c := temporalClient(t)
	d := startWorker(t, c, workflows.TaskQueue)
	env := parse0(t, fmt.Sprintf(e2eSpec, envName))
	deploy(t, d, env)
	t.Cleanup(func() { _, _ = schedules.Delete(context.Background(), c, envName, "") })

	// Healthy: passes, with the load spread over 4 replicas (2 × scale factor 2).
	res, err := run(t, c, env, "peak", "1")
	if err != nil {
		t.Fatalf("peak: %v", err)
	}
	if res.Outcome != workflows.LoadTestPassed {
		t.Fatalf("peak: outcome %s: %s (metrics %+v)", res.Outcome, res.Reason, res.Metrics)
	}
	m := res.Metrics
	if len(m.Targets) != 4 || m.Errors != 0 || m.StatusCodes["200"] != m.Requests || m.Requests < 250 {
		t.Errorf("peak metrics: %+v; want ~300 requests over 4 replicas, all 200", m)
	}
	if len(res.Scale) != 1 || res.Scale[0].Base != 2 || res.Scale[0].Peak != 4 || res.Scale[0].Total != 2 || res.Version != "1.0.0" {
		t.Errorf("peak scale: %+v version %q; want 2 → 4 → 2 of 1.0.0", res.Scale, res.Version)
	}
	t.Logf("peak: %s — %d req at %.1f req/s over %d replicas, p50 %s p95 %s p99 %s", res.Reason, m.Requests, m.Rate, len(m.Targets), m.P50, m.P95, m.P99)
	if res.Comparison != nil {
		t.Errorf("first run compared with %+v", res.Comparison.Previous)
	}
	left := containers(t, d, envName)
	if len(left["web"]) != 2 || slices.ContainsFunc(left["web"], func(c engine.Container) bool { return c.Role == workflows.RoleLoadTest }) {
		t.Errorf("after peak: web runs %+v; want the 2 original replicas only", left["web"])
	}
	q := fmt.Sprintf("%s = 'loadtest' AND %s = '%s' AND %s = 'passed'", workflows.SAKind, workflows.SAEnvironment, envName, workflows.SAOutcome)
	waitVisible(t, c, q, 1)

	// The second run is compared with the first.
	res2, err := run(t, c, env, "peak", "2")
	if err != nil || res2.Outcome != workflows.LoadTestPassed {
		t.Fatalf("peak again: %v %s %s", err, res2.Outcome, res2.Reason)
	}
	if res2.Comparison != nil {
		t.Logf("peak again: %s", res2.Comparison.Summary)
	}
	if res2.Comparison == nil || res2.Comparison.Previous.WorkflowID != res.WorkflowID || res2.Comparison.P95Ratio <= 0 {
		t.Errorf("second run comparison = %+v (error %q), want one with %s", res2.Comparison, res2.ComparisonError, res.WorkflowID)
	}

	// +300 ms per request: p50 and p95 fail, the numbers say by how much.
	slow, err := run(t, c, env, "slow", "1")
	if err != nil {
		t.Fatalf("slow: %v", err)
	}
	if slow.Outcome != workflows.LoadTestFailed || slow.Metrics.P50.D() < 300*time.Millisecond {
		t.Errorf("slow: outcome %s, p50 %s: want failed with p50 ≥ 300ms (%s)", slow.Outcome, slow.Metrics.P50, slow.Reason)
	}
	t.Logf("slow: %s — p50 %s p95 %s", slow.Reason, slow.Metrics.P50, slow.Metrics.P95)
	if p95 := slo(slow, "p95"); p95.Passed || p95.Actual < 300 || p95.Objective != 100 {
		t.Errorf("slow p95 check = %+v, want failed with actual ≥ 300 ms", p95)
	}
	if er := slo(slow, "error_rate"); !er.Passed || slow.Metrics.Errors != 0 {
		t.Errorf("slow error rate check = %+v (errors %d): slow is not broken", er, slow.Metrics.Errors)
	}

	// Every other request answered 500: the error rate fails at 50 %.
	flaky, err := run(t, c, env, "flaky", "1")
	if err != nil {
		t.Fatalf("flaky: %v", err)
	}
	er := slo(flaky, "error_rate")
	t.Logf("flaky: %s — codes %v", flaky.Reason, flaky.Metrics.StatusCodes)
	if flaky.Outcome != workflows.LoadTestFailed || er.Passed || er.Actual < 0.45 || er.Actual > 0.55 {
		t.Errorf("flaky: outcome %s, error rate check %+v: want failed at about 0.5", flaky.Outcome, er)
	}
	if fm := flaky.Metrics; fm.StatusCodes["500"] == 0 || fm.StatusCodes["200"] == 0 || fm.StatusCodes["500"]+fm.StatusCodes["200"] != fm.Requests {
		t.Errorf("flaky status codes %v for %d requests", fm.StatusCodes, fm.Requests)
	}
	if p95 := slo(flaky, "p95"); !p95.Passed {
		t.Errorf("flaky p95 check = %+v: flaky is fast", p95)
	}
	if !strings.Contains(flaky.Reason, "error_rate") {
		t.Errorf("flaky reason %q does not name the error rate", flaky.Reason)
	}

	// The schedule synced from the spec starts a run that passes (triggered now, not at 03:00).
	rep, err := schedules.Sync(ctxT(t, 30*time.Second), c, env)
	if err != nil || rep.Count(schedules.Created) != 1 {
		t.Fatalf("sync: %+v, %v", rep, err)
	}
	h := c.ScheduleClient().GetHandle(context.Background(), workflows.LoadTestScheduleID(envName, "peak"))
	if err := h.Trigger(ctxT(t, 10*time.Second), client.ScheduleTriggerOptions{}); err != nil {
		t.Fatal(err)
	}
	var wid string
	for deadline := time.Now().Add(30 * time.Second); wid == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		desc, err := h.Describe(ctxT(t, 10*time.Second))
		if err == nil && len(desc.Info.RecentActions) > 0 && desc.Info.RecentActions[0].StartWorkflowResult != nil {
			wid = desc.Info.RecentActions[0].StartWorkflowResult.WorkflowID
		}
	}
	if !strings.HasPrefix(wid, workflows.LoadTestScheduleID(envName, "peak")) {
		t.Fatalf("scheduled run workflow ID %q", wid)
	}
	var sres workflows.LoadTestResult
	if err := c.GetWorkflow(ctxT(t, 2*time.Minute), wid, "").Get(ctxT(t, 2*time.Minute), &sres); err != nil {
		t.Fatalf("scheduled run: %v", err)
	}
	if sres.Outcome != workflows.LoadTestPassed || sres.Mode != workflows.LoadTestScheduled || sres.Comparison == nil {
		t.Errorf("scheduled run: %s %s mode %s comparison %+v", sres.Outcome, sres.Reason, sres.Mode, sres.Comparison)
	}
}

// TestLoadTestCancelScalesBack cancels a load test in the middle of its load on the real
// stack: the workflow ends cancelled and the extra replicas are gone.
func TestLoadTestCancelScalesBack(t *testing.T) {
	testenv.DemoImages(t)
	envName := testenv.UniqueEnv(t)
	c := temporalClient(t)
	queue := "cancel-" + envName
	d := startWorker(t, c, queue)
	env := parse0(t, fmt.Sprintf(`
environment: %s
clusters:
  - name: a
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
    health: {http_path: /healthz, interval: 200ms, deadline: 30s}
load_tests:
  - name: long
    service: web
    rate: 20
    duration: 5m
    scale_factor: 3
`, envName))
	deploy(t, d, env)
	in, err := workflows.LoadTestInputFor(env, "long", workflows.LoadTestManual)
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 2*time.Minute)
	wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.LoadTestWorkflowID(envName, "long", "1"), TaskQueue: queue}, workflows.LoadTestWorkflowName, in)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		v, err := c.QueryWorkflow(ctx, wr.GetID(), "", workflows.QueryStatus)
		var st workflows.LoadTestStatus
		if err == nil && v.Get(&st) == nil && st.Phase == workflows.LoadTestPhaseLoad {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load never started (last status %+v, %v)", st, err)
		}
	}
	if n := len(containers(t, d, envName)["web"]); n != 3 {
		t.Fatalf("during the load web runs %d replicas, want 3", n)
	}
	time.Sleep(time.Second)
	if err := c.CancelWorkflow(ctx, wr.GetID(), ""); err != nil {
		t.Fatal(err)
	}
	err = wr.Get(ctx, nil)
	var ce *temporal.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("result after cancel: %v, want cancelled", err)
	}
	left := containers(t, d, envName)["web"]
	if len(left) != 1 || left[0].Role == workflows.RoleLoadTest {
		t.Errorf("after cancel web runs %+v, want the original replica only", left)
	}
	desc, err := c.DescribeWorkflowExecution(ctx, wr.GetID(), "")
	if err != nil || desc.WorkflowExecutionInfo.Status != enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED {
		t.Errorf("status after cancel: %v, %v", desc.GetWorkflowExecutionInfo().GetStatus(), err)
	}
}

// TestLoadTestRefusedDuringRelease: while a release holds the service's lock, a load test
// does not run (outcome refused) and touches nothing.
func TestLoadTestRefusedDuringRelease(t *testing.T) {
	c := temporalClient(t)
	queue := fmt.Sprintf("refuse-%d", time.Now().UnixNano())
	startWorker(t, c, queue)
	envName := fmt.Sprintf("refuse-%d", time.Now().UnixNano()%1e6)
	env := parse0(t, fmt.Sprintf(`
environment: %s
clusters:
  - name: a
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
load_tests:
  - name: peak
    service: web
    rate: 10
    duration: 1s
    scale_factor: 2
`, envName))
	ctx := ctxT(t, time.Minute)
	lock, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.LockWorkflowID(envName, "web"), TaskQueue: queue},
		workflows.LockWorkflowName, workflows.LockInput{Environment: envName, Service: "web", ReleaseID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.CancelWorkflow(context.Background(), lock.GetID(), "") })
	in, _ := workflows.LoadTestInputFor(env, "peak", workflows.LoadTestManual)
	wr, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflows.LoadTestWorkflowID(envName, "peak", "1"), TaskQueue: queue}, workflows.LoadTestWorkflowName, in)
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.LoadTestResult
	if err := wr.Get(ctx, &res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != workflows.LoadTestRefused || !strings.Contains(res.Reason, "being released") || res.Metrics != nil || len(res.Scale) != 0 {
		t.Errorf("result while the release lock is held: %+v", res)
	}
}

func parse0(t *testing.T, src string) *spec.Environment {
	t.Helper()
	e, err := spec.Parse("e2e.yaml", []byte(src))
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return e
}
