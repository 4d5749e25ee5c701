package workflows

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// run executes a Release over the fake world and returns its final status.
func run(t *testing.T, w *fakeWorld, in ReleaseInput, setup ...func(*testsuite.TestWorkflowEnvironment)) (ReleaseStatus, *testsuite.TestWorkflowEnvironment) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDetachedChildWait(false) // a lock held after a failed rollback outlives its release
	Register(env)
	w.register(env)
	for _, f := range setup {
		f(env)
	}
	if in.ID == "" {
		in.ID = "r1"
	}
	if in.TriggeredBy == "" {
		in.TriggeredBy = "jenkins"
	}
	env.ExecuteWorkflow(ReleaseWorkflowName, in)
	require.True(t, env.IsWorkflowCompleted())
	st, err := ReleaseResultOf(env.GetWorkflowResult)
	require.NoError(t, err)
	requireEndedAs(t, st, env.GetWorkflowError())
	return st, env
}

// requireEndedAs checks how a release's run ended against its outcome: completed when it
// succeeded, else failed with a non-retryable ApplicationError of the outcome's type whose
// details are the status (changeFailedResult).
func requireEndedAs(t *testing.T, st ReleaseStatus, runErr error) {
	t.Helper()
	want := releaseErrorType(st.Outcome)
	if want == "" {
		require.NoError(t, runErr, "a succeeded release completes")
		return
	}
	require.Error(t, runErr, "a release that ended %s fails its workflow", st.Outcome)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(runErr, &ae), "an ApplicationError: %v", runErr)
	require.Equal(t, want, ae.Type())
	require.True(t, ae.NonRetryable())
	fst, ok := ReleaseStatusFromError(runErr)
	require.True(t, ok)
	require.Equal(t, st.Outcome, fst.Outcome)
	require.Equal(t, st.Reason, fst.Reason)
}

var updateSeq int

// decide sends an update after delay (mock time) and records whether it was accepted.
func decide(env *testsuite.TestWorkflowEnvironment, delay time.Duration, name string, d Decision, rejected *error) {
	updateSeq++
	id := fmt.Sprintf("%s-%d", name, updateSeq)
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(name, id, &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { *rejected = err },
			OnComplete: func(any, error) {},
		}, d)
	}, delay)
}

func requireServing(t *testing.T, w *fakeWorld, cluster, service, version string, n int) {
	t.Helper()
	serving, running := w.serving(cluster, service)
	require.Equal(t, map[string]int{version: n}, serving, "in traffic on %s", cluster)
	require.Equal(t, n, running[version], "running on %s", cluster)
}

func requireEventsOrdered(t *testing.T, st ReleaseStatus) {
	t.Helper()
	require.NotEmpty(t, st.Events)
	for i, e := range st.Events {
		require.Equal(t, i+1, e.Seq)
		require.False(t, e.At.IsZero(), "event %d has no time", e.Seq)
	}
}

