package workflows

import "go.temporal.io/sdk/temporal"

// Search attributes, built in one place: those a workflow starts with, for every caller that
// starts one (the API, the CLI, schedules), so the Web UI and the API's lists filter on them
// from the first second; and those the workflows upsert as they go (progress.go, loadtest.go,
// repair.go) to keep them current.

// Typed search attribute keys (see the SA* names in api.go).
var (
	saEnvironment = temporal.NewSearchAttributeKeyKeyword(SAEnvironment)
	saServices    = temporal.NewSearchAttributeKeyKeywordList(SAServices)
	saVersions    = temporal.NewSearchAttributeKeyKeywordList(SAVersions)
	saPhase       = temporal.NewSearchAttributeKeyKeyword(SAPhase)
	saOutcome     = temporal.NewSearchAttributeKeyKeyword(SAOutcome)
	saTriggeredBy = temporal.NewSearchAttributeKeyKeyword(SATriggeredBy)
	saKind        = temporal.NewSearchAttributeKeyKeyword(SAKind)
)

// ReleaseStartAttributes are a release's search attributes at start: environment, the
// services it may change, their versions ("svc=1.2.3"), pending, who triggered it.
func ReleaseStartAttributes(environment string, services, versions []string, triggeredBy string) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		saKind.ValueSet(KindRelease),
		saEnvironment.ValueSet(environment),
		saServices.ValueSet(services),
		saVersions.ValueSet(versions),
		saPhase.ValueSet(string(PhasePending)),
		saTriggeredBy.ValueSet(triggeredBy),
	)
}

// LoadTestStartAttributes are a load test's search attributes at start. A schedule's own
// attributes name only the kind and environment (service "" and triggeredBy "" leave those
// out).
func LoadTestStartAttributes(environment, service, triggeredBy string) temporal.SearchAttributes {
	updates := []temporal.SearchAttributeUpdate{saKind.ValueSet(KindLoadTest), saEnvironment.ValueSet(environment)}
	if service != "" {
		updates = append(updates, saServices.ValueSet([]string{service}))
	}
	if triggeredBy != "" {
		updates = append(updates, saTriggeredBy.ValueSet(triggeredBy))
	}
	return temporal.NewSearchAttributes(updates...)
}

// lockStartAttributes are the search attributes of a lock that outlives its release: findable
// while held after a failure (HeldLocksQuery).
func lockStartAttributes(environment, service string) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		saKind.ValueSet(KindLock), saEnvironment.ValueSet(environment),
		saServices.ValueSet([]string{service}), saPhase.ValueSet(LockHeld))
}

// runAttributes are the search attributes a release or a load test upserts as it goes: all
// of them, current (outcome "running" until it ends).
func runAttributes(kind, environment string, services, versions []string, phase, outcome, triggeredBy string) []temporal.SearchAttributeUpdate {
	return []temporal.SearchAttributeUpdate{
		saKind.ValueSet(kind),
		saEnvironment.ValueSet(environment),
		saServices.ValueSet(services),
		saVersions.ValueSet(versions),
		saPhase.ValueSet(phase),
		saOutcome.ValueSet(outcome),
		saTriggeredBy.ValueSet(triggeredBy),
	}
}
