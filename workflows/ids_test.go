package workflows

import "testing"

// TestIDFormats pins every workflow and schedule ID to its literal format: running releases,
// held locks, repairs and schedules are found again by these strings, so a change here breaks
// what is in flight (ids.go).
func TestIDFormats(t *testing.T) {
	for got, want := range map[string]string{
		ReleaseWorkflowID("staging", "20261127t094403abcdef"):         "release-staging-20261127t094403abcdef",
		LockWorkflowID("staging", "web"):                              "slipway-lock-staging-web",
		RepairWorkflowID("release-staging-r1"):                        "slipway-repair-release-staging-r1",
		LoadTestWorkflowID("staging", "peak", "k0123"):                "loadtest-staging-peak-k0123",
		LoadTestScheduleID("staging", "peak"):                         "loadtest-staging-peak",
		CanaryLoadTestWorkflowID("release-staging-r1", "web", "peak"): "release-staging-r1-loadtest-web-peak",
		PlanWorkflowID("staging", "20261127t094403abcdef"):            "plan-staging-20261127t094403abcdef",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}
