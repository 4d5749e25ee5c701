package e2e

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Release benchmarks (make bench; BENCHMARKS.md, Releases). Each reports its figure beside a
// baseline measured in the same run; none asserts a wall-clock time. Run once each
// (-benchtime 1x; -count n for n runs): every iteration creates real containers. The
// baseline is the same activity functions the worker runs (the same engine calls, with the
// same parallelism), called directly in the workflow's order without Temporal: the
// difference is what the orchestration costs.

// six is the bench service: 6 replicas per cluster in one batch (StartReplicas starts the 6
// in parallel).
func six(s *spec.Service) {
	s.Replicas = 6
	s.Rollout.BatchSize = 6
}

// sixVerified is six with the fixture's canary (1 replica, 5 s soak) and verification
// windows (2 s), and a 5 s bake.
func sixVerified(s *spec.Service) {
	six(s)
	bake := spec.Duration(5 * time.Second)
	s.Verification.Bake = &bake
}

// benchRuns counts the runs of each benchmark in this process, so that -count n alternates
// which side goes first.
var benchRuns sync.Map

func nextRun(name string) int {
	v, _ := benchRuns.LoadOrStore(name, new(atomic.Int64))
	return int(v.(*atomic.Int64).Add(1) - 1)
}

// BenchmarkReleaseVsDockerLoop (a): a fast-track release (no canary, no verification) of one
// service with 6 replicas on each of 2 clusters (waves 1 and 2), 1.0.0 → 1.1.0 including
// cleanup, against the same work done directly: EnsureNetwork on both clusters; per wave,
// StartReplicas of the batch (the 6 ensured and health-waited in parallel, the pre-traffic
// check, attached in parallel) and SetTraffic detaching the 6 old ones; then StopReplicas of
// the old ones on both clusters at once (the release's cleanup). Each side on a fresh
// environment seeded with 1.0.0; the side that goes first alternates between runs.
func BenchmarkReleaseVsDockerLoop(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var release, direct time.Duration
		sides := []func(){
			func() {
				f := newFixture(b, 2)
				f.seed("1.0.0", six)
				direct, _ = f.direct("1.0.0", "1.1.0", six, false, false)
			},
			func() {
				f := newFixture(b, 2)
				f.startWorker()
				f.seed("1.0.0", six)
				t0 := time.Now()
				st := f.wait(f.release("bench", workflows.ReleaseInput{Spec: f.spec("1.1.0", six), FastTrack: true}))
				release = time.Since(t0)
				require.Equal(b, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
			},
		}
		load0 := testenv.LoadAverage(b)
		run := nextRun(b.Name())
		if run%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		sides[0]()
		sides[1]()
		b.ReportMetric(release.Seconds(), "release-s")
		b.ReportMetric(direct.Seconds(), "direct-s")
		b.ReportMetric((release - direct).Seconds(), "overhead-s")
		b.ReportMetric(release.Seconds()/direct.Seconds(), "ratio")
		b.ReportMetric(float64(run%2), "release-first")
		b.ReportMetric((load0+testenv.LoadAverage(b))/2, "load1")
	}
}

