package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// swarmDefaultsSpec is defaultsSpec (no canary, rollout, verification or rollback policy:
// the built-in defaults judge) on the mixed environment, the swarm the canary cluster in
// wave 1 and the plain engine in wave 2.
func (f *fixture) swarmDefaultsSpec(version string) spec.Environment {
	env := f.defaultsSpec(version)
	swarmFirst(&env)
	return env
}

// TestSwarmDefaults releases onto a swarm with the built-in defaults, as a new user would:
// a version that fails 5 % of its requests at random (intermittent, not blatant) is caught
// at the canary on the swarm and rolled back; a good version that is slow to start (503 for
// its first 12 s, its image's HEALTHCHECK unhealthy meanwhile) goes through: Swarm must not
// replace its tasks for that HEALTHCHECK, and Slipway's health wait must outlast the start.
func TestSwarmDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("releases at the default windows")
	}
	t.Parallel() // minutes of soaks and windows, mostly waiting
	f := newMixedFixture(t)
	f.startWorker()
	f.seedSpec(f.swarmDefaultsSpec("1.0.0"))

	st := f.waitFor(f.release("intermittent", workflows.ReleaseInput{Spec: f.swarmDefaultsSpec("bad-intermittent")}), 6*time.Minute)
	require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	requireCaughtAtCanary(t, st)
	for _, v := range st.Verdicts {
		require.Equal(t, "s", v.Cluster, "judged on the swarm: %+v", v)
	}
	require.Contains(t, st.Reason, "on s")
	for cluster, versions := range f.requireServes("1.0.0") {
		require.NotContains(t, versions, "bad-intermittent", "left on %s", cluster)
	}

	// Canary soak, four batches of one slow starter each, their windows and the bake.
	st = f.waitFor(f.release("slow", workflows.ReleaseInput{Spec: f.swarmDefaultsSpec("slow-start")}), 8*time.Minute)
	require.Equal(t, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
	f.requireServes("slow-start")
}
