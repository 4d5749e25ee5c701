package workflows

import (
	"fmt"
	"slices"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
)

// Activity names of the LoadTest workflow. Part of the durable contract: never rename.
const (
	ActivityLoadTestPrepare  = "LoadTestPrepare"
	ActivityLoadTestScaleOut = "LoadTestScaleOut"
	ActivityLoadTestScaleIn  = "LoadTestScaleIn"
	ActivityLoadTestGenerate = "LoadTestGenerate"
	ActivityLoadTestPrevious = "LoadTestPrevious"
)

// Application error types of the load-test activities (both permanent).
const (
	// ErrLoadTestLimit: the test asks for more than the worker allows (rate, duration).
	ErrLoadTestLimit = "LoadTestLimit"
	// ErrNoTargets: no running, reachable replica of the service to send load to, or a
	// replica address outside the networks load may go to.
	ErrNoTargets = "NoTargets"
)

// KindLoadTest is the SAKind value of load-test workflows.
const KindLoadTest = "loadtest"

// RoleLoadTest labels the extra replicas a load test starts for its scale-out, so the
// scale-in finds exactly those (with the io.slipway.release label = the load test's
// workflow ID) and nothing else.
const RoleLoadTest engine.Role = "loadtest"

// MemoLoadTest is the memo key holding a load test's LoadTestSummary (shown in the Web UI;
// read back to compare a run with the previous one).
const MemoLoadTest = "slipway_loadtest"

// MemoSpecHash is the memo key of the spec hash a scheduled load test was synced from.
const MemoSpecHash = "slipway_spec_hash"

// LoadTestMode says why a load test runs. Runs are compared only with runs of the same
// test and the same mode group (a canary gate is not compared with a scheduled run).
type LoadTestMode string

// Load-test modes.
const (
	LoadTestScheduled LoadTestMode = "scheduled" // started by a Temporal Schedule
	LoadTestManual    LoadTestMode = "manual"    // POST /v1/loadtests, slipway loadtest run
	LoadTestCanary    LoadTestMode = "canary"    // a release's gate against its canary
)

// LoadTestOutcome is how a load test ended.
type LoadTestOutcome string

// Load-test outcomes (also the SAOutcome value).
const (
	LoadTestRunning  LoadTestOutcome = ""
	LoadTestPassed   LoadTestOutcome = "passed"   // every SLO met
	LoadTestFailed   LoadTestOutcome = "failed"   // at least one SLO missed
	LoadTestRefused  LoadTestOutcome = "refused"  // a release of the service was in flight; nothing ran
	LoadTestCanceled LoadTestOutcome = "canceled" // cancelled; scaled back, no verdict
	LoadTestError    LoadTestOutcome = "error"    // could not be measured (the workflow fails)
)

// LoadTestInput is the LoadTest workflow's input: one load test of one service, frozen from
// the spec (LoadTestInputFor), with everything the activities need.
type LoadTestInput struct {
	// ID is the caller-visible id of the run (empty: the workflow ID).
	ID          string `json:"id,omitempty"`
	Environment string `json:"environment"`
	// Test is the spec's load test (defaults applied: requests, clusters, scale factor).
	Test spec.LoadTest `json:"test"`
	// Service is the service's spec: its container spec for the scale-out replicas (the
	// image version is taken from the replicas that run, not from here).
	Service spec.Service `json:"service"`
	// Targets are the clusters the test sends load to.
	Targets     []Target     `json:"targets"`
	Mode        LoadTestMode `json:"mode"`
	TriggeredBy string       `json:"triggered_by,omitempty"`
	// Containers limits the load to these container names (a canary gate). With
	// Containers set there is no scale-out.
	Containers []string `json:"containers,omitempty"`
	// HoldsLock says the caller (a release) already holds the service's release lock;
	// otherwise the load test takes it for its whole run, so no release changes the
	// service under the test (and the test never disturbs a release's verification).
	HoldsLock bool `json:"holds_lock,omitempty"`
	// Previous, when set, is the run to compare with (no visibility lookup).
	Previous *LoadTestSummary `json:"previous,omitempty"`
	// SpecHash is the hash of the spec the input was built from (for the record).
	SpecHash string `json:"spec_hash,omitempty"`
}

