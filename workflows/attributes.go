package workflows

import "go.temporal.io/sdk/temporal"

// The search attributes a workflow starts with, built in one place for every caller that
// starts one (the API, the CLI, schedules): the Web UI and the API's lists filter on them
// from the first second, before the workflow's own upserts (progress.go) keep them current.

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
