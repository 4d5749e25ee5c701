package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Rollback benchmarks (make bench; BENCHMARKS.md; the release benchmarks are in
// release_bench_test.go). Each reports its figure beside a baseline measured in the same run,
// as a ratio; none asserts a wall-clock time. Run once each (-benchtime 1x): every iteration
// creates real containers.

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
