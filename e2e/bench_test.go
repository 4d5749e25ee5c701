package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Release benchmarks (make bench; BENCHMARKS.md, Releases). Each reports its figure beside a baseline measured in
// the same run, as a ratio; none asserts a wall-clock time. Run once each (-benchtime 1x):
// every iteration creates real containers.

// six is the bench service: 6 replicas per cluster in one batch, no canary, no verification
// (the figure is the cost of the orchestration around the container operations).
func six(s *spec.Service) {
	s.Replicas = 6
	s.Rollout.BatchSize = 6
}

// BenchmarkReleaseVsDockerLoop (a): a release of one service with 6 replicas over 2 clusters
// (fast track: no canary, no verification) against the same container operations done
// directly through the engine in a plain loop (ensure, wait healthy, attach each new
// replica; detach and stop each old one; cluster after cluster).
func BenchmarkReleaseVsDockerLoop(b *testing.B) {
	for i := 0; i < b.N; i++ {
		base := newFixture(b, 2)
		base.seed("1.0.0", six)
		t0 := time.Now()
		base.dockerLoop("1.0.0", "1.1.0", 6)
		baseline := time.Since(t0)

		f := newFixture(b, 2)
		f.startWorker()
		f.seed("1.0.0", six)
		t0 = time.Now()
		st := f.wait(f.release("bench", workflows.ReleaseInput{Spec: f.spec("1.1.0", six), FastTrack: true}))
		release := time.Since(t0)
		require.Equal(b, workflows.OutcomeSucceeded, st.Outcome, st.Reason)

		b.ReportMetric(release.Seconds(), "release-s")
		b.ReportMetric(baseline.Seconds(), "docker-loop-s")
		b.ReportMetric(release.Seconds()/baseline.Seconds(), "ratio")
	}
}

// dockerLoop replaces n replicas of from by to on every cluster, one operation at a time.
func (f *fixture) dockerLoop(from, to string, n int) {
	f.t.Helper()
	env := f.spec(to, six)
	s, _ := env.Service("web")
	for _, tg := range f.targets {
		e, err := f.dialer.Dial(ctxT(f.t, time.Minute), tg.EngineEndpoint())
		require.NoError(f.t, err)
		for slot := 0; slot < n; slot++ {
			cs, err := activities.ContainerSpec(tg, "loop", engine.RoleStable, s, slot)
			require.NoError(f.t, err)
			ctx := ctxT(f.t, time.Minute)
			_, err = e.Ensure(ctx, cs)
			require.NoError(f.t, err)
			_, err = e.WaitHealthy(ctx, cs.ContainerName())
			require.NoError(f.t, err)
			require.NoError(f.t, e.Attach(ctx, cs.ContainerName(), tg.Network(), "web"))
		}
		for slot := 0; slot < n; slot++ {
			name := engine.Key{Environment: f.env, Cluster: tg.Cluster, Service: "web", Version: from, Slot: slot}.ContainerName()
			ctx := ctxT(f.t, time.Minute)
			require.NoError(f.t, e.Detach(ctx, name, tg.Network()))
			require.NoError(f.t, e.Stop(ctx, name, 10*time.Second))
		}
	}
}

// BenchmarkRollback (b): time from a failed verdict to every replica serving the previous
// version again (the last "previous version back in traffic" event), 6 replicas over 2
// clusters, with the previous replicas kept running (default) and kept stopped; the
// baseline is the same traffic switch done directly through the engine in a plain loop.
// Docker's own `docker service rollback` of the same service is measured beside it by
// BenchmarkRollbackVsSwarm (swarm_bench_test.go), on a swarm of its own daemon.
func BenchmarkRollback(b *testing.B) {
	for i := 0; i < b.N; i++ {
		for _, keep := range []string{spec.KeepRunning, spec.KeepStopped} {
			f := newFixture(b, 2)
			f.startWorker()
			three := func(s *spec.Service) {
				s.Replicas, s.Rollout.BatchSize = 3, 3
				s.Canary.Skip = true
				s.Rollback.KeepPrevious = keep
			}
			f.seed("1.0.0", three)
			bothWave1 := f.spec("bad-errors", three)
			for j := range bothWave1.Clusters {
				bothWave1.Clusters[j].Wave = 1
			}
			st := f.wait(f.release("rollback", workflows.ReleaseInput{Spec: bothWave1}))
			require.Equal(b, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
			var failed, back time.Time
			for _, e := range st.Events {
				if failed.IsZero() && strings.HasPrefix(e.Message, "verdict failed") {
					failed = e.At
				}
				if strings.HasPrefix(e.Message, "previous version back in traffic") && e.At.After(back) {
					back = e.At
				}
			}
			require.False(b, failed.IsZero() || back.IsZero(), "events of the failure and the switch")
			b.ReportMetric(float64(back.Sub(failed).Milliseconds()), "ms-to-previous-"+keep)
			if keep == spec.KeepRunning {
				// baseline: switch 6 replicas back by hand (attach old, detach new), cluster by cluster
				g := newFixture(b, 2)
				g.seed("1.0.0", three)
				g.seed("1.1.0", three)
				for _, tg := range g.targets {
					e, err := g.dialer.Dial(ctxT(b, time.Minute), tg.EngineEndpoint())
					require.NoError(b, err)
					for slot := 0; slot < 3; slot++ {
						require.NoError(b, e.Detach(ctxT(b, time.Minute), engine.Key{Environment: g.env, Cluster: tg.Cluster, Service: "web", Version: "1.0.0", Slot: slot}.ContainerName(), tg.Network()))
					}
				}
				t0 := time.Now()
				for _, tg := range g.targets {
					e, err := g.dialer.Dial(ctxT(b, time.Minute), tg.EngineEndpoint())
					require.NoError(b, err)
					for slot := 0; slot < 3; slot++ {
						require.NoError(b, e.Attach(ctxT(b, time.Minute), engine.Key{Environment: g.env, Cluster: tg.Cluster, Service: "web", Version: "1.0.0", Slot: slot}.ContainerName(), tg.Network(), "web"))
						require.NoError(b, e.Detach(ctxT(b, time.Minute), engine.Key{Environment: g.env, Cluster: tg.Cluster, Service: "web", Version: "1.1.0", Slot: slot}.ContainerName(), tg.Network()))
					}
				}
				manual := time.Since(t0)
				b.ReportMetric(float64(manual.Milliseconds()), "ms-manual-switch")
				b.ReportMetric(float64(back.Sub(failed))/float64(manual), "ratio-running")
			}
		}
	}
}