func hasEvent(st ReleaseStatus, substr string) bool {
	for _, e := range st.Events {
		if strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

func TestReleaseHappyPath(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.seedState("a", "web", "0.9.0", 2, "exited", false) // an older revision: removed by the cleanup
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))}
	var phases []string
	var last temporal.SearchAttributes
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Run(func(args mock.Arguments) {
			sa := args.Get(0).(temporal.SearchAttributes)
			last = sa
			p, _ := sa.GetKeyword(saPhase)
			if len(phases) == 0 || phases[len(phases)-1] != p {
				phases = append(phases, p)
			}
		})
	})

	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Equal(t, PhaseDone, st.Phase)
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.1.0", 2)
		// one previous revision kept, stopped
		require.Equal(t, []string{"1.0.0", "1.1.0"}, w.versions(c, "web"))
	}
	// canary first on a, then a's batches, then b's; no rollback calls
	starts := w.Calls("StartReplicas")
	require.Equal(t, []string{
		"StartReplicas a web 1.1.0 [0] canary",
		"StartReplicas a web 1.1.0 [0] stable",
		"StartReplicas a web 1.1.0 [1] stable",
		"StartReplicas b web 1.1.0 [0] stable",
		"StartReplicas b web 1.1.0 [1] stable",
	}, starts)
	require.Empty(t, w.Calls("StartStopped"))
	// verdicts: canary, 2 batches + wave on a, 2 batches + wave on b
	require.Len(t, st.Verdicts, 7)
	require.Equal(t, "canary", st.Verdicts[0].Stage)
	for _, v := range st.Verdicts {
		require.Equal(t, VerdictPassed, v.Result)
		require.Equal(t, 40, v.Evidence.Samples)
	}
	require.Len(t, st.Services, 1)
	require.Equal(t, "1.0.0", st.Services[0].FromVersion)
	require.Equal(t, PhaseDone, st.Services[0].Phase)
	for _, c := range st.Services[0].Clusters {
		require.Equal(t, PhaseDone, c.Phase)
		require.Equal(t, 2, c.Updated)
	}
	require.Equal(t, "jenkins", st.TriggeredBy)
	require.False(t, st.EndedAt.IsZero())
	requireEventsOrdered(t, st)
	// canary verification compared against the stable replicas
	require.Equal(t, "canary", w.verifies[0].Stage)
	require.Len(t, w.verifies[0].Baseline, 2)
	require.Equal(t, spec.Duration(30*time.Second), w.verifies[0].Verification.Duration, "canary soaks for canary.soak")
	require.Equal(t, "/healthz", w.verifies[0].HealthPath)
	// search attributes followed every phase and ended with the outcome
	require.Equal(t, []string{"pending", "planning", "canary", "verifying", "rolling_out", "baking", "cleaning_up", "done"}, phases)
	outcome, _ := last.GetKeyword(saOutcome)
	require.Equal(t, "succeeded", outcome)
	services, _ := last.GetKeywordList(saServices)
	require.Equal(t, []string{"web"}, services)
	versions, _ := last.GetKeywordList(saVersions)
	require.Equal(t, []string{"web=1.1.0"}, versions)
	kind, _ := last.GetKeyword(saKind)
	require.Equal(t, "release", kind)
}

func failOn(stage, cluster string, reason string) func(VerifyInput) Verdict {
	return func(in VerifyInput) Verdict {
		if in.Stage == stage && in.Target.Cluster == cluster {
			return Verdict{Result: VerdictFailed, Reason: reason, Evidence: Evidence{Samples: 40, Errors: 20, ErrorRate: 0.5}}
		}
		return Verdict{}
	}
}

func TestReleaseCanaryFails(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.verdict = failOn("canary", "a", "error rate 50.0% above the 5.0% allowed")
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})

	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Contains(t, st.Reason, "error rate 50.0%")
	require.Contains(t, st.Reason, "canary")
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"), "no container of the new version left on %s", c)
	}
	// nothing happened on b; a: canary out of traffic, old ones (never detached) attached
	require.Empty(t, w.Calls("StartReplicas b"))
	require.Equal(t, []string{"SetTraffic a web attach=[slipway.staging.a.web.1.0.0.0 slipway.staging.a.web.1.0.0.1] detach=[slipway.staging.a.web.1.1.0.0]"}, w.Calls("SetTraffic"))
	require.Equal(t, []string{"RemoveReplicas a [slipway.staging.a.web.1.1.0.0] sweep=web@1.1.0"}, w.Calls("RemoveReplicas"))
	// evidence kept in the status
	require.Len(t, st.Verdicts, 1)
	require.Equal(t, VerdictFailed, st.Verdicts[0].Result)
	require.Equal(t, 0.5, st.Verdicts[0].Evidence.ErrorRate)
	require.True(t, hasEvent(st, "rolled back web"), "rollback checked")
	require.Nil(t, st.Running)
	// each phase tells its own truth: a went back, b was never touched
	require.Equal(t, PhaseRolledBack, st.Services[0].Phase)
	require.Equal(t, PhaseRolledBack, st.Services[0].Clusters[0].Phase)
	require.Equal(t, PhasePending, st.Services[0].Clusters[1].Phase)
}

