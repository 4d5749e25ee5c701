package workflows

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// ltFake stands in for the load-test activities: it keeps the extra replicas each run
// started per cluster, so a test can assert that nothing is left after the workflow, and
// records every call. Failures are injected per step.
type ltFake struct {
	mu        sync.Mutex
	base      map[string]int      // cluster → serving replicas
	extra     map[string][]string // cluster → load-test replicas running
	calls     []string
	metrics   LoadTestMetrics
	previous  *LoadTestSummary
	prepErr   error
	scaleErr  map[string]error // cluster → ScaleOut error (after starting one replica)
	genErr    error
	onGen     func() // called by Generate, which then waits for its cancellation
	generated []LoadTestGenerateInput
}

func newLTFake() *ltFake {
	return &ltFake{
		base:     map[string]int{"a": 2, "b": 1},
		extra:    map[string][]string{},
		scaleErr: map[string]error{},
		metrics: LoadTestMetrics{
			Requests: 1000, Errors: 2, ErrorRate: 0.002, Rate: 100, Throughput: 99.8,
			P50: spec.Duration(2 * time.Millisecond), P95: spec.Duration(5 * time.Millisecond), P99: spec.Duration(9 * time.Millisecond),
			StatusCodes: map[string]int64{"200": 998, "500": 2}, Targets: []string{"10.0.0.2:8080"},
		},
	}
}

func (f *ltFake) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

// register registers the fake activities and the workflows a load test runs (LoadTest and
// the release lock it takes) in a test environment.
func (f *ltFake) register(env *testsuite.TestWorkflowEnvironment) {
	f.registerActivities(env)
	env.RegisterWorkflowWithOptions(ReleaseLock, workflow.RegisterOptions{Name: LockWorkflowName})
	RegisterLoadTest(env)
}

// registerActivities registers the fake load-test activities (the history recorder's worker
// registers the workflows itself).
func (f *ltFake) registerActivities(r activityRegistry) {
	for name, fn := range map[string]any{
		ActivityLoadTestPrepare:  f.Prepare,
		ActivityLoadTestScaleOut: f.ScaleOut,
		ActivityLoadTestScaleIn:  f.ScaleIn,
		ActivityLoadTestGenerate: f.Generate,
		ActivityLoadTestPrevious: f.Previous,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

func (f *ltFake) Prepare(_ context.Context, in LoadTestPrepareInput) (LoadTestPrepareResult, error) {
	f.call("prepare")
	if f.prepErr != nil {
		return LoadTestPrepareResult{}, f.prepErr
	}
	var out LoadTestPrepareResult
	for _, t := range in.Targets {
		out.Clusters = append(out.Clusters, LoadTestClusterBase{Cluster: t.Cluster, Version: "1.0.0", Replicas: f.base[t.Cluster]})
	}
	return out, nil
}

func (f *ltFake) ScaleOut(_ context.Context, in LoadTestScaleInput) (LoadTestScaleResult, error) {
	f.call("scale-out " + in.Target.Cluster)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.base[in.Target.Cluster]*in.Factor - f.base[in.Target.Cluster]
	if err := f.scaleErr[in.Target.Cluster]; err != nil {
		// a half-done scale-out: one replica started before the failure
		f.extra[in.Target.Cluster] = []string{in.RunID + "/0"}
		return LoadTestScaleResult{}, err
	}
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("%s/%d", in.RunID, i))
	}
	f.extra[in.Target.Cluster] = names
	return LoadTestScaleResult{Cluster: in.Target.Cluster, Version: "1.0.0", Base: f.base[in.Target.Cluster], Total: f.base[in.Target.Cluster] + n, Containers: names}, nil
}

func (f *ltFake) ScaleIn(_ context.Context, in LoadTestScaleInput) (LoadTestScaleResult, error) {
	f.call("scale-in " + in.Target.Cluster)
	if in.RunID == "" {
		return LoadTestScaleResult{}, errors.New("scale in without a run id")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	removed := f.extra[in.Target.Cluster]
	delete(f.extra, in.Target.Cluster)
	return LoadTestScaleResult{Cluster: in.Target.Cluster, Base: f.base[in.Target.Cluster], Total: f.base[in.Target.Cluster], Containers: removed}, nil
}

func (f *ltFake) Generate(ctx context.Context, in LoadTestGenerateInput) (LoadTestMetrics, error) {
	f.call("generate")
	f.mu.Lock()
	f.generated = append(f.generated, in)
	f.mu.Unlock()
	if f.onGen != nil {
		f.onGen()
		select {
		case <-ctx.Done():
			return LoadTestMetrics{}, ctx.Err()
		case <-time.After(2 * time.Second):
			return LoadTestMetrics{}, errors.New("the generator was not cancelled")
		}
	}
	if f.genErr != nil {
		return LoadTestMetrics{}, f.genErr
	}
	return f.metrics, nil
}

func (f *ltFake) Previous(_ context.Context, _ LoadTestPreviousInput) (*LoadTestSummary, error) {
	f.call("previous")
	return f.previous, nil
}

func (f *ltFake) left() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, names := range f.extra {
		n += len(names)
	}
	return n
}

