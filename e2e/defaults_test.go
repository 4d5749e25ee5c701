package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// defaultsSpec is the spec a new user writes: a service, its port, health path and memory
// limit, and no canary, rollout, verification or rollback policy at all (the built-in
// defaults judge), on one cluster whose engine the worker cannot route to.
func (f *fixture) defaultsSpec(version string) spec.Environment {
	f.t.Helper()
	y := fmt.Sprintf(`environment: %s
clusters:
%sservices:
  - name: web
    image: slipway/demo
    version: "%s"
    port: 8080
    replicas: 2
    health:
      http_path: /healthz
    resources:
      memory: 64Mi
`, f.env, f.clustersYAML(), version)
	env, err := spec.Parse("defaults.yaml", []byte(y))
	require.NoError(f.t, err, y)
	return *env
}

// TestDefaultsCatchEveryMisbehaviourAtTheCanary: with no policy written, every misbehaving
// version of the demo service is stopped at the canary and rolled back, with the previous
// version serving and nothing of the bad one left; a slow starter and a slow stopper go
// through. (Subtests run two at a time: GOMAXPROCS on these machines.)
func TestDefaultsCatchEveryMisbehaviourAtTheCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("minutes of releases at the default windows")
	}
	for _, tc := range []struct {
		tag  string
		want workflows.Outcome
	}{
		{"bad-crash", workflows.OutcomeRolledBack},       // exits at start
		{"bad-crash-later", workflows.OutcomeRolledBack}, // exits after 20 s, inside the 30 s soak
		{"bad-oom", workflows.OutcomeRolledBack},         // grows until the 64Mi limit kills it
		{"bad-health", workflows.OutcomeRolledBack},      // health turns 503 after 3 s
		{"bad-port", workflows.OutcomeRolledBack},        // listens on 8081, not 8080
		{"bad-routes", workflows.OutcomeRolledBack},      // 500 everywhere but /healthz
		{"bad-errors", workflows.OutcomeRolledBack},      // every second request 500
		{"bad-intermittent", workflows.OutcomeRolledBack},
		{"bad-latency", workflows.OutcomeRolledBack}, // +300 ms on every request
		{"bad-tail", workflows.OutcomeRolledBack},    // 8 % of requests +800 ms
		{"slow-start", workflows.OutcomeSucceeded},   // healthy only after 12 s
		{"slow-stop", workflows.OutcomeSucceeded},    // ignores SIGTERM: killed after the grace
	} {
		t.Run(tc.tag, func(t *testing.T) {
			t.Parallel()
			f := newRemoteFixture(t)
			f.startWorker()
			f.seedSpec(f.defaultsSpec("1.0.0"))
			st := f.wait(f.release("defaults", workflows.ReleaseInput{Spec: f.defaultsSpec(tc.tag)}))
			require.Equal(t, tc.want, st.Outcome, st.Reason)
			if tc.want == workflows.OutcomeSucceeded {
				others := f.requireServes(tc.tag)
				require.Equal(t, map[string][]string{"a": {"1.0.0"}}, others, "the previous version kept, stopped")
				return
			}
			requireCaughtAtCanary(t, st)
			require.Empty(t, f.requireServes("1.0.0"), "the previous version serves and nothing of %s is left", tc.tag)
		})
	}
}

// TestDefaultsPassNoisyGoodVersions: two versions that both fail 0.5 % of requests at
// random are the same behaviour: the release goes through.
func TestDefaultsPassNoisyGoodVersions(t *testing.T) {
	if testing.Short() {
		t.Skip("a release at the default windows")
	}
	f := newRemoteFixture(t)
	f.startWorker()
	f.seedSpec(f.defaultsSpec("noisy-1.0.0"))
	st := f.wait(f.release("noisy", workflows.ReleaseInput{Spec: f.defaultsSpec("noisy-1.1.0")}))
	require.Equal(t, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
	for _, v := range st.Verdicts {
		require.True(t, v.Evidence.Baseline, "judged against stable: %s", v.Reason)
		require.GreaterOrEqual(t, v.Evidence.Samples, spec.DefaultMinSamples)
	}
}

// requireCaughtAtCanary: the release failed while only its canary ran, by the canary's
// verification or by the lifecycle watch of the canary (a crash or an OOM kill during the
// soak), before any batch of the rollout.
func requireCaughtAtCanary(t testing.TB, st workflows.ReleaseStatus) {
	t.Helper()
	last := lastVerdict(t, st)
	require.Equal(t, workflows.VerdictFailed, last.Result, last.Reason)
	require.Contains(t, []string{"canary", "watch"}, last.Stage, last.Reason)
	require.True(t, caughtAtCanary(st), "a batch was verified before the failure: %+v", st.Verdicts)
}

// lastVerdict is the release's last verdict; a release without one fails t (with its
// reason) instead of panicking the whole package's run.
func lastVerdict(t testing.TB, st workflows.ReleaseStatus) workflows.Verdict {
	t.Helper()
	require.NotEmpty(t, st.Verdicts, "no verdict: %s", st.Reason)
	return st.Verdicts[len(st.Verdicts)-1]
}

// caughtAtCanary reports whether a release failed before any batch or wave was verified.
func caughtAtCanary(st workflows.ReleaseStatus) bool {
	failed := false
	for _, v := range st.Verdicts {
		if strings.HasPrefix(v.Stage, "batch") || strings.HasPrefix(v.Stage, "wave") {
			return false
		}
		if v.Result == workflows.VerdictFailed && (v.Stage == "canary" || v.Stage == "watch") {
			failed = true
		}
	}
	return failed
}