func TestReleaseCanaryUnhealthy(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.unhealthy["bad-crash"] = true
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "bad-crash"))})

	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Contains(t, st.Reason, "did not come up")
	require.Contains(t, st.Reason, "exited at start")
	require.Len(t, st.Verdicts, 1)
	require.Equal(t, VerdictFailed, st.Verdicts[0].Result)
	require.Equal(t, "canary", st.Verdicts[0].Stage)
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
	}
	require.Empty(t, w.Calls("Verify"), "no verification of a version that did not start")
}

func TestReleaseLaterWaveFails(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.verdict = failOn("batch 2/2", "b", "p95 latency 310ms above the 200ms allowed")
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})

	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Contains(t, st.Reason, "p95 latency 310ms")
	require.Contains(t, st.Reason, "on b (batch 2/2)")
	// wave 1 (a) had finished: it goes back too (scope release: no mixed versions survive)
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
	}
	require.ElementsMatch(t, []string{
		"SetTraffic a web attach=[slipway.staging.a.web.1.0.0.0 slipway.staging.a.web.1.0.0.1] detach=[slipway.staging.a.web.1.1.0.0 slipway.staging.a.web.1.1.0.1]",
		"SetTraffic b web attach=[slipway.staging.b.web.1.0.0.0 slipway.staging.b.web.1.0.0.1] detach=[slipway.staging.b.web.1.1.0.0 slipway.staging.b.web.1.1.0.1]",
	}, w.Calls("SetTraffic")[4:], "the rollback switches both clusters back in one step each")
	require.Empty(t, w.Calls("StartStopped"), "keep_previous running: nothing to start")
	require.Empty(t, w.Calls("StopReplicas"), "no cleanup after a failure")
	last := st.Verdicts[len(st.Verdicts)-1]
	require.Equal(t, VerdictFailed, last.Result)
	require.Equal(t, "b", last.Cluster)
	require.Equal(t, PhaseRolledBack, st.Services[0].Phase, "never done after a rollback")
	for _, c := range st.Services[0].Clusters {
		require.Equal(t, PhaseRolledBack, c.Phase)
		require.Equal(t, 0, c.Updated, "no new replica in traffic on %s", c.Cluster)
	}
}

func TestReleaseKeepStoppedRollback(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.verdict = failOn("wave 2", "b", "error rate 12.0% above the 5.0% allowed")
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Rollback = &spec.Rollback{KeepPrevious: spec.KeepStopped}
	}))}
	st, _ := run(t, w, in)

	require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
	require.Len(t, w.Calls("StopReplicas"), 4, "each retired batch was stopped")
	require.ElementsMatch(t, []string{
		"StartStopped a [slipway.staging.a.web.1.0.0.1 slipway.staging.a.web.1.0.0.0]",
		"StartStopped b [slipway.staging.b.web.1.0.0.1 slipway.staging.b.web.1.0.0.0]",
	}, w.Calls("StartStopped"))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
	}
}

func TestReleaseEngineStopsAnswering(t *testing.T) {
	t.Run("comes back for the rollback", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		// b's engine dies while a's wave is verified, and answers again once the release
		// has given up on it (the rollback's traffic switch on b).
		w.hook = func(call string) {
			switch {
			case strings.HasPrefix(call, "Verify a web wave 1"):
				w.down["b"] = true
			case strings.HasPrefix(call, "SetTraffic b web attach=[slipway"):
				w.down["b"] = false
			}
		}
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
		require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
		require.Contains(t, st.Reason, "on cluster b failed")
		require.Contains(t, st.Reason, "does not answer")
		require.Len(t, w.Calls("StartReplicas b"), 4, "retried up to the policy's maximum attempts")
		for _, c := range []string{"a", "b"} {
			requireServing(t, w, c, "web", "1.0.0", 2)
			require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
		}
	})
	t.Run("stays down", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		w.hook = func(call string) {
			if strings.HasPrefix(call, "Verify a web wave 1") {
				w.down["b"] = true
			}
		}
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
		require.Equal(t, OutcomeFailed, st.Outcome, "a rollback that cannot finish is a failure, never a success")
		require.Contains(t, st.Reason, "rollback could not finish")
		// a is back; b is reported as unknown, with the reason
		requireServing(t, w, "a", "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0 (2 running, 2 in traffic)"}, st.Running["a"]["web"])
		require.Len(t, st.Running["b"]["web"], 1)
		require.Contains(t, st.Running["b"]["web"][0], "unknown")
		require.Contains(t, st.Running["b"]["web"][0], "does not answer")
		require.True(t, hasEvent(st, "ROLLBACK INCOMPLETE"))
		require.Equal(t, PhaseFailed, st.Services[0].Phase, "a service whose rollback failed")
		require.Equal(t, "a", st.Services[0].Clusters[0].Cluster)
		require.Equal(t, PhaseRolledBack, st.Services[0].Clusters[0].Phase)
		require.Equal(t, PhaseFailed, st.Services[0].Clusters[1].Phase)
	})
}

