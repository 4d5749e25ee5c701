package workflows

// Workflow and schedule IDs, built in one place for every caller (the API, the CLI, the
// schedules, the workflows themselves). Every ID here is part of the durable contract: running
// releases, held locks, repairs and schedules are found again by these exact strings (Temporal
// allows one open workflow per ID, which is what makes a lock a lock and an Idempotency-Key
// name one release), so a format never changes. A new kind of ID gets its prefix and its
// builder here.

// ID prefixes. Part of the durable contract: never change one.
const (
	// ReleaseIDPrefix starts every release's workflow ID.
	ReleaseIDPrefix = "release-"
	// LockIDPrefix starts every release lock's workflow ID.
	LockIDPrefix = "slipway-lock-"
	// RepairIDPrefix starts every repair's workflow ID (followed by the release's).
	RepairIDPrefix = "slipway-repair-"
	// LoadTestIDPrefix starts the workflow ID of every load-test run started by hand or by a
	// schedule, and every load-test schedule's ID.
	LoadTestIDPrefix = "loadtest-"
	// PlanIDPrefix starts every Plan workflow's ID.
	PlanIDPrefix = "plan-"
)

// ReleaseWorkflowID is the workflow ID of a release: "release-<environment>-<id>". Part of
// the durable contract (the API reads the environment back from it; an Idempotency-Key names
// one).
func ReleaseWorkflowID(environment, id string) string {
	return ReleaseIDPrefix + environment + "-" + id
}

// LockWorkflowID is the workflow ID of the release lock of one service in one environment:
// "slipway-lock-<environment>-<service>". Part of the durable contract: the lock is this ID
// (one open workflow per ID), so every release and load test of the service must build the
// same string.
func LockWorkflowID(environment, service string) string {
	return LockIDPrefix + environment + "-" + service
}

// RepairWorkflowID is the workflow ID of the repair of a release:
// "slipway-repair-<release workflow ID>". Part of the durable contract: one repair per
// release, found again by the API's status.
func RepairWorkflowID(releaseWorkflowID string) string { return RepairIDPrefix + releaseWorkflowID }

// LoadTestWorkflowID is the workflow ID of a load-test run started by hand:
// "loadtest-<environment>-<test>-<id>". Scheduled runs get the schedule's ID
// (LoadTestScheduleID) with the server's timestamp suffix. Part of the durable contract (an
// Idempotency-Key names one run).
func LoadTestWorkflowID(environment, test, id string) string {
	return LoadTestScheduleID(environment, test) + "-" + id
}

// LoadTestScheduleID is the ID of a load test's Temporal Schedule:
// "loadtest-<environment>-<test>". It is also the prefix of its runs' workflow IDs (the
// server appends the scheduled time). Part of the durable contract: sync finds the schedules
// it created by it.
func LoadTestScheduleID(environment, test string) string {
	return LoadTestIDPrefix + environment + "-" + test
}

// CanaryLoadTestWorkflowID is the workflow ID of a release's canary load-test child:
// "<release workflow ID>-loadtest-<service>-<test>". Part of the durable contract: it is
// recorded in the histories of releases with a canary load test.
func CanaryLoadTestWorkflowID(releaseWorkflowID, service, test string) string {
	return releaseWorkflowID + "-" + LoadTestIDPrefix + service + "-" + test
}

// PlanWorkflowID is the workflow ID of a Plan workflow: "plan-<environment>-<id>". Part of the
// durable contract like the others (it shows in the Web UI).
func PlanWorkflowID(environment, id string) string {
	return PlanIDPrefix + environment + "-" + id
}
