package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/spec"
)

func stopGrace(d time.Duration) func(*spec.Service) {
	return func(s *spec.Service) { s.StopGrace = spec.Duration(d) }
}

// requireStopGrace checks that every StopReplicas call got the grace, and returns them.
func requireStopGrace(t *testing.T, w *fakeWorld, grace time.Duration) []ContainersInput {
	t.Helper()
	require.NotEmpty(t, w.stops)
	for _, in := range w.stops {
		require.Equal(t, grace, in.StopTimeout, "StopReplicas %s %v", in.Target.Cluster, in.Names)
	}
	return w.stops
}

// TestReleaseStopGrace: every place the release stops replicas gives them the service's
// stop_grace; a replica that ignores SIGTERM is killed after it, the release still
// succeeds, and the timeline says which were killed.
func TestReleaseStopGrace(t *testing.T) {
	t.Run("cleanup stops the previous version", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		w.stubborn["1.0.0"] = true
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", stopGrace(45*time.Second)))})
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		require.Len(t, requireStopGrace(t, w, 45*time.Second), 2, "one stop of the previous version per cluster")
		require.True(t, hasEvent(st, "previous version: stopped 2 replicas; 2 were killed after the 45s grace (still running after SIGTERM): slipway.staging.a.web.1.0.0.0, slipway.staging.a.web.1.0.0.1"), "%v", st.Events)
		require.Equal(t, []string{"1.0.0", "1.1.0"}, w.versions("a", "web"), "the previous version is kept, stopped")
	})
	t.Run("keep_previous stopped retires with the grace", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		w.stubborn["1.0.0"] = true
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0", stopGrace(45*time.Second), func(s *spec.Service) {
			s.Rollback = &spec.Rollback{KeepPrevious: spec.KeepStopped}
		}))}
		st, _ := run(t, w, in)
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		require.Len(t, requireStopGrace(t, w, 45*time.Second), 4, "each retired batch")
		require.True(t, hasEvent(st, "previous replicas out of traffic, stopped 1 replica; 1 was killed after the 45s grace (still running after SIGTERM): slipway.staging.b.web.1.0.0.1"))
	})
	t.Run("replicas that exit in time", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))})
		require.Equal(t, OutcomeSucceeded, st.Outcome, st.Reason)
		requireStopGrace(t, w, spec.DefaultStopGrace)
		require.True(t, hasEvent(st, "previous version: stopped 2 replicas; every one exited within the 10s grace"))
	})
	t.Run("the rollback stops new-version replicas that existed before", func(t *testing.T) {
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		w.seedState("a", "web", "1.1.0", 1, "exited", false) // a stopped earlier revision
		w.stubborn["1.1.0"] = true
		w.verdict = failOn("canary", "a", "error rate 50.0% above the 5.0% allowed")
		st, _ := run(t, w, ReleaseInput{Spec: testSpec(svc("web", "1.1.0", stopGrace(time.Minute)))})
		require.Equal(t, OutcomeRolledBack, st.Outcome, st.Reason)
		stops := requireStopGrace(t, w, time.Minute)
		require.Len(t, stops, 1)
		require.Equal(t, []string{"slipway.staging.a.web.1.1.0.0"}, stops[0].Names)
		require.True(t, hasEvent(st, "new-version replicas that existed before the release: stopped 1 replica; 1 was killed after the 1m0s grace"))
		requireServing(t, w, "a", "web", "1.0.0", 2)
	})
	t.Run("an input without stop_grace", func(t *testing.T) {
		// built by hand, not defaulted: refused before anything is done, naming the field
		// (spec.ApplyDefaults is the one owner of defaults; the workflow does not guess)
		w := newWorld("staging")
		w.seed("a", "web", "1.0.0", 2)
		w.seed("b", "web", "1.0.0", 2)
		in := ReleaseInput{Spec: testSpec(svc("web", "1.1.0"))}
		in.Spec.Services[0].StopGrace = 0
		st, _ := run(t, w, in)
		require.Equal(t, OutcomeRefused, st.Outcome, st.Reason)
		require.Contains(t, st.Reason, "services[web].stop_grace is not set")
		require.Empty(t, w.stops)
		requireServing(t, w, "a", "web", "1.0.0", 2)
	})
}

// TestStopSummaryWithoutReport: a StopReplicas that predates its result claims nothing
// about kills.
func TestStopSummaryWithoutReport(t *testing.T) {
	require.Equal(t, "stopped 2 replicas (grace 10s)", stopSummary([]string{"x", "y"}, StopReplicasResult{}, 10*time.Second))
	require.Equal(t, "stopped 0 replicas", stopSummary([]string{"x"}, StopReplicasResult{Grace: 10 * time.Second}, 10*time.Second))
}