func TestReleaseAbortMidRollout(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Rollout.Pause = spec.Duration(time.Minute) // the workflow waits between batches
	}))}
	var rejected, rejectedAgain error
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, 30*time.Second, UpdateAbort, Decision{Actor: "alice", Reason: "wrong build"}, &rejected)
		decide(env, 30*time.Second, UpdateAbort, Decision{Actor: "bob"}, &rejectedAgain)
	})
	require.NoError(t, rejected)
	require.ErrorContains(t, rejectedAgain, "already being aborted by alice", "a second abort is refused")
	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Equal(t, "alice", st.AbortedBy)
	require.Contains(t, st.Reason, "aborted by alice: wrong build")
	require.Empty(t, w.Calls("StartReplicas b"), "nothing started after the abort")
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
	}
	require.True(t, hasEvent(st, "aborted by alice: wrong build"))
}

func TestReleaseApprovalTimeout(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Canary = &spec.Canary{Approval: &spec.Approval{Required: true, Timeout: spec.Duration(10 * time.Minute)}}
	}))}
	var early, query error
	var during ReleaseStatus
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		// approve before the gate opens: refused by the validator
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(UpdateApprove, "early", &testsuite.TestUpdateCallback{
				OnAccept: func() {}, OnReject: func(err error) { early = err }, OnComplete: func(any, error) {},
			}, Decision{Actor: "carol"})
		}, 0)
		env.RegisterDelayedCallback(func() {
			v, err := env.QueryWorkflow(QueryStatus)
			if query = err; err == nil {
				query = v.Get(&during)
			}
		}, 5*time.Minute)
	})
	require.ErrorContains(t, early, "not awaiting approval")
	require.NoError(t, query)
	require.Equal(t, PhaseAwaitingApproval, during.Phase)
	require.Equal(t, PhaseAwaitingApproval, during.Services[0].Phase)

	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Contains(t, st.Reason, "no approval within 10m0s")
	require.Empty(t, st.ApprovedBy)
	require.Empty(t, w.Calls("StartReplicas a web 1.1.0 [0] stable"))
	requireServing(t, w, "a", "web", "1.0.0", 2)
	require.Equal(t, []string{"1.0.0"}, w.versions("a", "web"))
}

func TestReleaseApproved(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Clusters = []string{"a"}
		s.Canary = &spec.Canary{Approval: &spec.Approval{Required: true, Timeout: spec.Duration(10 * time.Minute)}}
	}))}
	var noActor, wrongService, ok error
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, time.Minute, UpdateApprove, Decision{}, &noActor)
		decide(env, 2*time.Minute, UpdateApprove, Decision{Actor: "dave", Service: "api"}, &wrongService)
		decide(env, 3*time.Minute, UpdateApprove, Decision{Actor: "erin", Service: "web"}, &ok)
	})
	require.ErrorContains(t, noActor, "actor")
	require.ErrorContains(t, wrongService, "service api is not awaiting approval")
	require.NoError(t, ok)
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Equal(t, "erin", st.ApprovedBy)
	requireServing(t, w, "a", "web", "1.1.0", 2)
}