// Name is "<environment>/<test>", the identity runs are compared by.
func (in LoadTestInput) Name() string { return in.Environment + "/" + in.Test.Name }

// LoadTestInputFor builds the input of the named load test of env (validated and
// defaulted, as spec.Parse returns it). Targets are the test's clusters (default: the
// service's).
func LoadTestInputFor(env *spec.Environment, name string, mode LoadTestMode) (LoadTestInput, error) {
	if env == nil {
		return LoadTestInput{}, fmt.Errorf("load test %q: no spec", name)
	}
	i := slices.IndexFunc(env.LoadTests, func(lt spec.LoadTest) bool { return lt.Name == name })
	if i < 0 {
		var known []string
		for _, lt := range env.LoadTests {
			known = append(known, lt.Name)
		}
		return LoadTestInput{}, fmt.Errorf("environment %s has no load test %q (load_tests: %v)", env.Environment, name, known)
	}
	lt := env.LoadTests[i]
	svc, ok := env.Service(lt.Service)
	if !ok {
		return LoadTestInput{}, fmt.Errorf("load_tests[%d] (%s): unknown service %q", i, name, lt.Service)
	}
	clusters := lt.Clusters
	if len(clusters) == 0 {
		clusters = svc.Clusters
	}
	if len(clusters) == 0 {
		for _, c := range env.Clusters {
			clusters = append(clusters, c.Name)
		}
	}
	in := LoadTestInput{Environment: env.Environment, Test: lt, Service: svc, Mode: mode}
	for _, cn := range clusters {
		c, ok := env.Cluster(cn)
		if !ok {
			return LoadTestInput{}, fmt.Errorf("load_tests[%d] (%s): unknown cluster %q", i, name, cn)
		}
		in.Targets = append(in.Targets, TargetOf(env.Environment, c))
	}
	return in, nil
}

// CanaryLoadTestInput builds the input of a canary gate: the named load test of env sent
// only to the canary containers of the service on one cluster, without scale-out and
// without taking the release lock (the release holds it). The Release workflow runs it
// with RunLoadTestChild.
func CanaryLoadTestInput(env spec.Environment, name, cluster string, canaries []string, releaseID string) (LoadTestInput, error) {
	in, err := LoadTestInputFor(&env, name, LoadTestCanary)
	if err != nil {
		return LoadTestInput{}, err
	}
	c, ok := env.Cluster(cluster)
	if !ok {
		return LoadTestInput{}, fmt.Errorf("canary load test %s: unknown cluster %q", name, cluster)
	}
	if len(canaries) == 0 {
		return LoadTestInput{}, fmt.Errorf("canary load test %s: no canary containers", name)
	}
	in.ID = releaseID
	in.Targets = []Target{TargetOf(env.Environment, c)}
	in.Containers = append([]string(nil), canaries...)
	in.HoldsLock = true
	in.Test.ScaleFactor = 1
	in.TriggeredBy = "release " + releaseID
	return in, nil
}

// LoadTestPrepareInput asks the worker whether it may run the test (caps) and what runs.
type LoadTestPrepareInput struct {
	Environment string   `json:"environment"`
	Service     string   `json:"service"`
	Targets     []Target `json:"targets"`
	Containers  []string `json:"containers,omitempty"`
	Rate        int      `json:"rate"`
	// Duration includes the warm-up.
	Duration time.Duration `json:"duration"`
	// ScaleFactor the test will scale out by (checked against the clusters' max_replicas).
	ScaleFactor int `json:"scale_factor,omitempty"`
}

