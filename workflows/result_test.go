package workflows

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

// TestReleaseRolledBackFailsItsWorkflow runs a release whose canary fails over the fake
// world: it ends as a failed workflow (ReleaseRolledBack, non-retryable, the status in its
// details: run's requireEndedAs), and its status carries the Jenkins build, commit and
// description it was started with.
func TestReleaseRolledBackFailsItsWorkflow(t *testing.T) {
	w := newWorld("staging")
	w.seed("a", "web", "1.0.0", 2)
	w.seed("b", "web", "1.0.0", 2)
	w.verdict = failOn("canary", "a", "error rate 50.0% above the 5.0% allowed")
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0")), Description: "web #42",
		BuildURL: "https://jenkins.example/job/web/42/", Commit: "0123abcd"}
	st, env := run(t, w, in)
	require.Equal(t, OutcomeRolledBack, st.Outcome)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(env.GetWorkflowError(), &ae))
	require.Equal(t, ErrTypeReleaseRolledBack, ae.Type())
	require.True(t, strings.HasPrefix(ae.Message(), "release rolled_back: "), ae.Message())
	require.Equal(t, "web #42", st.Description)
	require.Equal(t, "https://jenkins.example/job/web/42/", st.BuildURL)
	require.Equal(t, "0123abcd", st.Commit)
	require.NotEmpty(t, st.Verdicts, "the details carry the whole status")
}

// TestReleaseResultOf reads both forms of a release's end: a completed run's result and a
// failed run's details; any other error is passed on.
func TestReleaseResultOf(t *testing.T) {
	ok := ReleaseStatus{ID: "r1", Outcome: OutcomeSucceeded, Reason: "done"}
	require.NoError(t, releaseError(ok), "a success completes")
	st, err := ReleaseResultOf(func(v any) error { *(v.(*ReleaseStatus)) = ok; return nil })
	require.NoError(t, err)
	require.Equal(t, ok, st)

	for o, typ := range map[Outcome]string{OutcomeRolledBack: ErrTypeReleaseRolledBack, OutcomeFailed: ErrTypeReleaseFailed,
		OutcomeRefused: ErrTypeReleaseRefused, OutcomeTerminated: ErrTypeReleaseTerminated} {
		bad := ReleaseStatus{ID: "r2", Outcome: o, Reason: "because"}
		ferr := releaseError(bad)
		var ae *temporal.ApplicationError
		require.True(t, errors.As(ferr, &ae))
		require.Equal(t, typ, ae.Type())
		require.True(t, ae.NonRetryable())
		// As a client sees it: wrapped in the workflow's execution error.
		wrapped := fmt.Errorf("workflow execution error (type: Release): %w", ferr)
		st, err := ReleaseResultOf(func(any) error { return wrapped })
		require.NoError(t, err, o)
		require.Equal(t, o, st.Outcome)
		require.Equal(t, "because", st.Reason)
	}

	other := errors.New("workflow terminated")
	_, err = ReleaseResultOf(func(any) error { return other })
	require.ErrorIs(t, err, other)
	foreign := temporal.NewApplicationError("boom", "SomethingElse", ReleaseStatus{Outcome: OutcomeFailed})
	_, err = ReleaseResultOf(func(any) error { return foreign })
	require.Error(t, err, "only a release's own failure types carry its status")
}

// TestReleaseStaticMetadata: the Web UI's summary and details at start, and the current
// details line.
func TestReleaseStaticMetadata(t *testing.T) {
	in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0")), TriggeredBy: "jenkins", Description: "web #42",
		BuildURL: "https://jenkins.example/job/web/42/", Commit: "0123abcd"}
	sum, det := ReleaseStaticMetadata(in, []string{"web=1.1.0"})
	require.Equal(t, "release staging: web=1.1.0", sum)
	for _, want := range []string{"staging", "web=1.1.0", "jenkins", "web #42", "https://jenkins.example/job/web/42/", "0123abcd"} {
		require.Contains(t, det, want)
	}
	r := &release{in: in}
	r.st.Phase = PhaseVerifying
	require.Equal(t, "staging: web=1.1.0 · phase verifying · running", r.detailsLine([]string{"web=1.1.0"}))
	r.st.Phase, r.st.Outcome, r.st.Reason = PhaseDone, OutcomeRolledBack, "canary failed"
	require.Equal(t, "staging: web=1.1.0 · phase done · rolled_back: canary failed", r.detailsLine([]string{"web=1.1.0"}))
}