func TestReleaseInconclusive(t *testing.T) {
	inconclusive := func(in VerifyInput) Verdict {
		if in.Stage == "canary" {
			return Verdict{Result: VerdictInconclusive, Reason: "only 3 samples of the new version, 5 needed (9 probes could not run)",
				Evidence: Evidence{Samples: 3, Unreachable: 9}}
		}
		return Verdict{}
	}
	t.Run("nobody decides", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		w.verdict = inconclusive
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
		require.Equal(t, OutcomeRolledBack, st.Outcome)
		require.Contains(t, st.Reason, "no approval within 30m0s")
		require.Contains(t, st.Reason, "inconclusive")
		require.Equal(t, VerdictInconclusive, st.Verdicts[0].Result)
		require.Equal(t, 9, st.Verdicts[0].Evidence.Unreachable)
		require.True(t, hasEvent(st, "awaiting") || hasEvent(st, "approve to go on"))
		requireServing(t, w, "a", "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions("a", "web"))
	})
	t.Run("a human approves", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		w.verdict = inconclusive
		var ok error
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))}, func(env *testsuite.TestWorkflowEnvironment) {
			decide(env, time.Minute, UpdateApprove, Decision{Actor: "frank", Reason: "probes blocked by a firewall test"}, &ok)
		})
		require.NoError(t, ok)
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		require.Equal(t, "frank", st.ApprovedBy)
		requireServing(t, w, "b", "web", "1.1.0", 2)
	})
}

func TestReleasePauseResume(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Rollout.Pause = spec.Duration(time.Minute)
	}))}
	var p1, p2, r1, r2 error
	var paused ReleaseStatus
	var startsWhilePaused int
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, 10*time.Second, UpdatePause, Decision{Actor: "gina"}, &p1)
		decide(env, 11*time.Second, UpdatePause, Decision{Actor: "gina"}, &p2) // already paused
		env.RegisterDelayedCallback(func() {
			v, _ := env.QueryWorkflow(QueryStatus)
			_ = v.Get(&paused)
			startsWhilePaused = len(w.Calls("StartReplicas"))
		}, 2*time.Hour)
		decide(env, 3*time.Hour, UpdateResume, Decision{Actor: "gina"}, &r1)
		decide(env, 3*time.Hour+time.Second, UpdateResume, Decision{Actor: "gina"}, &r2) // not paused
	})
	require.NoError(t, p1)
	require.ErrorContains(t, p2, "already paused")
	require.NoError(t, r1)
	require.ErrorContains(t, r2, "not paused")
	require.True(t, paused.Paused)
	require.Equal(t, PhasePaused, paused.Phase)
	require.Len(t, paused.Services, 1)
	require.Equal(t, PhasePaused, paused.Services[0].Phase, "the held service reads paused")
	require.Equal(t, PhaseDone, st.Services[0].Phase)
	require.Equal(t, 2, startsWhilePaused, "held before the second batch (canary + batch 1 ran)")
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.False(t, st.Paused)
}

