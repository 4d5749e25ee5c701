package workflows

import (
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// RegisterLoadTest registers the LoadTest workflow under its stable name. The worker calls it
// beside Register (the release lock it takes is registered there).
func RegisterLoadTest(r sdkworker.WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(LoadTest, workflow.RegisterOptions{Name: LoadTestWorkflowName})
}

// RunLoadTestChild runs a load test as a child workflow and waits for its result: the
// Release workflow's canary gate (build the input with CanaryLoadTestInput). The child's ID
// is "<parent workflow ID>-loadtest-<service>-<test>"; it is cancelled with its parent, and it scales
// nothing (canary mode), so a cancelled gate leaves nothing behind. A load test that could
// not measure returns an error; a test that missed an SLO returns its result with Outcome
// failed (use result.Verdict to judge it).
func RunLoadTestChild(ctx workflow.Context, in LoadTestInput) (LoadTestResult, error) {
	id := CanaryLoadTestWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID, in.Service.Name, in.Test.Name)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		WaitForCancellation:   true,
		WorkflowRunTimeout:    LoadTestRunTimeout(in),
		WorkflowTaskTimeout:   WorkflowTaskTimeout,
	})
	var res LoadTestResult
	err := workflow.ExecuteChildWorkflow(cctx, LoadTestWorkflowName, in).Get(ctx, &res)
	return res, err
}

// LoadTestRunTimeout bounds a load-test run (schedules and gates set it as the workflow
// run timeout): its load plus an hour. A run timeout ends the workflow without its
// scale-in, so it is only a backstop for a run stuck behind a lost worker, far above any
// normal run (activity timeouts end a stuck step long before); replicas such a run leaves
// carry role=loadtest and release=<workflow ID>.
func LoadTestRunTimeout(in LoadTestInput) time.Duration {
	return in.Test.WarmUp.D() + in.Test.Duration.D() + time.Hour
}

// loadTestRun is one running LoadTest workflow.
type loadTestRun struct {
	in  LoadTestInput
	wid string
	st  LoadTestStatus

	lock    *heldLock // the service's release lock, taken with takeLock (lock.go)
	refused string
	// scaleTried: clusters a scale-out was attempted on (the scale-in visits each of them).
	scaleTried map[string]bool
	scaled     map[string]LoadTestScaleResult
	version    string
}

// LoadTest is the LoadTest workflow: take the service's release lock, check the worker's
// caps and what serves, scale out (scale_factor × the serving replicas of the serving
// version on every target cluster), send the load (warm-up, then the measured window),
// ALWAYS scale back (on a disconnected context: after a failure and after a cancel too),
// judge the SLOs, compare with the previous run of the same test, and record the outcome in
// the search attributes and the memo. Missing an SLO is a result (Outcome failed), not an
// error; the workflow fails only when the load could not be measured.
func LoadTest(ctx workflow.Context, in LoadTestInput) (LoadTestResult, error) {
	r := &loadTestRun{in: in, wid: workflow.GetInfo(ctx).WorkflowExecution.ID, scaleTried: map[string]bool{}, scaled: map[string]LoadTestScaleResult{}}
	if r.in.ID == "" {
		r.in.ID = r.wid
	}
	if r.in.Mode == "" {
		r.in.Mode = LoadTestManual
	}
	r.st.Result = LoadTestResult{
		ID: r.in.ID, WorkflowID: r.wid, Environment: in.Environment, Test: in.Test.Name, Service: in.Service.Name,
		Mode: r.in.Mode, TriggeredBy: in.TriggeredBy, Rate: in.Test.Rate, Duration: in.Test.Duration, WarmUp: in.Test.WarmUp,
		StartedAt: workflow.Now(ctx),
	}
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (LoadTestStatus, error) { return r.st, nil }); err != nil {
		return r.st.Result, err
	}
	r.setPhase(ctx, LoadTestPhasePreparing, "starting")
	if err := validateLoadTestInput(in); err != nil {
		r.st.Result.Outcome, r.st.Result.Reason = LoadTestError, err.Error()
		r.finish(ctx)
		return r.st.Result, temporal.NewNonRetryableApplicationError(err.Error(), ErrBadInput, nil)
	}

	dctx, _ := workflow.NewDisconnectedContext(ctx)
	metrics, err := r.run(ctx, dctx)
	r.scaleIn(dctx)
	r.unlock(dctx)

	res := &r.st.Result
	switch {
	case r.refused != "":
		res.Outcome, res.Reason = LoadTestRefused, r.refused
	case ctx.Err() != nil || (err != nil && temporal.IsCanceledError(err)):
		res.Outcome, res.Reason = LoadTestCanceled, "cancelled; scaled back"
		r.finish(dctx)
		return *res, temporal.NewCanceledError(res.Reason)
	case err != nil:
		res.Outcome, res.Reason = LoadTestError, "the load could not be measured: "+stepErrText(err)
		r.finish(dctx)
		return *res, temporal.NewNonRetryableApplicationError(res.Reason, errType(err), nil)
	default:
		res.Metrics = &metrics
		checks, passed := EvaluateSLOs(in.Test.SLO, metrics)
		res.SLOs = checks
		res.Outcome = LoadTestFailed
		if passed {
			res.Outcome = LoadTestPassed
		}
		res.Reason = describeSLOs(checks, metrics)
		res.EndedAt = workflow.Now(ctx)
		r.compare(ctx)
	}
	r.finish(ctx)
	return *res, nil
}

