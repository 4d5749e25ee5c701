package e2e

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// newMixedFixture is an environment of two clusters: a, the default engine, and s, a
// single-node swarm on a second daemon of its own (testenv.SwarmDaemon: the default engine
// is never put in swarm mode). The swarm is the canary cluster, in wave 1; a is wave 2.
func newMixedFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, 1)
	host := testenv.SwarmDaemon(t)
	f.targets = append(f.targets, workflows.Target{Environment: f.env, Cluster: "s", Endpoint: host, Kind: spec.KindSwarm})
	// The swarm's services go before its daemon stops (cleanups run last first); the
	// fixture's own cleanup then sees the default engine only.
	t.Cleanup(func() {
		f.cleanup(f.targets[1])
		f.targets = f.targets[:1]
	})
	return f
}

// swarmSpec is f.spec with cluster s of kind swarm, the canary cluster, in wave 1, and no
// bake.
func (f *fixture) swarmSpec(version string) spec.Environment {
	// No bake: the release ends after its last wave (the watch is tested by the bad release).
	env := f.spec(version, func(s *spec.Service) {
		zero := spec.Duration(0)
		s.Verification.Bake = &zero
	})
	for i := range env.Clusters {
		c := &env.Clusters[i]
		if c.Name == "s" {
			c.Kind, c.Canary, c.Wave = spec.KindSwarm, true, 1
		} else {
			c.Canary, c.Wave = false, 2
		}
	}
	return env
}

// TestSwarmMixedRelease releases through the real worker and the embedded Temporal server
// onto an environment that mixes a plain engine and a swarm: a version that crashes is
// caught at the canary on the swarm and rolled back there (the plain cluster untouched, the
// stable version serving on both, nothing of the bad version left).
func TestSwarmMixedRelease(t *testing.T) {
	f := newMixedFixture(t)
	f.startWorker()
	f.seedSpec(f.swarmSpec("1.0.0"))

	// The swarm's replicas are Swarm services, one per version, in dnsrr mode.
	sw := f.targets[1]
	e, err := f.dialer.Dial(ctxT(t, time.Minute), sw.EngineEndpoint())
	require.NoError(t, err)
	_, isSwarm := e.(*dockerengine.Swarm)
	require.True(t, isSwarm, "the dialer gives a swarm adapter for kind: swarm")

	st := f.wait(f.release("bad", workflows.ReleaseInput{Spec: f.swarmSpec("bad-crash")}))
	require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	// Caught by the health wait or, first, by the lifecycle watch (the task's die).
	require.Regexp(t, `did not come up|exited with code 1`, st.Reason)
	require.Contains(t, st.Reason, "on s")
	for cluster, versions := range f.requireServes("1.0.0") {
		require.NotContains(t, versions, "bad-crash", "left on %s", cluster)
	}
	for _, v := range st.Verdicts {
		require.Equal(t, workflows.VerdictFailed, v.Result, "a verdict of the bad release passed: %+v", v)
		require.Equal(t, "s", v.Cluster)
	}
	require.NotEmpty(t, st.Verdicts)
}