func TestReleaseMultiServiceRollback(t *testing.T) {
	db := svc("db", "2.0.0")
	web := svc("web", "1.1.0", func(s *spec.Service) { s.DependsOn = []string{"db"} })
	t.Run("scope release", func(t *testing.T) {
		w := newWorld("staging")
		for _, c := range []string{"a", "b"} {
			w.seed(c, "db", "1.0.0", 2)
			w.seed(c, "web", "1.0.0", 2)
		}
		w.verdict = failOn("canary", "a", "error rate 50.0% above the 5.0% allowed")
		w.verdict = func(in VerifyInput) Verdict {
			if in.Service == "web" && in.Stage == "canary" {
				return Verdict{Result: VerdictFailed, Reason: "error rate 50.0% above the 5.0% allowed"}
			}
			return Verdict{}
		}
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(db, web)})
		require.Equal(t, OutcomeRolledBack, st.Outcome)
		require.Contains(t, st.Reason, "web failed verification")
		// db finished before web started (depends_on), then both went back: web first
		require.Equal(t, []string{"db", "web"}, []string{st.Services[0].Service, st.Services[1].Service})
		var order []string
		for _, c := range w.Calls("SetTraffic") {
			if strings.Contains(c, "attach=[slipway") {
				order = append(order, strings.Fields(c)[2])
			}
		}
		require.Equal(t, []string{"web", "db", "db"}, order, "dependents roll back first")
		for _, c := range []string{"a", "b"} {
			requireServing(t, w, c, "db", "1.0.0", 2)
			requireServing(t, w, c, "web", "1.0.0", 2)
			require.Equal(t, []string{"1.0.0"}, w.versions(c, "db"))
			require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"))
		}
	})
	t.Run("scope service", func(t *testing.T) {
		w := newWorld("staging")
		for _, c := range []string{"a", "b"} {
			w.seed(c, "db", "1.0.0", 2)
			w.seed(c, "web", "1.0.0", 2)
		}
		w.verdict = func(in VerifyInput) Verdict {
			if in.Service == "web" && in.Stage == "canary" {
				return Verdict{Result: VerdictFailed, Reason: "error rate 50.0% above the 5.0% allowed"}
			}
			return Verdict{}
		}
		dbOwn := db
		dbOwn.Rollback = &spec.Rollback{Scope: spec.ScopeService}
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(dbOwn, web)})
		require.Equal(t, OutcomeRolledBack, st.Outcome, "never succeeded after a rollback")
		require.Contains(t, st.Reason, "kept at their new version, rollback scope service: db")
		for _, c := range []string{"a", "b"} {
			requireServing(t, w, c, "db", "2.0.0", 2)
			requireServing(t, w, c, "web", "1.0.0", 2)
		}
		require.Equal(t, PhaseDone, st.Services[0].Phase, "db kept its new version")
		require.Equal(t, PhaseRolledBack, st.Services[1].Phase, "web went back")
	})
}

func TestReleaseNothingToChange(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.1.0", 2)
	w.seed("b", "web", "1.1.0", 2)
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
	require.Equal(t, OutcomeSucceeded, st.Outcome)
	require.Contains(t, st.Reason, "nothing to change")
	require.Equal(t, PhaseSkipped, st.Services[0].Phase)
	require.Empty(t, w.Calls("StartReplicas"))
	require.Empty(t, w.Calls("CheckImages"))
}

func TestReleaseImageMissing(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.missing["slipway/demo:9.9.9"] = true
	var phases []string
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "9.9.9"))}, func(env *testsuite.TestWorkflowEnvironment) {
		env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil).Run(func(args mock.Arguments) {
			p, _ := args.Get(0).(temporal.SearchAttributes).GetKeyword(saPhase)
			phases = append(phases, p)
		})
	})
	require.Equal(t, OutcomeRefused, st.Outcome, "a version that does not exist is refused, not rolled back")
	require.Contains(t, st.Reason, "images missing, nothing was changed")
	require.Contains(t, st.Reason, "slipway/demo:9.9.9 on cluster a (service web)")
	require.Contains(t, st.Reason, "slipway/demo:9.9.9 on cluster b (service web)")
	require.Empty(t, w.Calls("StartReplicas"))
	require.Empty(t, w.Calls("EnsureNetwork"), "nothing changed, not even the network")
	require.Empty(t, w.Calls("SetTraffic"))
	require.Empty(t, w.Calls("RemoveReplicas"))
	require.NotContains(t, phases, string(PhaseRollingBack), "no rollback")
	require.Equal(t, PhaseDone, st.Phase)
	require.Equal(t, PhasePending, st.Services[0].Phase, "never started")
	require.Empty(t, st.Verdicts)
	require.True(t, hasEvent(st, "REFUSED: images missing"))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
	}
}

