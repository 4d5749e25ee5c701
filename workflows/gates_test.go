package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/spec"
)

// oneWave is a defaulted environment whose clusters a and b are both in wave 1 (they roll
// out and verify in parallel), with a as the canary cluster.
func oneWave(services ...spec.Service) spec.Environment {
	env := spec.Environment{
		Environment: "staging",
		Clusters:    []spec.Cluster{{Name: "a", Wave: 1}, {Name: "b", Wave: 1}},
		Services:    services,
	}
	spec.ApplyDefaults(&env)
	return env
}

// inconclusiveOn makes the verification of one stage inconclusive on every cluster.
func inconclusiveOn(stage string) func(VerifyInput) Verdict {
	return func(in VerifyInput) Verdict {
		if in.Stage == stage {
			return Verdict{Result: VerdictInconclusive, Reason: "only 3 samples of the new version, 5 needed", Evidence: Evidence{Samples: 3}}
		}
		return Verdict{}
	}
}

func queryStatus(t *testing.T, env *testsuite.TestWorkflowEnvironment, into *ReleaseStatus) {
	t.Helper()
	v, err := env.QueryWorkflow(QueryStatus)
	require.NoError(t, err)
	require.NoError(t, v.Get(into))
}

// TestReleaseGatesPerCluster: the two clusters of one wave are both inconclusive, so two
// gates of one service are pending at once; each is approved by naming its cluster, and the
// release goes on only when both are.
func TestReleaseGatesPerCluster(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.verdict = inconclusiveOn("wave 1")
	var both, one ReleaseStatus
	var ambiguous, wrongCluster, abortWrongGate, approveA, approveB error
	st, _ := run(t, w, ReleaseInput{Spec: oneWave(svc("web", "1.1.0"))}, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() { queryStatus(t, env, &both) }, time.Minute)
		decide(env, 2*time.Minute, UpdateApprove, Decision{Actor: "hana"}, &ambiguous)
		decide(env, 2*time.Minute, UpdateApprove, Decision{Actor: "hana", Service: "web", Cluster: "c"}, &wrongCluster)
		decide(env, 2*time.Minute, UpdateAbort, Decision{Actor: "hana", Service: "web", Cluster: "c"}, &abortWrongGate)
		decide(env, 3*time.Minute, UpdateApprove, Decision{Actor: "hana", Cluster: "a", Reason: "a is quiet today"}, &approveA)
		env.RegisterDelayedCallback(func() { queryStatus(t, env, &one) }, 4*time.Minute)
		decide(env, 5*time.Minute, UpdateApprove, Decision{Actor: "ivan", Service: "web", Cluster: "b"}, &approveB)
	})

	// both gates were pending, each with its service and cluster
	require.Equal(t, PhaseAwaitingApproval, both.Phase)
	require.Equal(t, PhaseAwaitingApproval, both.Services[0].Phase)
	require.Len(t, both.Gates, 2)
	for i, c := range []string{"a", "b"} {
		g := both.Gates[i]
		require.Equal(t, "web", g.Service)
		require.Equal(t, c, g.Cluster)
		require.Contains(t, g.Reason, "inconclusive verdict on wave 1")
		require.Equal(t, spec.OnTimeoutRollback, g.OnTimeout)
		require.Equal(t, 30*time.Minute, g.Deadline.Sub(g.Since))
	}
	// approve with no cluster: which gate? rejected, naming the clusters
	require.ErrorContains(t, ambiguous, "service web has 2 gates pending, on clusters a, b: name the cluster")
	require.ErrorContains(t, wrongCluster, "service web on cluster c is not awaiting approval (awaiting: web on a, web on b)")
	require.ErrorContains(t, abortWrongGate, "service web on cluster c is not awaiting a decision")
	require.NoError(t, approveA)
	// after the first approval the other gate still holds the release
	require.Len(t, one.Gates, 1)
	require.Equal(t, "b", one.Gates[0].Cluster)
	require.Equal(t, PhaseAwaitingApproval, one.Phase)
	require.Equal(t, PhaseAwaitingApproval, one.Services[0].Phase)
	require.NoError(t, approveB)

	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
	require.Equal(t, "ivan", st.ApprovedBy)
	require.Empty(t, st.Gates)
	require.True(t, hasEvent(st, "approved by hana: a is quiet today"))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.1.0", 2)
	}
	var approvals []string
	for _, e := range st.Events {
		if e.Phase == PhaseAwaitingApproval && e.Service == "web" && len(e.Message) > 11 && e.Message[:11] == "approved by" {
			approvals = append(approvals, e.Cluster)
		}
	}
	require.Equal(t, []string{"a", "b"}, approvals, "each approval names its cluster")
}

// TestReleaseGateApproveAllServices: an approve that names nothing approves every pending
// gate as long as that is one per service; the canary approval gate has no cluster.
func TestReleaseGateApproveAllServices(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("a", "api", "1.0.0", 2)
	gated := func(s *spec.Service) {
		s.Clusters = []string{"a"}
		s.Canary = &spec.Canary{Approval: &spec.Approval{Required: true, Timeout: spec.Duration(10 * time.Minute)}}
	}
	var during ReleaseStatus
	var ok error
	st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", gated), svc("api", "2.0.0", gated))}, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterDelayedCallback(func() { queryStatus(t, env, &during) }, time.Minute)
		decide(env, 2*time.Minute, UpdateApprove, Decision{Actor: "jo"}, &ok)
	})
	require.Len(t, during.Gates, 2)
	require.Equal(t, []string{"api", "web"}, []string{during.Gates[0].Service, during.Gates[1].Service})
	require.Empty(t, during.Gates[0].Cluster, "the canary approval is per service")
	require.NoError(t, ok)
	require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
}

// TestReleaseAbortAtGate: an abort naming a pending gate refuses it: the release rolls back.
func TestReleaseAbortAtGate(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.verdict = inconclusiveOn("wave 1")
	var ok error
	st, _ := run(t, w, ReleaseInput{Spec: oneWave(svc("web", "1.1.0"))}, func(env *testsuite.TestWorkflowEnvironment) {
		decide(env, time.Minute, UpdateAbort, Decision{Actor: "kim", Service: "web", Cluster: "b", Reason: "b looks wrong"}, &ok)
	})
	require.NoError(t, ok)
	require.Equal(t, OutcomeRolledBack, st.Outcome)
	require.Equal(t, "kim", st.AbortedBy)
	require.True(t, hasEvent(st, "aborted by kim at the gate of web on b: b looks wrong"))
	require.Equal(t, PhaseRolledBack, st.Services[0].Phase)
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.0.0", 2)
	}
}