func (f *ltFake) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func ltInput() LoadTestInput {
	return LoadTestInput{
		Environment: "staging",
		Test: spec.LoadTest{
			Name: "peak", Service: "web", Rate: 100, Duration: spec.Duration(30 * time.Second), WarmUp: spec.Duration(5 * time.Second),
			ScaleFactor: 2, Requests: []spec.Probe{{Path: "/", Method: "GET", ExpectStatus: 200}},
			SLO: spec.SLOs{P95: spec.Duration(50 * time.Millisecond), MaxErrorRate: 0.01, MinThroughput: 90},
		},
		Service: spec.Service{Name: "web", Image: "slipway/demo", Version: "1.0.0", Port: 8080},
		Targets: []Target{{Environment: "staging", Cluster: "a"}, {Environment: "staging", Cluster: "b"}},
		Mode:    LoadTestScheduled,
	}
}

func newLTEnv(t *testing.T, f *ltFake) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDetachedChildWait(false) // a lock held after a failed rollback outlives its release
	f.register(env)
	return env
}

func TestLoadTestPassesAndScalesBack(t *testing.T) {
	f := newLTFake()
	f.previous = &LoadTestSummary{WorkflowID: "loadtest-staging-peak-1", Test: "staging/peak", Mode: LoadTestScheduled, Outcome: LoadTestPassed,
		Requests: 900, P95: spec.Duration(4 * time.Millisecond), Throughput: 100, ErrorRate: 0}
	env := newLTEnv(t, f)
	var memo map[string]any
	var outcomes []string
	env.OnUpsertMemo(mock.Anything).Return(nil).Run(func(args mock.Arguments) { memo = args.Get(0).(map[string]any) })
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		if v, ok := sa.GetKeyword(saKind); !ok || v != KindLoadTest {
			t.Errorf("upsert without %s=%s", SAKind, KindLoadTest)
		}
		v, _ := sa.GetKeyword(saOutcome)
		outcomes = append(outcomes, v)
	})
	env.ExecuteWorkflow(LoadTestWorkflowName, ltInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var res LoadTestResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != LoadTestPassed {
		t.Fatalf("outcome %q (%s), want passed", res.Outcome, res.Reason)
	}
	if got := f.count("scale-out"); got != 2 {
		t.Errorf("scale-out calls = %d, want 2 (one per cluster)", got)
	}
	if got := f.count("scale-in"); got != 2 {
		t.Errorf("scale-in calls = %d, want 2", got)
	}
	if n := f.left(); n != 0 {
		t.Errorf("%d load-test replicas left after the workflow", n)
	}
	if len(res.SLOs) != 3 {
		t.Fatalf("SLO checks = %+v, want p95, error_rate, min_throughput", res.SLOs)
	}
	if res.Comparison == nil || res.Comparison.P95Ratio != 1.25 {
		t.Errorf("comparison = %+v, want p95 ratio 1.25 (5ms vs 4ms)", res.Comparison)
	}
	if res.Version != "1.0.0" || len(res.Scale) != 2 || res.Scale[0].Total != res.Scale[0].Base || res.Scale[0].Peak != 2*res.Scale[0].Base {
		t.Errorf("scale = %+v version %q: want both clusters back at their base", res.Scale, res.Version)
	}
	if f.generated[0].WarmUp != 5*time.Second || f.generated[0].Duration != 30*time.Second || f.generated[0].Rate != 100 {
		t.Errorf("generate input = %+v", f.generated[0])
	}
	if len(outcomes) == 0 || outcomes[0] != "running" || outcomes[len(outcomes)-1] != string(LoadTestPassed) {
		t.Errorf("%s upserts = %v, want running … passed", SAOutcome, outcomes)
	}
	s, ok := memo[MemoLoadTest].(LoadTestSummary)
	if !ok || s.Outcome != LoadTestPassed || s.Test != "staging/peak" || s.Requests != 1000 {
		t.Errorf("memo %s = %#v", MemoLoadTest, memo[MemoLoadTest])
	}
}

