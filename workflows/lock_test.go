package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/spec"
)

// overlapParent runs releases as children, the i-th starting i minutes after the first,
// and returns their final statuses: the way to run two releases at once in one test
// environment, where they meet on the real lock workflow IDs.
func overlapParent(ctx workflow.Context, ins []ReleaseInput) ([]ReleaseStatus, error) {
	var fs []workflow.Future
	for i, in := range ins {
		if i > 0 {
			if err := workflow.Sleep(ctx, time.Minute); err != nil {
				return nil, err
			}
		}
		cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{WorkflowID: ReleaseWorkflowID(in.Spec.Environment, in.ID)})
		fs = append(fs, workflow.ExecuteChildWorkflow(cctx, ReleaseWorkflowName, in))
	}
	out := make([]ReleaseStatus, len(fs))
	for i, f := range fs {
		st, err := ReleaseResultOf(func(v any) error { return f.Get(ctx, v) })
		if err != nil {
			return nil, err
		}
		out[i] = st
	}
	return out, nil
}

func runOverlap(t *testing.T, w *fakeWorld, ins ...ReleaseInput) []ReleaseStatus {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetDetachedChildWait(false) // a lock held after a failed rollback outlives its release
	Register(env)
	env.RegisterWorkflow(overlapParent)
	w.register(env)
	env.ExecuteWorkflow(overlapParent, ins)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var out []ReleaseStatus
	require.NoError(t, env.GetWorkflowResult(&out))
	return out
}

// gated is a release of web held at its approval gate for an hour (then rolled back).
func gated(id string) ReleaseInput {
	return ReleaseInput{ID: id, TriggeredBy: "jenkins", Spec: testSpec(
		svc("web", "1.1.0", func(s *spec.Service) {
			s.Canary = &spec.Canary{Approval: &spec.Approval{Required: true, Timeout: spec.Duration(time.Hour)}}
		}),
		svc("api", "3.0.0"),
	), Services: []string{"web"}}
}

func overlapWorld() *fakeWorld {
	w := newWorld("staging")
	for _, c := range []string{"a", "b"} {
		w.seed(c, "web", "1.0.0", 2)
		w.seed(c, "api", "2.0.0", 2)
	}
	return w
}

func TestReleaseRefusedForOverlap(t *testing.T) {
	w := overlapWorld()
	second := gated("r2")
	second.Spec.Services[0].Version = "1.2.0"
	disjoint := gated("r3")
	disjoint.Services = []string{"api"}
	st := runOverlap(t, w, gated("r1"), second, disjoint)

	// r2 (web again) is refused while r1 holds web; nothing of 1.2.0 was started
	require.Equal(t, OutcomeRefused, st[1].Outcome)
	require.Contains(t, st[1].Reason, "service web is being released by another release")
	require.Contains(t, st[1].Reason, LockWorkflowID("staging", "web"))
	require.Empty(t, w.Calls("StartReplicas a web 1.2.0"))
	require.Empty(t, w.Calls("StartReplicas b web 1.2.0"))
	// r3 (api only) ran beside r1 and went through
	require.Equal(t, OutcomeSucceeded, st[2].Outcome, st[2].Reason)
	requireServing(t, w, "b", "api", "3.0.0", 2)
	// r1 was never approved: rolled back after its hour
	require.Equal(t, OutcomeRolledBack, st[0].Outcome)
	requireServing(t, w, "a", "web", "1.0.0", 2)
}

func TestReleaseQueuedBehindOverlap(t *testing.T) {
	w := overlapWorld()
	second := gated("r2")
	second.Spec.Services[0].Version = "1.2.0"
	second.Spec.Services[0].Canary.Approval.Required = false
	second.Queue = true
	second.QueueTimeout = spec.Duration(2 * time.Hour)
	st := runOverlap(t, w, gated("r1"), second)

	require.Equal(t, OutcomeRolledBack, st[0].Outcome)
	require.Equal(t, OutcomeSucceeded, st[1].Outcome, st[1].Reason)
	require.True(t, hasEvent(st[1], "queued: service web is being released by another release"))
	// r2 started only after r1 had finished its rollback
	require.True(t, st[1].EndedAt.After(st[0].EndedAt))
	for _, c := range []string{"a", "b"} {
		requireServing(t, w, c, "web", "1.2.0", 2)
	}
}

func TestInFlightQueryAndOverlap(t *testing.T) {
	require.Equal(t,
		"SlipwayKind = 'release' AND SlipwayEnvironment = 'staging' AND ExecutionStatus = 'Running' AND SlipwayServices IN ('api', 'web')",
		InFlightQuery("staging", []string{"web", "api", "web"}))
	require.Equal(t, "SlipwayKind = 'release' AND SlipwayEnvironment = 'o''brien' AND ExecutionStatus = 'Running'", InFlightQuery("o'brien", nil))
	require.Equal(t, []string{"web"}, Overlap([]string{"api", "web"}, []string{"web", "db"}))
	require.Empty(t, Overlap([]string{"api"}, []string{"web"}))
	require.Equal(t, "slipway-lock-staging-web", LockWorkflowID("staging", "web"))
	require.Equal(t, []string{"api", "web"}, ReleaseServices(ReleaseInput{Spec: testSpec(svc("web", "1"), svc("api", "2"))}))
	require.Equal(t, []string{"web"}, ReleaseServices(ReleaseInput{Spec: testSpec(svc("web", "1"), svc("api", "2")), Services: []string{"web"}}))
}