// LoadTestPreviousInput asks for the latest completed run of the same test (same
// environment and name, same mode group: canary gates are compared with canary gates).
type LoadTestPreviousInput struct {
	Environment string       `json:"environment"`
	Test        string       `json:"test"`
	Service     string       `json:"service"`
	Mode        LoadTestMode `json:"mode"`
	// Exclude is the asking run's workflow ID.
	Exclude string `json:"exclude"`
}

// Comparable reports whether runs of modes a and b are compared with each other.
func (a LoadTestMode) Comparable(b LoadTestMode) bool {
	return (a == LoadTestCanary) == (b == LoadTestCanary)
}

// LoadTestPrepareResult is what runs of the service on each target cluster.
type LoadTestPrepareResult struct {
	Clusters []LoadTestClusterBase `json:"clusters"`
	// MaxRate and MaxDuration are the worker's caps the test was checked against.
	MaxRate     int           `json:"max_rate"`
	MaxDuration time.Duration `json:"max_duration"`
}

// LoadTestClusterBase is the service's serving replicas on one cluster before the test.
type LoadTestClusterBase struct {
	Cluster string `json:"cluster"`
	// Version is the version in traffic (the majority when several serve).
	Version  string `json:"version"`
	Replicas int    `json:"replicas"`
}

// LoadTestScaleInput asks for (ScaleOut) extra replicas of the serving version so the
// service runs Factor × its serving replicas on the target, or (ScaleIn) removes every
// replica that run started.
type LoadTestScaleInput struct {
	Target  Target       `json:"target"`
	RunID   string       `json:"run_id"`
	Service spec.Service `json:"service"`
	Factor  int          `json:"factor,omitempty"`
	// HealthDeadline bounds the wait for one new replica to be healthy.
	HealthDeadline time.Duration `json:"health_deadline,omitempty"`
}

// LoadTestScaleResult says what a scale step did.
type LoadTestScaleResult struct {
	Cluster string `json:"cluster"`
	Version string `json:"version,omitempty"`
	// Base is the serving replicas before the scale-out; Total the replicas in traffic after
	// the step; Peak (in a result) the replicas in traffic during the load.
	Base  int `json:"base"`
	Total int `json:"total"`
	Peak  int `json:"peak,omitempty"`
	// Containers the step started (ScaleOut) or removed (ScaleIn).
	Containers []string `json:"containers,omitempty"`
}

// LoadTestGenerateInput is the load to send.
type LoadTestGenerateInput struct {
	Environment string        `json:"environment"`
	Service     string        `json:"service"`
	Targets     []Target      `json:"targets"`
	Containers  []string      `json:"containers,omitempty"`
	Requests    []spec.Probe  `json:"requests"`
	Rate        int           `json:"rate"`
	WarmUp      time.Duration `json:"warm_up,omitempty"`
	Duration    time.Duration `json:"duration"`
	// Name tags every request (X-Vegeta-Attack header), e.g. the workflow ID.
	Name string `json:"name,omitempty"`
}

// LoadTestProgress is the generator's heartbeat.
type LoadTestProgress struct {
	Phase       string        `json:"phase"` // "warm-up" | "measuring"
	Elapsed     time.Duration `json:"elapsed"`
	Requests    int64         `json:"requests"`
	Errors      int64         `json:"errors"`
	CurrentRate float64       `json:"current_rate"`
}

