package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Swarm benchmarks (make bench; BENCHMARKS.md, "Swarm: Slipway against docker service update
// (issue 16)"): the same release and the same rollback on the same single-node swarm (the
// dockerd of testenv.SwarmDaemon; the default engine is never put in swarm mode), once
// through Slipway onto a swarm-only environment (one kind: swarm cluster) and once through
// `docker service update` of an equivalent Swarm service. Each side cleans up before the
// other runs (phase), the side that goes first alternates from run to run, and
// SLIPWAY_BENCH_SWARM_RUNS (default 3) runs are made within the one iteration, one line per
// run ("swarm:"), medians reported as metrics. None asserts a wall-clock time.
//
// The shape, on both sides: 4 replicas, batches of 2, health checked every 250 ms (1 s
// timeout, 3 retries: Slipway's spec probes /healthz, Swarm runs the image's HEALTHCHECK,
// which asks /healthz, at that cadence), new replicas started before old ones go
// (start-first). Slipway's verification window per batch is swarmBenchWindow, and Swarm's
// --update-monitor is the same.

const (
	swarmBenchReplicas = 4
	swarmBenchBatch    = 2
	// swarmBenchWindow is Slipway's verification window (canary soak, each batch, the wave)
	// and Swarm's --update-monitor. Long enough for Swarm to see bad-health fail inside it:
	// its /healthz turns 503 3 s after start, unhealthy after 3 more failed checks.
	swarmBenchWindow = 6 * time.Second
)

func swarmBenchRuns() int { return envInt("SLIPWAY_BENCH_SWARM_RUNS", 3) }

// swarmBenchShape is the fixture's service with the bench shape: 4 replicas, batches of 2, a
// canary of 1 soaked for the window, every verification window swarmBenchWindow, no bake.
func swarmBenchShape(s *spec.Service) {
	s.Replicas, s.Rollout.BatchSize = swarmBenchReplicas, swarmBenchBatch
	s.Canary.Replicas = 1
	s.Canary.Soak = spec.Duration(swarmBenchWindow)
	s.Verification.Duration = spec.Duration(swarmBenchWindow)
	zero := spec.Duration(0)
	s.Verification.Bake = &zero
}

// newSwarmOnlyFixture is an environment of one cluster, "a", of kind swarm: the swarm whose
// manager's API is host. Its cleanup removes the services (f.cleanup) and then the
// environment's overlay network, which the Swarm adapter keeps.
func newSwarmOnlyFixture(t testing.TB, host string) *fixture {
	t.Helper()
	f := newFixtureOn(t, host)
	f.targets[0].Kind = spec.KindSwarm
	t.Cleanup(func() {
		f.cleanup(f.targets[0])
		awaitNoContainers(t, host, f.env)
		removeSwarmNetwork(t, host, dockerengine.SwarmNetworkName(f.targets[0].Network()))
	})
	return f
}

// awaitNoContainers waits until no container of env is left on host: a removed Swarm
// service's task containers go after `service rm` returns, and testenv's leftover check
// (UniqueEnv) must not find them on the way out.
func awaitNoContainers(t testing.TB, host, env string) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := dockerCLI(host, time.Minute, "ps", "-aq", "--filter", "label="+engine.LabelEnvironment+"="+env)
		if err == nil && strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("containers of %s still on the swarm a minute after their services were removed: %s %v", env, out, err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// swarmOnlySpec is the bench shape at version on the fixture's one cluster, kind swarm, the
// canary cluster.
func (f *fixture) swarmOnlySpec(version string) spec.Environment {
	env := f.spec(version, swarmBenchShape)
	for i := range env.Clusters {
		env.Clusters[i].Kind, env.Clusters[i].Canary, env.Clusters[i].Wave = spec.KindSwarm, true, 1
	}
	return env
}

// removeSwarmNetwork removes a swarm network, retrying while the endpoints of tasks just
// removed still hold it, and waits until the node no longer lists it (the manager removes
// it first, the node's copy goes after).
func removeSwarmNetwork(t testing.TB, host, name string) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := dockerCLI(host, time.Minute, "network", "rm", name)
		if err == nil || strings.Contains(out+err.Error(), "not found") {
			for {
				if _, err := dockerCLI(host, time.Minute, "network", "inspect", name); err != nil {
					return // gone
				}
				if time.Now().After(deadline) {
					t.Errorf("swarm network %s still listed a minute after its removal", name)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("removing swarm network %s: %v %s", name, err, out)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// BenchmarkSwarmRelease: a good release, 1.0.0 → 1.1.0, 4 replicas on the swarm.
//
// Slipway: a canary of 1 replica soaked for the window beside the stable version and verified
// against it (paired probes), then 2 batches of 2, each verified against the old replicas
// still running for the window, a wave verification, cleanup (the old version's service kept
// at scale 0). From starting the workflow to its result.
//
// Swarm: a service of 4 replicas of 1.0.0 (dnsrr, on an attachable overlay network of its
// own), `docker service update --image slipway/demo:1.1.0` with --update-parallelism 2,
// --update-monitor = the window, --update-failure-action rollback, --update-order
// start-first; from issuing it to its UpdateStatus "completed" with the 4 tasks of 1.1.0
// running. A second baseline ("held") adds --update-delay = the window, so that each batch is
// held for the window before the next one starts, as Slipway's verification holds it (Swarm's
// monitor alone does not hold a batch: the next one starts as soon as the last one runs).
func BenchmarkSwarmRelease(b *testing.B) {
	host := testenv.SwarmDaemon(b)
	var slipway, plain, held, ratio, ratioHeld []float64
	for i := 0; i < b.N; i++ {
		for run := 1; run <= swarmBenchRuns(); run++ {
			load := testenv.LoadAverage(b)
			var s, sp, sh time.Duration
			var verdicts []string
			sides := []func(){
				func() { p := newPhase(b); s, verdicts = slipwaySwarmRelease(p, host); p.end() },
				func() { p := newPhase(b); sp, sh = swarmUpdateRelease(p, host); p.end() },
			}
			if run%2 == 0 { // alternate which goes first
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				side()
			}
			load = max(load, testenv.LoadAverage(b))
			slipway, plain, held = append(slipway, ms(s)), append(plain, ms(sp)), append(held, ms(sh))
			ratio, ratioHeld = append(ratio, float64(s)/float64(sp)), append(ratioHeld, float64(s)/float64(sh))
			fmt.Printf("swarm: run %d release: slipway %s (verdicts passed at %s; windows on its path %s) | docker service update %s | with --update-delay %s | ratio %.2f, to held %.2f; slipway first %t; load average ≤ %.1f\n",
				run, msStr(s), strings.Join(verdicts, ", "), msStr(4*swarmBenchWindow), msStr(sp), msStr(sh),
				float64(s)/float64(sp), float64(s)/float64(sh), run%2 == 1, load)
		}
	}
	b.ReportMetric(median(slipway), "slipway-ms")
	b.ReportMetric(median(plain), "swarm-update-ms")
	b.ReportMetric(median(held), "swarm-update-held-ms")
	b.ReportMetric(median(ratio), "ratio")
	b.ReportMetric(median(ratioHeld), "ratio-held")
}

// slipwaySwarmRelease seeds 1.0.0 on a fresh swarm-only environment and releases 1.1.0; it
// returns the release's time and when, from its start, each verdict passed ("canary +9.1s").
func slipwaySwarmRelease(t testing.TB, host string) (time.Duration, []string) {
	f := newSwarmOnlyFixture(t, host)
	f.startWorker()
	f.seedSpec(f.swarmOnlySpec("1.0.0"))
	t0 := time.Now()
	st := f.wait(f.release("bench", workflows.ReleaseInput{Spec: f.swarmOnlySpec("1.1.0")}))
	took := time.Since(t0)
	// f.wait logged the release's events: what happened if it did not succeed.
	require.Equal(t, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
	var verdicts []string
	for _, v := range st.Verdicts {
		require.Equal(t, workflows.VerdictPassed, v.Result, "%s (%s): %s", v.Stage, v.Cluster, v.Reason)
		verdicts = append(verdicts, fmt.Sprintf("%s +%.1fs", v.Stage, v.At.Sub(t0).Seconds()))
	}
	running := 0
	for _, c := range f.live(f.targets[0])["1.1.0"] {
		if c.Running() && c.InTraffic {
			running++
		}
	}
	require.Equal(t, swarmBenchReplicas, running, "replicas of 1.1.0 running in traffic")
	return took, verdicts
}

// swarmUpdateRelease creates the baseline service at 1.0.0 and updates it to 1.1.0 (plain),
// rolls it back unmeasured, and updates it again with --update-delay (held).
func swarmUpdateRelease(t testing.TB, host string) (plain, held time.Duration) {
	sw, _ := newSwarmBaseline(t, host)
	plain = sw.update("1.1.0", "completed")
	sw.docker(time.Minute, "service", "rollback", "--detach", sw.name)
	sw.waitUpdate("1.0.0", "1.1.0", "rollback_completed")
	held = sw.update("1.1.0", "completed", "--update-delay", swarmBenchWindow.String())
	return plain, held
}

// newSwarmBaseline creates the Swarm service of the bench shape at 1.0.0 on an attachable
// overlay network of its own and waits until its 4 tasks run; it returns the service and its
// environment name (testenv.UniqueEnv: labels, names). t's cleanup removes both.
func newSwarmBaseline(t testing.TB, host string) (*swarmService, string) {
	t.Helper()
	env := testenv.UniqueEnv(t)
	sw := &swarmService{t: t, host: host, name: env + "-web"}
	network := swarmBaselineNetwork(env)
	sw.docker(time.Minute, "network", "create", "--driver", "overlay", "--attachable",
		"--label", engine.LabelEnvironment+"="+env, network)
	t.Cleanup(func() { removeSwarmNetwork(t, host, network) })
	batch := fmt.Sprint(swarmBenchBatch)
	sw.docker(time.Minute, "service", "create", "--detach", "--no-resolve-image",
		"--name", sw.name, "--replicas", fmt.Sprint(swarmBenchReplicas), "--endpoint-mode", "dnsrr", "--network", network,
		// the image's own HEALTHCHECK (it asks /healthz), at the cadence of Slipway's spec
		"--health-interval", "250ms", "--health-timeout", "1s", "--health-retries", "3",
		"--update-parallelism", batch, "--update-order", "start-first", "--update-delay", "0s",
		"--update-monitor", swarmBenchWindow.String(), "--update-failure-action", "rollback",
		"--rollback-parallelism", batch, "--rollback-order", "start-first",
		"--rollback-monitor", swarmBenchWindow.String(), "--rollback-failure-action", "pause",
		"--label", engine.LabelEnvironment+"="+env, "--container-label", engine.LabelEnvironment+"="+env,
		testenv.DemoImage("1.0.0"))
	t.Cleanup(sw.remove) // registered after the network's: runs before it
	for deadline := time.Now().Add(2 * time.Minute); sw.running("1.0.0") < swarmBenchReplicas; time.Sleep(200 * time.Millisecond) {
		require.False(t, time.Now().After(deadline), "the service's 4 tasks of 1.0.0 did not run within 2 minutes: %+v", sw.tasks)
	}
	return sw, env
}

// swarmBaselineNetwork is the network of newSwarmBaseline's service.
func swarmBaselineNetwork(env string) string { return env + "-net" }

// update issues `docker service update --image version` (with extra flags) and waits for
// the update to end in want; it returns the time from issuing it to seeing it end.
func (s *swarmService) update(version, want string, extra ...string) time.Duration {
	s.t.Helper()
	from := s.image()
	args := append([]string{"service", "update", "--detach", "--no-resolve-image"}, extra...)
	t0 := time.Now()
	s.docker(time.Minute, append(args, "--image", testenv.DemoImage(version), s.name)...)
	if want == "completed" {
		s.waitUpdate(version, from, want)
	} else {
		s.waitUpdate(from, version, want)
	}
	return time.Since(t0)
}

// image is the tag of the service's image now.
func (s *swarmService) image() string {
	s.t.Helper()
	ref := strings.TrimSpace(s.docker(time.Minute, "service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", s.name))
	return strings.TrimPrefix(ref, testenv.DemoRepository+":")
}

// waitUpdate polls the service's UpdateStatus every 200 ms until the update (or rollback) in
// progress ends: it must end in want with every task of version running and none of gone.
// A state left by an earlier update counts only once the new one was seen in progress, or
// when the tasks already say it ended.
func (s *swarmService) waitUpdate(version, gone, want string) {
	s.t.Helper()
	ended := map[string]bool{"completed": true, "paused": true, "rollback_completed": true, "rollback_paused": true}
	seen := false
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		state := strings.TrimSpace(s.docker(time.Minute, "service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", s.name))
		if state == "updating" || state == "rollback_started" {
			seen = true
		}
		if ended[state] && (seen || state == want) {
			tasksDone := s.running(version) == swarmBenchReplicas && s.running(gone) == 0
			if state == want && tasksDone {
				return
			}
			require.False(s.t, seen && state != want, "the update of %s ended %s, not %s: %+v", s.name, state, want, s.tasks)
		}
		require.False(s.t, time.Now().After(deadline), "the update of %s did not end %s within 3 minutes (state %q): %+v", s.name, want, state, s.tasks)
	}
}

// BenchmarkSwarmRollback: a bad version caught and rolled back, 4 replicas of 1.0.0 on the
// swarm, bad-health (its /healthz turns 503 3 s after start; the rest keeps answering 200):
// the bad version Swarm's own health check can detect. Watched from outside by the observer
// of the rollback benchmarks (observer_test.go) on the service's network, through its name.
// Figure: from the start (Slipway: starting the workflow; Swarm: issuing the update) to the
// first round after the last answer of bad-health in which all 4 replicas answer 200 with
// 1.0.0.
//
// Slipway: the bench shape's release of bad-health; its canary fails (health check) and is
// rolled back, the stable replicas never left. Swarm: `docker service update --image
// slipway/demo:bad-health` with --update-failure-action rollback (monitor = the window,
// rollback parallelism 2, start-first): the updated tasks turn unhealthy inside the monitor,
// Swarm rolls the update back by itself.
func BenchmarkSwarmRollback(b *testing.B) {
	host := testenv.SwarmDaemon(b)
	imgs := newObserverImages(b)
	var slipway, swarm, ratio, slipwayDone, swarmDone []float64
	for i := 0; i < b.N; i++ {
		for run := 1; run <= swarmBenchRuns(); run++ {
			load := testenv.LoadAverage(b)
			var s, w swarmRollbackRun
			sides := []func(){
				func() { p := newPhase(b); s = slipwaySwarmRollback(p, host, imgs); p.end() },
				func() { p := newPhase(b); w = swarmUpdateRollback(p, host, imgs); p.end() },
			}
			if run%2 == 0 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				side()
			}
			load = max(load, testenv.LoadAverage(b))
			slipway, swarm = append(slipway, ms(s.outside())), append(swarm, ms(w.outside()))
			ratio = append(ratio, float64(s.outside())/float64(w.outside()))
			slipwayDone, swarmDone = append(slipwayDone, ms(s.done)), append(swarmDone, ms(w.done))
			fmt.Printf("swarm: run %d rollback (bad-health): slipway %s (bad version seen %s; ended %s; %s; unanswered %d %v) | docker service update, failure action rollback %s (bad version seen %s; rollback_completed %s; unanswered %d %v) | ratio %.2f; slipway first %t; load average ≤ %.1f\n",
				run, msStr(s.outside()), msStr(s.seen.lastBad.Sub(s.seen.firstBad)), msStr(s.done), s.reason, s.seen.failed, s.seen.why,
				msStr(w.outside()), msStr(w.seen.lastBad.Sub(w.seen.firstBad)), msStr(w.done), w.seen.failed, w.seen.why,
				float64(s.outside())/float64(w.outside()), run%2 == 1, load)
		}
	}
	b.ReportMetric(median(slipway), "slipway-ms")
	b.ReportMetric(median(swarm), "swarm-update-rollback-ms")
	b.ReportMetric(median(ratio), "ratio")
	b.ReportMetric(median(slipwayDone), "slipway-ended-ms")
	b.ReportMetric(median(swarmDone), "swarm-rollback-completed-ms")
}

// swarmRollbackRun is one bad release, watched.
type swarmRollbackRun struct {
	start  time.Time
	done   time.Duration // until the release's result / UpdateStatus rollback_completed
	reason string
	seen   switchView
}

// outside is the figure: the start to every answer from the previous version again.
func (r swarmRollbackRun) outside() time.Duration { return r.seen.at.Sub(r.start) }

// slipwaySwarmRollback seeds 1.0.0 on a fresh swarm-only environment, starts the observer on
// its network, and releases bad-health.
func slipwaySwarmRollback(t testing.TB, host string, imgs *observerImages) swarmRollbackRun {
	f := newSwarmOnlyFixture(t, host)
	f.startWorker()
	f.seedSpec(f.swarmOnlySpec("1.0.0"))
	o := observe(t, imgs, host, f.env, dockerengine.SwarmNetworkName(f.targets[0].Network()), "web", swarmBenchReplicas, "slipway")
	o.waitFor("1.0.0 served", 2*time.Minute, serving("1.0.0", swarmBenchReplicas))
	r := swarmRollbackRun{start: time.Now()}
	st := f.wait(f.release("bad", workflows.ReleaseInput{Spec: f.swarmOnlySpec("bad-health")}))
	r.done = time.Since(r.start)
	require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	require.True(t, caughtAtCanary(st), "caught at the canary: %s", st.Reason)
	r.reason = st.Reason
	r.seen = switchedAll(t, []*observer{o}, "1.0.0", r.start)
	return r
}

// swarmUpdateRollback creates the baseline service at 1.0.0, starts the observer on its
// network, and updates it to bad-health: Swarm must roll it back by itself.
func swarmUpdateRollback(t testing.TB, host string, imgs *observerImages) swarmRollbackRun {
	sw, env := newSwarmBaseline(t, host)
	o := observe(t, imgs, host, env, swarmBaselineNetwork(env), sw.name, swarmBenchReplicas, "swarm")
	o.waitFor("1.0.0 served", 2*time.Minute, serving("1.0.0", swarmBenchReplicas))
	r := swarmRollbackRun{start: time.Now()}
	r.done = sw.update("bad-health", "rollback_completed")
	r.reason = "rolled back by Swarm"
	r.seen = switchedAll(t, []*observer{o}, "1.0.0", r.start)
	return r
}