func TestLoadTestMissedSLOsIsAResultNotAnError(t *testing.T) {
	f := newLTFake()
	f.metrics.P95 = spec.Duration(310 * time.Millisecond)
	f.metrics.ErrorRate, f.metrics.Errors = 0.5, 500
	f.metrics.Throughput = 50
	env := newLTEnv(t, f)
	env.ExecuteWorkflow(LoadTestWorkflowName, ltInput())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var res LoadTestResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != LoadTestFailed {
		t.Fatalf("outcome %q, want failed", res.Outcome)
	}
	failed := map[string]SLOCheck{}
	for _, c := range res.SLOs {
		if !c.Passed {
			failed[c.Name] = c
		}
	}
	if len(failed) != 3 || failed["p95"].Actual != 310 || failed["error_rate"].Actual != 0.5 || failed["min_throughput"].Actual != 50 {
		t.Errorf("failed SLOs = %+v", failed)
	}
	if !strings.Contains(res.Reason, "3 of 3 SLOs missed") {
		t.Errorf("reason %q", res.Reason)
	}
	if n := f.left(); n != 0 {
		t.Errorf("%d load-test replicas left", n)
	}
}

func TestLoadTestScalesBackWhenTheLoadFails(t *testing.T) {
	f := newLTFake()
	f.genErr = temporal.NewNonRetryableApplicationError("no replica", ErrNoTargets, nil)
	env := newLTEnv(t, f)
	env.ExecuteWorkflow(LoadTestWorkflowName, ltInput())
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "no replica") {
		t.Fatalf("workflow error = %v, want the generator's", err)
	}
	if got := f.count("scale-in"); got != 2 {
		t.Errorf("scale-in calls = %d, want 2", got)
	}
	if n := f.left(); n != 0 {
		t.Errorf("%d load-test replicas left after a failed load", n)
	}
}

func TestLoadTestScalesBackAfterAHalfDoneScaleOut(t *testing.T) {
	f := newLTFake()
	f.scaleErr["b"] = temporal.NewNonRetryableApplicationError("replica unhealthy", ErrUnhealthy, nil)
	env := newLTEnv(t, f)
	env.ExecuteWorkflow(LoadTestWorkflowName, ltInput())
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "scale out on b") {
		t.Fatalf("workflow error = %v, want the scale-out failure on b", err)
	}
	if got := f.count("generate"); got != 0 {
		t.Errorf("generate ran %d times after a failed scale-out", got)
	}
	if got := f.count("scale-in"); got != 2 {
		t.Errorf("scale-in calls = %d, want both clusters", got)
	}
	if n := f.left(); n != 0 {
		t.Errorf("%d load-test replicas left", n)
	}
}

func TestLoadTestScalesBackWhenCancelled(t *testing.T) {
	f := newLTFake()
	env := newLTEnv(t, f)
	f.onGen = func() {
		if f.left() == 0 {
			t.Errorf("load started before the scale-out: calls %v", f.calls)
		}
		env.CancelWorkflow()
	}
	env.ExecuteWorkflow(LoadTestWorkflowName, ltInput())
	err := env.GetWorkflowError()
	var ce *temporal.CanceledError
	if !errors.As(err, &ce) {
		t.Fatalf("workflow error = %v, want cancelled", err)
	}
	if got := f.count("scale-in"); got != 2 {
		t.Errorf("scale-in calls = %d, want 2", got)
	}
	if n := f.left(); n != 0 {
		t.Errorf("%d load-test replicas left after a cancel", n)
	}
}

func TestLoadTestRefusesAboveLimitWithoutScaling(t *testing.T) {
	f := newLTFake()
	f.prepErr = temporal.NewNonRetryableApplicationError("rate 8000 req/s is above this worker's cap", ErrLoadTestLimit, nil)
	env := newLTEnv(t, f)
	env.ExecuteWorkflow(LoadTestWorkflowName, ltInput())
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "cap") {
		t.Fatalf("workflow error = %v", err)
	}
	if f.count("prepare") != 1 {
		t.Errorf("prepare retried a permanent error: calls %v", f.calls)
	}
	if f.count("scale-") != 0 || f.count("generate") != 0 {
		t.Errorf("calls after a refused prepare: %v", f.calls)
	}
}

func TestLoadTestBadInputFailsAtOnce(t *testing.T) {
	f := newLTFake()
	env := newLTEnv(t, f)
	in := ltInput()
	in.Test.Rate = 0
	in.Targets[1].Environment = "prod"
	env.ExecuteWorkflow(LoadTestWorkflowName, in)
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "rate 0") || !strings.Contains(err.Error(), `environment "prod"`) {
		t.Fatalf("workflow error = %v", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("activities ran on bad input: %v", f.calls)
	}
}

