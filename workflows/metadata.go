package workflows

import (
	"fmt"
	"strings"

	"go.temporal.io/sdk/workflow"
)

// Temporal user metadata: what the Web UI shows of a release without opening its history. The
// API sets the static summary and details at start (ReleaseStaticMetadata); the workflow keeps
// its current details (one line: environment, versions, phase, outcome) as its phase changes
// (setDetails, from upsert); activities carry a summary of what they do ("verify demo 1.1.0
// on local-a (canary)"). None of it is a command the workflow's determinism depends on:
// current details are answered from memory, and an activity's summary rides along with its
// scheduling (the committed histories replay with or without it).

// summaryKey holds the summary the next activities get (optionsFor, rollbackOptionsFor).
type summaryKey struct{}

// withSummary makes the activities started from ctx carry summary s in the Web UI.
func withSummary(ctx workflow.Context, format string, args ...any) workflow.Context {
	return workflow.WithValue(ctx, summaryKey{}, fmt.Sprintf(format, args...))
}

// summaryOf is the summary withSummary put on ctx ("" if none).
func summaryOf(ctx workflow.Context) string {
	s, _ := ctx.Value(summaryKey{}).(string)
	return s
}

// ReleaseStaticMetadata is a release's static summary and details in the Web UI, set by the
// API at start: environment, services and versions, trigger and build. versions are
// "svc=1.2.3".
func ReleaseStaticMetadata(in ReleaseInput, versions []string) (summary, details string) {
	summary = fmt.Sprintf("release %s: %s", in.Spec.Environment, strings.Join(versions, ", "))
	if in.FastTrack && in.RollbackOf != "" {
		summary += " (fast-track rollback of " + in.RollbackOf + ")"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "**Environment:** %s\n\n", in.Spec.Environment)
	fmt.Fprintf(&b, "**Versions:** %s\n\n", strings.Join(versions, ", "))
	fmt.Fprintf(&b, "**Triggered by:** %s\n\n", orUnknown(in.TriggeredBy))
	if in.Description != "" {
		fmt.Fprintf(&b, "**Description:** %s\n\n", in.Description)
	}
	if in.BuildURL != "" {
		fmt.Fprintf(&b, "**Build:** %s\n\n", in.BuildURL)
	}
	if in.Commit != "" {
		fmt.Fprintf(&b, "**Commit:** %s\n\n", in.Commit)
	}
	return summary, strings.TrimSpace(b.String())
}

// detailsLine is the release's current details: "staging: web=1.1.0 · phase verifying ·
// running", then the outcome and its reason once it ended.
func (r *release) detailsLine(versions []string) string {
	line := fmt.Sprintf("%s: %s · phase %s", r.in.Spec.Environment, strings.Join(versions, ", "), r.st.Phase)
	if r.st.Outcome == OutcomeNone {
		return line + " · running"
	}
	return line + " · " + string(r.st.Outcome) + ": " + r.st.Reason
}

// setDetails shows the current details in the Web UI.
func (r *release) setDetails(ctx workflow.Context, versions []string) {
	workflow.SetCurrentDetails(ctx, r.detailsLine(versions))
}