func TestReleaseMaxParallelClusters(t *testing.T) {
	three := func(limit int) spec.Environment {
		env := spec.Environment{
			Environment: "staging",
			Clusters:    []spec.Cluster{{Name: "a", Wave: 1}, {Name: "b", Wave: 1}, {Name: "c", Wave: 1}},
			Rollout:     spec.EnvironmentRollout{MaxParallelClusters: limit},
			Services:    []spec.Service{svc("web", "1.1.0", func(s *spec.Service) { s.Canary = &spec.Canary{Skip: true} })},
		}
		spec.ApplyDefaults(&env)
		return env
	}
	// clusterRuns returns the clusters in the order their StartReplicas calls came, one
	// entry per change of cluster: [a b c] when one cluster changes at a time.
	clusterRuns := func(w *fakeWorld) []string {
		var out []string
		for _, c := range w.Calls("StartReplicas") {
			cl := strings.Fields(c)[1]
			if len(out) == 0 || out[len(out)-1] != cl {
				out = append(out, cl)
			}
		}
		return out
	}
	seed := func() *fakeWorld {
		w := newWorld("staging")
		for _, c := range []string{"a", "b", "c"} {
			w.seed(c, "web", "1.0.0", 2)
		}
		return w
	}
	w := seed()
	st, _ := run(t, w, ReleaseInput{Spec: three(1)})
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Len(t, clusterRuns(w), 3, "max_parallel_clusters 1: one cluster at a time, got %v", w.Calls("StartReplicas"))

	w = seed()
	st, _ = run(t, w, ReleaseInput{Spec: three(0)})
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Greater(t, len(clusterRuns(w)), 3, "no limit: the clusters of a wave change together, got %v", w.Calls("StartReplicas"))
}

// TestReleaseMaxParallelServices: with a spec that sets no cap, a release changes at most
// spec.DefaultMaxParallelServices services at once, cleans up the previous versions (or rolls
// back) at most as many service × cluster pairs at once, and sweeps sweepCap times as many;
// a larger cap lets more run together.
func TestReleaseMaxParallelServices(t *testing.T) {
	const n = 20
	// release releases n services, all in one layer; with bad, the last one's new version
	// never becomes healthy, and the release rolls back what it touched.
	release := func(limit int, bad bool) *fakeWorld {
		var services []spec.Service
		for i := 0; i < n; i++ {
			version := "1.1.0"
			if bad && i == n-1 {
				version = "1.1.0-bad"
			}
			services = append(services, svc(fmt.Sprintf("s%02d", i), version, func(s *spec.Service) {
				s.Canary = &spec.Canary{Skip: true}
				s.Verification = &spec.Verification{Skip: true}
			}))
		}
		env := spec.Environment{Environment: "staging", Clusters: []spec.Cluster{{Name: "a", Wave: 1}, {Name: "b", Wave: 2}},
			Rollout: spec.EnvironmentRollout{MaxParallelServices: limit}, Services: services}
		spec.ApplyDefaults(&env)
		w := newWorld("staging")
		w.pace = 5 * time.Millisecond
		w.unhealthy["1.1.0-bad"] = true
		for _, s := range services {
			w.seed("a", s.Name, "1.0.0", 2)
			w.seed("b", s.Name, "1.0.0", 2)
		}
		st, _ := run(t, w, ReleaseInput{Spec: env})
		want, serves := OutcomeSucceeded, "1.1.0"
		if bad {
			want, serves = OutcomeRolledBack, "1.0.0"
		}
		require.Equal(t, want, st.Outcome, st.Reason)
		for _, s := range services {
			for _, c := range []string{"a", "b"} {
				requireServing(t, w, c, s.Name, serves, 2)
			}
		}
		return w
	}
	w := release(0, false)
	require.Equal(t, spec.DefaultMaxParallelServices, 8)
	require.LessOrEqual(t, w.MaxInFlight(ActivityStartReplicas), spec.DefaultMaxParallelServices, "the default cap on services")
	require.Greater(t, w.MaxInFlight(ActivityStartReplicas), 1, "services of a layer still change together")
	require.LessOrEqual(t, w.MaxInFlight(ActivityStopReplicas), spec.DefaultMaxParallelServices, "the clean-up keeps to the cap")
	require.Greater(t, w.MaxInFlight(ActivityStopReplicas), 1)
	// The final sweep: one per service and cluster, sweepCap times the cap at once (32):
	// 40 sweeps in 2 rounds of sweepWindow, not 5.
	sweeps, rounds := w.sweepRounds()
	require.Equal(t, 2*n, sweeps)
	require.Equal(t, 2, rounds, "the sweep runs %d at once", sweepCap*spec.DefaultMaxParallelServices)

	w = release(100, false)
	require.Greater(t, w.MaxInFlight(ActivityStartReplicas), spec.DefaultMaxParallelServices, "a larger cap lifts the default")
	require.Greater(t, w.MaxInFlight(ActivityStopReplicas), spec.DefaultMaxParallelServices)
	sweeps, rounds = w.sweepRounds()
	require.Equal(t, 2*n, sweeps)
	require.Equal(t, 1, rounds)

	// The rollback removes the new replicas of every pair it touched, as many at once as the
	// cap (at least 16 services had changed cluster a when the last one failed).
	w = release(0, true)
	require.LessOrEqual(t, w.MaxInFlight(ActivityRemoveReplicas), spec.DefaultMaxParallelServices, "the rollback keeps to the cap")
	require.Greater(t, w.MaxInFlight(ActivityRemoveReplicas), 1)
	w = release(100, true)
	require.Greater(t, w.MaxInFlight(ActivityRemoveReplicas), spec.DefaultMaxParallelServices)
}