// validateLoadTestInput refuses an input no run can fix (a workflow caller's bug).
func validateLoadTestInput(in LoadTestInput) error {
	var problems []string
	if in.Environment == "" {
		problems = append(problems, "no environment")
	}
	if in.Test.Name == "" {
		problems = append(problems, "no test name")
	}
	if in.Service.Name == "" || in.Service.Name != in.Test.Service {
		problems = append(problems, fmt.Sprintf("service %q does not match the test's service %q", in.Service.Name, in.Test.Service))
	}
	if in.Test.Rate <= 0 {
		problems = append(problems, fmt.Sprintf("rate %d: must be at least 1 request/s", in.Test.Rate))
	}
	if in.Test.Duration <= 0 {
		problems = append(problems, "duration must be positive")
	}
	if in.Test.WarmUp < 0 {
		problems = append(problems, "warm_up must not be negative")
	}
	if len(in.Targets) == 0 {
		problems = append(problems, "no target cluster")
	}
	for _, t := range in.Targets {
		if t.Environment != in.Environment {
			problems = append(problems, fmt.Sprintf("target cluster %s belongs to environment %q, not %q", t.Cluster, t.Environment, in.Environment))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("load test %s: %s", in.Name(), strings.Join(problems, "; "))
	}
	return nil
}

// run is the forward path: lock, prepare, scale out, load. dctx outlives a cancellation
// (the lock is held on it until the scale-in is done).
func (r *loadTestRun) run(ctx, dctx workflow.Context) (LoadTestMetrics, error) {
	in := r.in
	if !in.HoldsLock {
		r.setPhase(ctx, LoadTestPhaseLocking, "taking the release lock of "+in.Service.Name)
		if err := r.takeLock(ctx, dctx); err != nil {
			return LoadTestMetrics{}, err
		}
		if r.refused != "" {
			return LoadTestMetrics{}, nil
		}
	}

	r.setPhase(ctx, LoadTestPhasePreparing, "checking limits and replicas")
	factor := max(in.Test.ScaleFactor, 1)
	if len(in.Containers) > 0 {
		factor = 1
	}
	var prep LoadTestPrepareResult
	err := workflow.ExecuteActivity(optionsFor(ctx, ActivityLoadTestPrepare, 0), ActivityLoadTestPrepare, LoadTestPrepareInput{
		Environment: in.Environment, Service: in.Service.Name, Targets: in.Targets, Containers: in.Containers,
		Rate: in.Test.Rate, Duration: in.Test.WarmUp.D() + in.Test.Duration.D(), ScaleFactor: factor,
	}).Get(ctx, &prep)
	if err != nil {
		return LoadTestMetrics{}, fmt.Errorf("prepare: %w", err)
	}
	r.version = ltMajorityVersion(prep.Clusters)
	r.st.Result.Version = r.version
	for _, c := range prep.Clusters {
		r.scaled[c.Cluster] = LoadTestScaleResult{Cluster: c.Cluster, Version: c.Version, Base: c.Replicas, Total: c.Replicas, Peak: c.Replicas}
	}
	r.syncScale()
	r.upsert(ctx)

	if factor > 1 {
		r.setPhase(ctx, LoadTestPhaseScalingOut, fmt.Sprintf("scaling %s out to %d× its replicas", in.Service.Name, factor))
		if err := r.scaleOut(ctx, factor); err != nil {
			return LoadTestMetrics{}, err
		}
	}

	r.setPhase(ctx, LoadTestPhaseLoad, fmt.Sprintf("%d req/s for %s (warm-up %s)", in.Test.Rate, in.Test.Duration, in.Test.WarmUp))
	var m LoadTestMetrics
	err = workflow.ExecuteActivity(optionsFor(ctx, ActivityLoadTestGenerate, in.Test.WarmUp.D()+in.Test.Duration.D()), ActivityLoadTestGenerate, LoadTestGenerateInput{
		Environment: in.Environment, Service: in.Service.Name, Targets: in.Targets, Containers: in.Containers,
		Requests: in.Test.Requests, Rate: in.Test.Rate, WarmUp: in.Test.WarmUp.D(), Duration: in.Test.Duration.D(), Name: r.wid,
	}).Get(ctx, &m)
	if err != nil {
		return LoadTestMetrics{}, fmt.Errorf("generate load: %w", err)
	}
	return m, nil
}

// scaleOut scales every target cluster out in parallel. Every cluster is marked before its
// activity starts, so the scale-in visits it even if the scale-out failed half-way.
func (r *loadTestRun) scaleOut(ctx workflow.Context, factor int) error {
	in := r.in
	deadline := ltHealthDeadline(in)
	for _, t := range in.Targets {
		r.scaleTried[t.Cluster] = true
	}
	// parallel waits for every scale-out, also when ctx is cancelled: nothing of it may
	// still run when the scale-in starts.
	return parallel(ctx, 0, len(in.Targets), func(gctx workflow.Context, i int) error {
		t := in.Targets[i]
		actx := workflow.WithWaitForCancellation(optionsFor(gctx, ActivityLoadTestScaleOut, deadline), true)
		var res LoadTestScaleResult
		err := workflow.ExecuteActivity(actx, ActivityLoadTestScaleOut, LoadTestScaleInput{
			Target: t, RunID: r.wid, Service: in.Service, Factor: factor, HealthDeadline: deadline,
		}).Get(gctx, &res)
		if err != nil {
			return fmt.Errorf("scale out on %s: %w", t.Cluster, err)
		}
		res.Peak = res.Total
		r.scaled[t.Cluster] = res
		r.syncScale()
		return nil
	})
}

// scaleIn removes every replica the run started, on every cluster a scale-out was tried
// on, with the larger retry budget of a rollback. It runs on a disconnected context.
func (r *loadTestRun) scaleIn(ctx workflow.Context) {
	if len(r.scaleTried) == 0 {
		return
	}
	r.setPhase(ctx, LoadTestPhaseScalingIn, "removing the load test's extra replicas")
	var clusters []string
	//workflowcheck:ignore map order: sorted below
	for c := range r.scaleTried {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	byName := map[string]Target{}
	for _, t := range r.in.Targets {
		byName[t.Cluster] = t
	}
	for _, c := range clusters {
		var res LoadTestScaleResult
		err := workflow.ExecuteActivity(optionsFor(ctx, ActivityLoadTestScaleIn, 0), ActivityLoadTestScaleIn, LoadTestScaleInput{
			Target: byName[c], RunID: r.wid, Service: r.in.Service,
		}).Get(ctx, &res)
		if err != nil {
			r.st.Result.ScaleBackErrors = append(r.st.Result.ScaleBackErrors, fmt.Sprintf("%s: %s", c, stepErrText(err)))
			workflow.GetLogger(ctx).Error("scale-in failed: extra replicas are left running", "cluster", c, "error", err)
			continue
		}
		if s, ok := r.scaled[c]; ok {
			s.Total = s.Base
			r.scaled[c] = s
		}
	}
}

// lock takes the service's release lock (a child workflow only one execution may hold,
// see lock.go) on dctx, so it is held until the scale-in is done, even after a cancel. A
// held lock refuses the test: a release is changing the service.
func (r *loadTestRun) takeLock(ctx, dctx workflow.Context) error {
	l, err := takeLock(ctx, dctx, LockInput{
		Environment: r.in.Environment, Service: r.in.Service.Name, ReleaseID: "loadtest:" + r.in.ID, WorkflowID: r.wid,
	}, "load test "+r.in.Name())
	var lh errLockHeld
	if asLockHeld(err, &lh) {
		r.refused = fmt.Sprintf("service %s is being released (lock %s is held): the load test did not run", r.in.Service.Name, lh.lockID)
		return nil
	}
	if err != nil {
		return err
	}
	r.lock = l
	return nil
}

func (r *loadTestRun) unlock(ctx workflow.Context) {
	if r.lock == nil {
		return
	}
	r.lock.free(ctx)
	r.lock = nil
}

// compare finds the previous run of the same test (given, or looked up in visibility by an
// activity) and compares. A failed lookup is noted, never fatal.
func (r *loadTestRun) compare(ctx workflow.Context) {
	res := &r.st.Result
	prev := r.in.Previous
	if prev == nil {
		var found *LoadTestSummary
		err := workflow.ExecuteActivity(optionsFor(ctx, ActivityLoadTestPrevious, 0), ActivityLoadTestPrevious, LoadTestPreviousInput{
			Environment: r.in.Environment, Test: r.in.Test.Name, Service: r.in.Service.Name, Mode: r.in.Mode, Exclude: r.wid,
		}).Get(ctx, &found)
		if err != nil {
			res.ComparisonError = stepErrText(err)
			return
		}
		prev = found
	}
	if prev == nil {
		return
	}
	c := CompareLoadTests(res.Summary(), *prev)
	res.Comparison = &c
}

func (r *loadTestRun) syncScale() {
	var out []LoadTestScaleResult
	for _, c := range sortedKeys(r.scaled) {
		out = append(out, r.scaled[c])
	}
	r.st.Result.Scale = out
}

func (r *loadTestRun) setPhase(ctx workflow.Context, p LoadTestPhase, msg string) {
	r.st.Phase, r.st.Message = p, msg
	workflow.GetLogger(ctx).Info("load test phase", "phase", p, "message", msg)
}

// finish records the end: phase done, search attributes and memo.
func (r *loadTestRun) finish(ctx workflow.Context) {
	r.syncScale()
	if r.st.Result.EndedAt.IsZero() {
		r.st.Result.EndedAt = workflow.Now(ctx)
	}
	r.setPhase(ctx, LoadTestPhaseDone, fmt.Sprintf("%s: %s", r.st.Result.Outcome, r.st.Result.Reason))
	r.upsert(ctx)
}

// upsert keeps the search attributes and the memo current.
func (r *loadTestRun) upsert(ctx workflow.Context) {
	outcome := string(r.st.Result.Outcome)
	if outcome == "" {
		outcome = "running"
	}
	var versions []string
	if r.version != "" {
		versions = []string{r.in.Service.Name + "=" + r.version}
	}
	err := workflow.UpsertTypedSearchAttributes(ctx,
		runAttributes(KindLoadTest, r.in.Environment, []string{r.in.Service.Name}, versions, string(r.st.Phase), outcome, r.in.TriggeredBy)...)
	if err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
	res := r.st.Result
	summary := fmt.Sprintf("load test %s of %s", r.in.Name(), r.in.Service.Name)
	if res.Outcome != LoadTestRunning {
		summary += " " + outcome + ": " + res.Reason
	}
	memo := map[string]any{"summary": summary}
	if res.Outcome != LoadTestRunning {
		memo[MemoLoadTest] = res.Summary()
	}
	if r.in.SpecHash != "" {
		memo[MemoSpecHash] = r.in.SpecHash
	}
	if err := workflow.UpsertMemo(ctx, memo); err != nil {
		workflow.GetLogger(ctx).Warn("upsert memo", "error", err)
	}
}

// ltHealthDeadline is how long one scale-out replica may take to become healthy.
func ltHealthDeadline(in LoadTestInput) time.Duration {
	if h := in.Service.Health; h != nil && h.Deadline > 0 {
		return h.Deadline.D()
	}
	return spec.DefaultHealthDeadline // a hand-built input; a spec's service always has one
}

// ltMajorityVersion is the version most clusters serve (ties: the lowest name).
func ltMajorityVersion(cs []LoadTestClusterBase) string {
	count := map[string]int{}
	for _, c := range cs {
		if c.Version != "" {
			count[c.Version] += c.Replicas
		}
	}
	best := ""
	for _, v := range sortedKeys(count) {
		if best == "" || count[v] > count[best] {
			best = v
		}
	}
	return best
}
