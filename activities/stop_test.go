package activities_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// TestStopReplicasReportsKills: a replica that ignores SIGTERM is killed when the grace runs
// out, and the result says so; one that exits on SIGTERM is only stopped. A missing
// container and a second stop of stopped ones are success and report nothing.
func TestStopReplicasReportsKills(t *testing.T) {
	f := newFixture(t)
	polite, err := f.start(demo("1.0.0"), engine.RoleStable, 0)
	require.NoError(t, err)
	stubborn, err := f.start(demo("1.0.0", func(s *spec.Service) {
		s.Name = "api"
		s.Env = map[string]string{"DEMO_IGNORE_SIGTERM": "true"}
	}), engine.RoleStable, 0)
	require.NoError(t, err)
	all := append(names(polite), names(stubborn)...)
	missing := "slipway." + f.env + ".a.web.9.9.9.0"

	stop := func() workflows.StopReplicasResult {
		t.Helper()
		v, err := f.activityEnv().ExecuteActivity(workflows.ActivityStopReplicas,
			workflows.ContainersInput{Target: f.target, Names: append(append([]string(nil), all...), missing), StopTimeout: 1500 * time.Millisecond})
		require.NoError(t, err)
		var res workflows.StopReplicasResult
		require.NoError(t, v.Get(&res))
		return res
	}
	res := stop()
	require.Equal(t, 2*time.Second, res.Grace, "the engine counts whole seconds")
	require.ElementsMatch(t, all, res.Stopped)
	require.Equal(t, names(stubborn), res.Killed)
	for _, v := range f.inspect().Clusters[0].Services {
		for _, c := range v.Versions[0].Containers {
			require.False(t, c.Running(), c.Name)
		}
	}

	again := stop()
	require.Empty(t, again.Stopped, "nothing was running")
	require.Empty(t, again.Killed)
}