// gateParent is a stand-in for the Release workflow's canary gate.
func gateParent(ctx workflow.Context, in LoadTestInput) (Verdict, error) {
	res, err := RunLoadTestChild(ctx, in)
	if err != nil {
		return Verdict{}, err
	}
	return res.Verdict("a", "canary load test"), nil
}

func TestCanaryGateRunsAsChildWithoutScaleOrLock(t *testing.T) {
	f := newLTFake()
	f.metrics.P95 = spec.Duration(400 * time.Millisecond)
	env := newLTEnv(t, f)
	env.RegisterWorkflow(gateParent)
	envSpec := spec.Environment{
		Environment: "staging",
		Clusters:    []spec.Cluster{{Name: "a"}, {Name: "b"}},
		Services:    []spec.Service{{Name: "web", Image: "slipway/demo", Version: "1.1.0", Port: 8080}},
		LoadTests:   []spec.LoadTest{ltInput().Test},
	}
	in, err := CanaryLoadTestInput(envSpec, "peak", "a", []string{"slipway.staging.a.web.1.1.0.0"}, "r1")
	if err != nil {
		t.Fatal(err)
	}
	env.ExecuteWorkflow(gateParent, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatalf("workflow error: %v", err)
	}
	var v Verdict
	if err := env.GetWorkflowResult(&v); err != nil {
		t.Fatal(err)
	}
	if v.Result != VerdictFailed || v.Evidence.P95 != 400*time.Millisecond || !strings.Contains(v.Reason, "p95 400ms > 50ms") {
		t.Errorf("verdict = %+v", v)
	}
	if f.count("scale-") != 0 {
		t.Errorf("a canary gate scaled: %v", f.calls)
	}
	g := f.generated[0]
	if len(g.Containers) != 1 || len(g.Targets) != 1 || g.Targets[0].Cluster != "a" {
		t.Errorf("gate load went to %+v / %v, want only the canary on a", g.Targets, g.Containers)
	}
}

func TestEvaluateSLOs(t *testing.T) {
	m := LoadTestMetrics{Requests: 100, ErrorRate: 0.02, Throughput: 40, P50: spec.Duration(3 * time.Millisecond), P95: spec.Duration(20 * time.Millisecond), P99: spec.Duration(90 * time.Millisecond)}
	cases := []struct {
		name   string
		slo    spec.SLOs
		m      LoadTestMetrics
		checks int
		pass   bool
	}{
		{"all met", spec.SLOs{P50: spec.Duration(5 * time.Millisecond), P95: spec.Duration(20 * time.Millisecond), MaxErrorRate: 0.05}, m, 3, true},
		{"p99 missed", spec.SLOs{P99: spec.Duration(50 * time.Millisecond)}, m, 1, false},
		{"throughput missed", spec.SLOs{MinThroughput: 50}, m, 1, false},
		{"no objective: default error rate", spec.SLOs{}, m, 1, false},
		{"no objective, clean run", spec.SLOs{}, LoadTestMetrics{Requests: 10}, 1, true},
		{"nothing measured never passes", spec.SLOs{P95: spec.Duration(time.Second)}, LoadTestMetrics{}, 1, false},
	}
	for _, c := range cases {
		checks, pass := EvaluateSLOs(c.slo, c.m)
		if len(checks) != c.checks || pass != c.pass {
			t.Errorf("%s: %d checks, pass %v; want %d, %v (%+v)", c.name, len(checks), pass, c.checks, c.pass, checks)
		}
	}
}

func TestLoadTestInputFor(t *testing.T) {
	env, err := spec.Parse("staging.yaml", []byte(`
environment: staging
clusters:
  - name: a
  - name: b
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
    clusters: [b]
load_tests:
  - name: peak
    service: web
    rate: 50
    duration: 10s
`))
	if err != nil {
		t.Fatal(err)
	}
	in, err := LoadTestInputFor(env, "peak", LoadTestManual)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Targets) != 1 || in.Targets[0].Cluster != "b" || in.Service.Port != 8080 || len(in.Test.Requests) == 0 {
		t.Errorf("input = %+v", in)
	}
	if _, err := LoadTestInputFor(env, "nope", LoadTestManual); err == nil || !strings.Contains(err.Error(), "peak") {
		t.Errorf("unknown test: err = %v, want it to name the known ones", err)
	}
}
