package workflows

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"
)

// A release that did not succeed ends as a failed workflow (since changeFailedResult), so the
// Temporal Web UI's workflow list tells it from a success at a glance: Failed (red) instead
// of a green Completed, and its Failures count goes up. The failure is a non-retryable
// ApplicationError of one of the types below whose details carry the whole ReleaseStatus;
// a succeeded release completes with the ReleaseStatus as its result, as every release did
// before. ReleaseResult reads the status from either form: every reader of a release's
// final status goes through it.

// Application error types of a release that did not succeed, by outcome.
const (
	ErrTypeReleaseRolledBack = "ReleaseRolledBack" // OutcomeRolledBack
	ErrTypeReleaseFailed     = "ReleaseFailed"     // OutcomeFailed (the rollback could not finish)
	ErrTypeReleaseRefused    = "ReleaseRefused"    // OutcomeRefused (nothing was changed)
	ErrTypeReleaseTerminated = "ReleaseTerminated" // OutcomeTerminated (cancelled from outside Slipway)
)

// releaseErrorType is the application error type of an outcome ("" for succeeded).
func releaseErrorType(o Outcome) string {
	switch o {
	case OutcomeSucceeded:
		return ""
	case OutcomeRolledBack:
		return ErrTypeReleaseRolledBack
	case OutcomeRefused:
		return ErrTypeReleaseRefused
	case OutcomeTerminated:
		return ErrTypeReleaseTerminated
	default:
		return ErrTypeReleaseFailed
	}
}

// isReleaseErrorType reports whether t is one of the types above.
func isReleaseErrorType(t string) bool {
	switch t {
	case ErrTypeReleaseRolledBack, ErrTypeReleaseFailed, ErrTypeReleaseRefused, ErrTypeReleaseTerminated:
		return true
	}
	return false
}

// releaseError is how a release that ended with st fails its workflow: nil for a success,
// else a non-retryable ApplicationError ("release rolled_back: <reason>") whose details are st.
func releaseError(st ReleaseStatus) error {
	t := releaseErrorType(st.Outcome)
	if t == "" {
		return nil
	}
	return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("release %s: %s", st.Outcome, st.Reason), t,
		temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{st}})
}

// ReleaseStatusFromError reads the final status out of the error a release's run ended with
// (a client's WorkflowRun.Get, a test environment's GetWorkflowError): ok is false for any
// other error (the run was terminated, timed out, or its result could not be read).
func ReleaseStatusFromError(err error) (st ReleaseStatus, ok bool) {
	var ae *temporal.ApplicationError
	if err == nil || !errors.As(err, &ae) || !isReleaseErrorType(ae.Type()) || !ae.HasDetails() {
		return ReleaseStatus{}, false
	}
	if ae.Details(&st) != nil {
		return ReleaseStatus{}, false
	}
	return st, true
}

// ReleaseResultOf reads a release's final status with get (which decodes a run's result and
// returns the error the run ended with): the result of a completed run (a success, or any
// release started before changeFailedResult), or the details of a failed one. err is nil
// exactly when a status was read.
func ReleaseResultOf(get func(valuePtr any) error) (ReleaseStatus, error) {
	var st ReleaseStatus
	err := get(&st)
	if err == nil {
		return st, nil
	}
	if fst, ok := ReleaseStatusFromError(err); ok {
		return fst, nil
	}
	return st, err
}

// ResultGetter is what ReleaseResult needs of a run: client.WorkflowRun has it.
type ResultGetter interface {
	Get(ctx context.Context, valuePtr any) error
}

// ReleaseResult waits for a release run to close and returns its final status, from either
// form (ReleaseResultOf).
func ReleaseResult(ctx context.Context, run ResultGetter) (ReleaseStatus, error) {
	return ReleaseResultOf(func(v any) error { return run.Get(ctx, v) })
}