// BenchmarkFullReleaseVsIrreducible (a): a full release (canary of 1 replica soaked 5 s,
// every batch and wave verified for 2 s, a 5 s bake: the fixture's policy) of the same
// service, 6 replicas on each of 2 clusters, against its irreducible time: the same engine
// work done directly (as in BenchmarkReleaseVsDockerLoop, plus the canary's StartReplicas)
// plus the verification windows that lie on the critical path (soak + per wave a batch and a
// wave window + bake = 18 s). A third side does the same directly with the Verify activities
// themselves (and a sleep for the bake), which splits the overhead into what verifying costs
// beyond its windows (probe containers, judgment) and what the orchestration costs.
func BenchmarkFullReleaseVsIrreducible(b *testing.B) {
	for i := 0; i < b.N; i++ {
		var release, ops, windows, verified time.Duration
		sides := []func(){
			func() {
				f := newFixture(b, 2)
				f.startWorker()
				f.seed("1.0.0", sixVerified)
				t0 := time.Now()
				st := f.wait(f.release("bench", workflows.ReleaseInput{Spec: f.spec("1.1.0", sixVerified)}))
				release = time.Since(t0)
				require.Equal(b, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
			},
			func() {
				f := newFixture(b, 2)
				f.seed("1.0.0", sixVerified)
				ops, windows = f.direct("1.0.0", "1.1.0", sixVerified, true, false)
			},
			func() {
				f := newFixture(b, 2)
				f.seed("1.0.0", sixVerified)
				verified, _ = f.direct("1.0.0", "1.1.0", sixVerified, true, true)
			},
		}
		load0 := testenv.LoadAverage(b)
		run := nextRun(b.Name())
		for k := 0; k < len(sides); k++ {
			sides[(run+k)%len(sides)]()
		}
		irreducible := ops + windows
		b.ReportMetric(release.Seconds(), "release-s")
		b.ReportMetric(ops.Seconds(), "ops-s")
		b.ReportMetric(windows.Seconds(), "windows-s")
		b.ReportMetric(irreducible.Seconds(), "irreducible-s")
		b.ReportMetric((release - irreducible).Seconds(), "overhead-s")
		b.ReportMetric(release.Seconds()/irreducible.Seconds(), "ratio")
		b.ReportMetric(verified.Seconds(), "direct-verified-s")
		b.ReportMetric((verified - irreducible).Seconds(), "verify-cost-s")
		b.ReportMetric((release - verified).Seconds(), "orchestration-s")
		b.ReportMetric(float64(run%len(sides)), "first-side")
		b.ReportMetric((load0+testenv.LoadAverage(b))/2, "load1")
	}
}

// direct replaces from by to on every cluster by calling the worker's activities directly,
// in the Release workflow's order and with its parallelism: EnsureNetwork on every cluster
// at once; when full, StartReplicas of the canary replicas on the canary cluster (then, with
// verify, Verify over the soak); per wave (its clusters at once), per batch StartReplicas
// then SetTraffic detaching as many old replicas (with verify, Verify of the batch), with
// verify a Verify of the wave; with verify, the bake; last, StopReplicas of the old replicas
// on every cluster at once (the cleanup). It returns the time taken and, when full, the
// verification windows on the critical path (soak, each wave's batch and wave windows,
// bake; those of the clusters of one wave run side by side), whether or not it verified.
func (f *fixture) direct(from, to string, mod func(*spec.Service), full, verify bool) (took, windows time.Duration) {
	f.t.Helper()
	env := f.spec(to, mod)
	s, _ := env.Service("web")
	a := activities.New(f.dialer, activities.Options{})
	ctx := ctxT(f.t, 5*time.Minute)
	names := func(tg workflows.Target, version string, from, to int) []string {
		var out []string
		for slot := from; slot < to; slot++ {
			out = append(out, engine.Key{Environment: f.env, Cluster: tg.Cluster, Service: s.Name, Version: version, Slot: slot}.ContainerName())
		}
		return out
	}
	start := func(tg workflows.Target, role engine.Role, from, to int) error {
		var slots []int
		for slot := from; slot < to; slot++ {
			slots = append(slots, slot)
		}
		_, err := a.StartReplicas(ctx, workflows.StartReplicasInput{Target: tg, Release: "direct", Role: role, Service: s,
			Slots: slots, Attach: true, HealthDeadline: s.Health.Deadline.D()})
		return err
	}
	check := func(tg workflows.Target, stage string, newNames []string, d time.Duration) error {
		v := *s.Verification
		v.Duration = spec.Duration(d)
		verdict, err := a.Verify(ctx, workflows.VerifyInput{Target: tg, Service: s.Name, Stage: stage, New: newNames,
			Baseline: names(tg, from, 0, s.Replicas), Verification: v, HealthPath: s.Health.HTTPPath, HealthRetries: s.Health.Retries})
		if err == nil && verdict.Result != workflows.VerdictPassed {
			err = fmt.Errorf("verdict %s (%s on %s): %s", verdict.Result, stage, tg.Cluster, verdict.Reason)
		}
		return err
	}
	// onEach runs fn on the clusters at once (each its own goroutine) and fails the
	// benchmark, on its own goroutine, if one failed.
	onEach := func(tgs []workflows.Target, fn func(tg workflows.Target) error) {
		errs := make([]error, len(tgs))
		var wg sync.WaitGroup
		for i, tg := range tgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = fn(tg)
			}()
		}
		wg.Wait()
		require.NoError(f.t, errors.Join(errs...))
	}
	waves := map[int][]workflows.Target{}
	for _, c := range env.Clusters {
		for _, tg := range f.targets {
			if tg.Cluster == c.Name {
				waves[c.Wave] = append(waves[c.Wave], tg)
			}
		}
	}
	var order []int
	for w := range waves {
		order = append(order, w)
	}
	sort.Ints(order)
	n, batch := s.Replicas, s.Rollout.BatchSize

	t0 := time.Now()
	onEach(f.targets, func(tg workflows.Target) error {
		return a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tg})
	})
	if full {
		cc, ok := env.ServiceCanaryCluster(s.Name)
		require.True(f.t, ok, "canary cluster")
		for _, tg := range f.targets {
			if tg.Cluster == cc.Name {
				require.NoError(f.t, start(tg, engine.RoleCanary, 0, s.Canary.Replicas))
				if verify {
					require.NoError(f.t, check(tg, "canary", names(tg, to, 0, s.Canary.Replicas), s.Canary.Soak.D()))
				}
			}
		}
		windows += s.Canary.Soak.D()
	}
	for _, w := range order {
		onEach(waves[w], func(tg workflows.Target) error {
			active := names(tg, from, 0, n)
			for lo := 0; lo < n; lo += batch {
				hi := min(lo+batch, n)
				if err := start(tg, engine.RoleStable, lo, hi); err != nil {
					return err
				}
				if keep := max(0, n-hi); keep < len(active) {
					if err := a.SetTraffic(ctx, workflows.SetTrafficInput{Target: tg, Service: s.Name, Detach: active[keep:]}); err != nil {
						return err
					}
					active = active[:keep]
				}
				if verify {
					if err := check(tg, fmt.Sprintf("batch %d", lo/batch+1), names(tg, to, lo, hi), s.Verification.Duration.D()); err != nil {
						return err
					}
				}
			}
			if verify {
				return check(tg, fmt.Sprintf("wave %d", w), names(tg, to, 0, n), s.Verification.Duration.D())
			}
			return nil
		})
		if full {
			windows += time.Duration((n+batch-1)/batch+1) * s.Verification.Duration.D()
		}
	}
	if full {
		windows += s.Verification.Bake.D()
		if verify {
			time.Sleep(s.Verification.Bake.D())
		}
	}
	onEach(f.targets, func(tg workflows.Target) error {
		_, err := a.StopReplicas(ctx, workflows.ContainersInput{Target: tg, Names: names(tg, from, 0, n), StopTimeout: s.StopGrace.D()})
		return err
	})
	return time.Since(t0), windows
}