func TestReleaseCanaryLoadTestGate(t *testing.T) {
	withLoadTest := func() spec.Environment {
		env := testSpec(svc("web", "1.1.0", func(s *spec.Service) { s.Canary = &spec.Canary{LoadTest: "smoke"} }))
		env.LoadTests = []spec.LoadTest{{Name: "smoke", Service: "web", Rate: 20, Duration: spec.Duration(10 * time.Second)}}
		spec.ApplyDefaults(&env)
		return env
	}
	for _, tc := range []struct {
		outcome LoadTestOutcome
		want    Outcome
	}{{LoadTestPassed, OutcomeSucceeded}, {LoadTestFailed, OutcomeRolledBack}} {
		t.Run(string(tc.outcome), func(t *testing.T) {
			w := newWorld("staging")
			w.seed("a", "web", "1.0.0", 2)
			w.seed("b", "web", "1.0.0", 2)
			var got LoadTestInput
			st, env := run(t, w, ReleaseInput{Spec: withLoadTest()}, func(env *testsuite.TestWorkflowEnvironment) {
				RegisterLoadTest(env)
				env.OnWorkflow(LoadTestWorkflowName, mock.Anything, mock.Anything).Return(
					func(_ workflow.Context, in LoadTestInput) (LoadTestResult, error) {
						got = in
						return LoadTestResult{Test: "smoke", Service: "web", Outcome: tc.outcome, Reason: "p95 410ms above the 300ms SLO"}, nil
					})
			})
			require.Equal(t, tc.want, st.Outcome, st.Reason)
			env.AssertExpectations(t)
			require.Equal(t, []string{"slipway.staging.a.web.1.1.0.0"}, got.Containers, "aimed at the canary only")
			require.True(t, got.HoldsLock, "the release holds the lock")
			gate := st.Verdicts[1]
			require.Equal(t, "canary load test", gate.Stage)
			if tc.outcome == LoadTestFailed {
				require.Contains(t, st.Reason, "load test smoke")
				require.Equal(t, []string{"1.0.0"}, w.versions("a", "web"))
			}
		})
	}
}

func TestReleaseCancelledRollsBack(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", func(s *spec.Service) {
		s.Rollout.Pause = spec.Duration(time.Minute)
	}))}
	st, _ := run(t, w, in, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(env.CancelWorkflow, 30*time.Second)
	})
	// Cancelled from outside Slipway: reported as terminated, its own rollback the repair.
	require.Equal(t, OutcomeTerminated, st.Outcome)
	require.NotNil(t, st.Repair)
	require.Equal(t, OutcomeRolledBack, st.Repair.Outcome)
	require.Equal(t, "release cancelled from outside Slipway", st.Repair.Reason)
	require.Contains(t, st.Reason, "cancelled from outside Slipway; repair rolled_back")
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
		require.Equal(t, []string{"1.0.0"}, w.versions(c, "web"), "the rollback ran after the cancellation")
	}
}