// LoadTestMetrics are the measured numbers (warm-up excluded).
type LoadTestMetrics struct {
	// Requests sent and answered (or failed) in the measured window.
	Requests int64 `json:"requests"`
	// WarmUpRequests were sent during the warm-up and are not measured.
	WarmUpRequests int64 `json:"warm_up_requests,omitempty"`
	// Errors: no response, or a status other than the request's expect_status.
	Errors    int64   `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	// Rate is the achieved request rate (req/s); Throughput the successful responses/s.
	Rate       float64 `json:"rate"`
	Throughput float64 `json:"throughput"`
	// Latencies of every measured request (errors included).
	Mean spec.Duration `json:"mean"`
	P50  spec.Duration `json:"p50"`
	P90  spec.Duration `json:"p90"`
	P95  spec.Duration `json:"p95"`
	P99  spec.Duration `json:"p99"`
	Max  spec.Duration `json:"max"`
	// StatusCodes counts responses by status ("0": no response).
	StatusCodes map[string]int64 `json:"status_codes"`
	// ErrorSamples are up to 5 distinct transport errors.
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Window is the measured time (first request to last response).
	Window spec.Duration `json:"window"`
	// Targets are the replica addresses load went to.
	Targets []string `json:"targets"`
	// GeneratedFrom says where the load came from (a probe container on each cluster's
	// engine, or the worker for clusters with probes: direct).
	GeneratedFrom string `json:"generated_from,omitempty"`
}

// SLOCheck is one objective judged against the measurement.
type SLOCheck struct {
	// Name: p50, p95, p99, error_rate, min_throughput.
	Name string `json:"name"`
	// Objective and Actual in the objective's unit: ms for latencies, a share 0..1 for the
	// error rate, req/s for the throughput.
	Objective float64 `json:"objective"`
	Actual    float64 `json:"actual"`
	Unit      string  `json:"unit"`
	Passed    bool    `json:"passed"`
}

// LoadTestSummary is the memo of a run and what the next run is compared with.
type LoadTestSummary struct {
	WorkflowID string          `json:"workflow_id"`
	Test       string          `json:"test"` // "<environment>/<name>"
	Service    string          `json:"service"`
	Version    string          `json:"version,omitempty"`
	Mode       LoadTestMode    `json:"mode"`
	Outcome    LoadTestOutcome `json:"outcome"`
	Rate       int             `json:"rate"`
	Requests   int64           `json:"requests"`
	ErrorRate  float64         `json:"error_rate"`
	Throughput float64         `json:"throughput"`
	P50        spec.Duration   `json:"p50"`
	P95        spec.Duration   `json:"p95"`
	P99        spec.Duration   `json:"p99"`
	Replicas   int             `json:"replicas"`
	EndedAt    time.Time       `json:"ended_at"`
	FailedSLOs []string        `json:"failed_slos,omitempty"`
}

// LoadTestComparison compares a run with the previous run of the same test.
type LoadTestComparison struct {
	Previous LoadTestSummary `json:"previous"`
	// Ratios this/previous (0 when the previous value was 0); above 1 is slower (latency) or
	// more (throughput).
	P50Ratio        float64 `json:"p50_ratio,omitempty"`
	P95Ratio        float64 `json:"p95_ratio,omitempty"`
	P99Ratio        float64 `json:"p99_ratio,omitempty"`
	ThroughputRatio float64 `json:"throughput_ratio,omitempty"`
	// ErrorRateDelta is this error rate minus the previous one.
	ErrorRateDelta float64 `json:"error_rate_delta"`
	// Summary is one readable line: "p95 +12% (4.1ms → 4.6ms), error rate +0.0 pt, …".
	Summary string `json:"summary"`
}

// LoadTestResult is the LoadTest workflow's result (and, summarised, its memo).
type LoadTestResult struct {
	ID          string          `json:"id"`
	WorkflowID  string          `json:"workflow_id"`
	Environment string          `json:"environment"`
	Test        string          `json:"test"`
	Service     string          `json:"service"`
	Version     string          `json:"version,omitempty"`
	Mode        LoadTestMode    `json:"mode"`
	TriggeredBy string          `json:"triggered_by,omitempty"`
	Outcome     LoadTestOutcome `json:"outcome"`
	Reason      string          `json:"reason"`
	// Requested load.
	Rate     int           `json:"rate"`
	Duration spec.Duration `json:"duration"`
	WarmUp   spec.Duration `json:"warm_up,omitempty"`
	// Scale is what each cluster ran during the test.
	Scale   []LoadTestScaleResult `json:"scale,omitempty"`
	Metrics *LoadTestMetrics      `json:"metrics,omitempty"`
	SLOs    []SLOCheck            `json:"slos,omitempty"`
	// Comparison with the previous run of the same test (nil: none found).
	Comparison *LoadTestComparison `json:"comparison,omitempty"`
	// ComparisonError says why no comparison could be made (the lookup failed).
	ComparisonError string `json:"comparison_error,omitempty"`
	// ScaleBackErrors names what the scale-in could not remove (the replicas are labelled
	// role=loadtest and release=<workflow ID> for a manual sweep).
	ScaleBackErrors []string  `json:"scale_back_errors,omitempty"`
	StartedAt       time.Time `json:"started_at"`
	EndedAt         time.Time `json:"ended_at,omitempty"`
}

// Summary is the run in a few numbers (the memo).
func (r LoadTestResult) Summary() LoadTestSummary {
	s := LoadTestSummary{
		WorkflowID: r.WorkflowID, Test: r.Environment + "/" + r.Test, Service: r.Service, Version: r.Version,
		Mode: r.Mode, Outcome: r.Outcome, Rate: r.Rate, EndedAt: r.EndedAt,
	}
	for _, sc := range r.Scale {
		s.Replicas += sc.Total
	}
	if m := r.Metrics; m != nil {
		s.Requests, s.ErrorRate, s.Throughput = m.Requests, m.ErrorRate, m.Throughput
		s.P50, s.P95, s.P99 = m.P50, m.P95, m.P99
	}
	for _, c := range r.SLOs {
		if !c.Passed {
			s.FailedSLOs = append(s.FailedSLOs, c.Name)
		}
	}
	return s
}

// Verdict turns a gate's result into a release verdict with its evidence, for the Release
// workflow's canary gate: passed only when every SLO was met.
func (r LoadTestResult) Verdict(cluster, stage string) Verdict {
	v := Verdict{Service: r.Service, Cluster: cluster, Stage: stage, At: r.EndedAt}
	switch r.Outcome {
	case LoadTestPassed:
		v.Result = VerdictPassed
	case LoadTestFailed:
		v.Result = VerdictFailed
	default:
		v.Result = VerdictInconclusive
	}
	v.Reason = fmt.Sprintf("load test %s: %s", r.Test, r.Reason)
	if m := r.Metrics; m != nil {
		v.Evidence = Evidence{
			Samples: int(m.Requests), Errors: int(m.Errors), ErrorRate: m.ErrorRate,
			P50: m.P50.D(), P95: m.P95.D(), Targets: len(m.Targets),
		}
		codes := map[int]int{}
		//workflowcheck:ignore map order: sums per status code
		for k, n := range m.StatusCodes {
			var c int
			if _, err := fmt.Sscanf(k, "%d", &c); err == nil {
				codes[c] += int(n)
			}
		}
		v.Evidence.StatusCodes = codes
	}
	return v
}

// LoadTestPhase is where a load test stands (the status query).
type LoadTestPhase string

// Load-test phases.
const (
	LoadTestPhaseLocking    LoadTestPhase = "locking"
	LoadTestPhasePreparing  LoadTestPhase = "preparing"
	LoadTestPhaseScalingOut LoadTestPhase = "scaling_out"
	LoadTestPhaseLoad       LoadTestPhase = "load"
	LoadTestPhaseScalingIn  LoadTestPhase = "scaling_in"
	LoadTestPhaseDone       LoadTestPhase = "done"
)

// LoadTestStatus is the status query's answer: the phase and, at the end, the result.
type LoadTestStatus struct {
	Phase   LoadTestPhase  `json:"phase"`
	Message string         `json:"message,omitempty"`
	Result  LoadTestResult `json:"result"`
}
