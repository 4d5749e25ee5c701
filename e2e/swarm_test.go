package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/worker"
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
func (f *fixture) swarmSpec(version string, mods ...func(*spec.Service)) spec.Environment {
	// No bake: the release ends after its last wave (the watch is tested by the bad release).
	env := f.spec(version, append([]func(*spec.Service){func(s *spec.Service) {
		zero := spec.Duration(0)
		s.Verification.Bake = &zero
	}}, mods...)...)
	swarmFirst(&env)
	return env
}

// swarmFirst makes cluster s of env a swarm, the canary cluster, in wave 1, and the others
// wave 2 without a canary.
func swarmFirst(env *spec.Environment) {
	for i := range env.Clusters {
		c := &env.Clusters[i]
		if c.Name == "s" {
			c.Kind, c.Canary, c.Wave = spec.KindSwarm, true, 1
		} else {
			c.Canary, c.Wave = false, 2
		}
	}
}

// TestSwarmMixedRelease releases through the real worker and the embedded Temporal server
// onto an environment that mixes a plain engine and a swarm: a version that crashes is
// caught at the canary on the swarm and rolled back there (the plain cluster untouched, the
// stable version serving on both, nothing of the bad version left); a good version is
// released onto both (canary and batches on the swarm verified against the old version's
// replicas that still run); and a release stopped while it bakes on both clusters is rolled
// back on both together.
func TestSwarmMixedRelease(t *testing.T) {
	f := newMixedFixture(t)
	// The good release carries a secret from the worker's secrets directory: a Swarm secret
	// (a file, DB_PASSWORD_FILE) on the swarm, a variable on the plain engine.
	secrets := t.TempDir()
	const secretValue = "e2e-swarm-s3cret-value"
	require.NoError(t, os.WriteFile(filepath.Join(secrets, "e2e-db-password"), []byte(secretValue+"\n"), 0o600))
	f.startWorkerWith(worker.Options{Activities: activities.Options{Secrets: activities.DirSecrets(secrets)}})
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

	// A good version, onto both clusters: every verification passes (with a baseline while
	// old replicas run: the batches scale the old service down as the new one goes up).
	withSecret := func(s *spec.Service) { s.Secrets = map[string]string{"DB_PASSWORD": "e2e-db-password"} }
	st = f.wait(f.release("good", workflows.ReleaseInput{Spec: f.swarmSpec("1.1.0", withSecret)}))
	require.Equal(t, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
	f.requireServes("1.1.0")
	// On the swarm the value is in no inspect (service, task containers): only the file's
	// path is, as DB_PASSWORD_FILE. On the plain engine it is a variable.
	for _, c := range f.live(sw)["1.1.0"] {
		svc, err := exec.Command("docker", "-H", sw.Endpoint, "service", "inspect", dockerengine.SwarmServiceName(c.Key)).CombinedOutput()
		require.NoError(t, err, string(svc))
		require.NotContains(t, string(svc), secretValue)
		require.Contains(t, string(svc), "DB_PASSWORD_FILE=/run/secrets/e2e-db-password")
	}
	tasks, err := exec.Command("docker", "-H", sw.Endpoint, "ps", "-q", "--filter", "label=io.slipway.environment="+f.env).CombinedOutput()
	require.NoError(t, err, string(tasks))
	require.NotEmpty(t, strings.Fields(string(tasks)))
	inspect, err := exec.Command("docker", append([]string{"-H", sw.Endpoint, "inspect"}, strings.Fields(string(tasks))...)...).CombinedOutput()
	require.NoError(t, err, string(inspect))
	require.NotContains(t, string(inspect), secretValue, "a task container's inspect shows the secret")
	for _, c := range f.live(f.targets[0])["1.1.0"] {
		env, err := exec.Command("docker", "inspect", "--format", "{{json .Config.Env}}", c.Name).CombinedOutput()
		require.NoError(t, err, string(env))
		require.Contains(t, string(env), "DB_PASSWORD="+secretValue, "a plain engine passes it as a variable")
	}
	judgedOnSwarm := 0
	for _, v := range st.Verdicts {
		require.Equal(t, workflows.VerdictPassed, v.Result, "%s on %s (%s): %s", v.Service, v.Cluster, v.Stage, v.Reason)
		if v.Cluster == "s" {
			judgedOnSwarm++
			require.Zero(t, v.Evidence.BaselineUnreachable, "a baseline replica the batch scaled away was probed (%s)", v.Stage)
			if strings.HasPrefix(v.Stage, "batch") {
				// verified before the old replicas it replaces were scaled away
				require.True(t, v.Evidence.Baseline, "%s on the swarm judged without stable: %s", v.Stage, v.Reason)
			}
		}
	}
	require.Positive(t, judgedOnSwarm, "verdicts on the swarm")
	prev := f.live(sw)["1.0.0"]
	require.NotEmpty(t, prev, "the previous version's service is kept on the swarm")
	for _, c := range prev {
		require.False(t, c.Running(), "the previous version is kept at scale 0: %+v", c)
	}

	// A good version stopped by a person while it bakes on both clusters: both roll back to
	// 1.1.0 together (the swarm scales 1.1.0's service back up).
	baking := func(s *spec.Service) {
		bake := spec.Duration(3 * time.Minute)
		s.Verification.Bake = &bake
	}
	run := f.release("stopped", workflows.ReleaseInput{Spec: f.swarmSpec("2.0.0", baking)})
	require.Eventually(t, func() bool {
		cur, err := f.status(run)
		return err == nil && cur.Phase == workflows.PhaseBaking
	}, 2*time.Minute, 250*time.Millisecond, "the release reaches its bake")
	h, err := srv.Client().UpdateWorkflow(ctxT(t, time.Minute), client.UpdateWorkflowOptions{
		WorkflowID: run.GetID(), RunID: run.GetRunID(), UpdateName: workflows.UpdateAbort,
		Args: []any{workflows.Decision{Actor: "e2e", Reason: "stopped while baking"}}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	require.NoError(t, err)
	require.NoError(t, h.Get(ctxT(t, time.Minute), nil))
	st = f.wait(run)
	require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	for cluster, versions := range f.requireServes("1.1.0") {
		t.Logf("%s keeps %v", cluster, versions)
	}
}

// TestSwarmCatchesBadVersions releases every misbehaving demo version that short windows can
// judge onto the mixed environment, one after the other: each is caught at the canary on the
// swarm (its health wait, the lifecycle watch of its task, or its verification against
// stable) and rolled back there, the plain cluster untouched and the stable version serving
// on both. (bad-intermittent and bad-tail need the default windows: TestSwarmDefaults;
// bad-crash: TestSwarmMixedRelease; bad-crash-later dies after these windows.)
func TestSwarmCatchesBadVersions(t *testing.T) {
	t.Parallel() // mostly soaks and windows
	f := newMixedFixture(t)
	f.startWorker()
	limited := func(s *spec.Service) { s.Resources = &spec.Resources{Memory: "64Mi"} }
	f.seedSpec(f.swarmSpec("1.0.0", limited))
	for _, tag := range []string{"bad-health", "bad-errors", "bad-routes", "bad-latency", "bad-port", "bad-oom"} {
		st := f.wait(f.release(tag, workflows.ReleaseInput{Spec: f.swarmSpec(tag, limited)}))
		require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, "%s: %s", tag, st.Reason)
		require.NotEmpty(t, st.Verdicts, tag)
		requireCaughtAtCanary(t, st)
		for _, v := range st.Verdicts {
			require.Equal(t, "s", v.Cluster, "%s judged on %s: %+v", tag, v.Cluster, v)
		}
		for cluster, versions := range f.requireServes("1.0.0") {
			require.NotContains(t, versions, tag, "%s left on %s", tag, cluster)
		}
	}
}
