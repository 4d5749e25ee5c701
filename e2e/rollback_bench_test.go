package e2e

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// Rollback benchmarks (make bench; BENCHMARKS.md, Rollback), measured from outside: an
// observer container (e2e/observer, observer_test.go) on the service's network asks the
// service through its DNS name every 20 ms, every replica behind the name each round, and
// logs the answers with the machine's clock. A rollback is done, for a user, at the start of
// the first round after the last answer of the bad version in which every replica answers
// 200 with the previous version. Each Slipway figure sits beside a baseline of the same run,
// watched by the same observer; SLIPWAY_BENCH_ROLLBACK_RUNS (default 3) runs, one line per
// run ("rollback:"), medians reported as metrics.

// rollbackRuns is how many runs each rollback benchmark makes (within its one iteration).
func rollbackRuns() int { return envInt("SLIPWAY_BENCH_ROLLBACK_RUNS", 3) }

// BenchmarkRollback: two parts per run.
//
//   - Warm rollback against the fastest switch by hand. Slipway: 3 + 3 replicas on two
//     engines (the default one and an isolated one) in one wave, no canary, bad-errors
//     failing the batch's verification, the previous replicas kept running (the default);
//     from the "verdict failed" event to the observers' switch (the later of the two
//     clusters). By hand, on a fixture of the same shape with both versions running: the
//     same engine calls Slipway's SetTraffic makes (dockerengine Attach and Detach), issued
//     in parallel, both clusters at once: every previous replica attached, then every bad
//     one detached ("hand"); and, a second baseline, all twelve calls at once ("hand-all",
//     which may leave the name without any replica for a moment). From issuing the first
//     call to the observers' switch.
//   - Detection with the built-in defaults: a spec that sets no policy (defaultsSpec: one
//     cluster on an isolated engine, 2 replicas), bad-intermittent (5 % of requests 500 at
//     random); from the first answer of the bad version the observer gets (the canary in
//     traffic) to the observer's switch back, and from the canary stage's start.
func BenchmarkRollback(b *testing.B) {
	imgs := newObserverImages(b)
	var warm, hand, handAll, ratio, detect, fromCanary []float64
	for i := 0; i < b.N; i++ {
		for run := 1; run <= rollbackRuns(); run++ {
			load := testenv.LoadAverage(b)
			var s rollbackRun
			var h, ha handRun
			sides := []func(){
				func() { p := newPhase(b); s = slipwayRollback(newFixture(p, 2), imgs, 3, spec.KeepRunning); p.end() },
				func() { p := newPhase(b); h, ha = handSwitches(newFixture(p, 2), imgs, 3); p.end() },
			}
			if run%2 == 0 { // alternate which goes first
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				side()
			}
			p := newPhase(b)
			d := detection(newRemoteFixture(p), imgs)
			p.end()
			load = max(load, testenv.LoadAverage(b))

			warm = append(warm, ms(s.outside()))
			hand = append(hand, ms(h.outside()))
			handAll = append(handAll, ms(ha.outside()))
			ratio = append(ratio, float64(s.outside())/float64(h.outside()))
			detect = append(detect, ms(d.seen.at.Sub(d.firstBad)))
			fromCanary = append(fromCanary, ms(d.seen.at.Sub(d.canary)))
			fmt.Printf("rollback: run %d warm: slipway %s (events: %s; unanswered %d %v; clusters switched %d) | by hand, attach then detach %s (calls %s; unanswered %d %v) | by hand, all at once %s (calls %s; unanswered %d %v) | ratio %.2f\n",
				run, msStr(s.outside()), msStr(s.back.Sub(s.decided)), s.seen.failed, s.seen.why, s.seen.clusters,
				msStr(h.outside()), msStr(h.calls), h.seen.failed, h.seen.why, msStr(ha.outside()), msStr(ha.calls), ha.seen.failed, ha.seen.why,
				float64(s.outside())/float64(h.outside()))
			fmt.Printf("rollback: run %d detection (defaults, bad-intermittent): first bad answer → all previous %s; canary stage start → all previous %s; failed verdict → all previous %s; bad answers seen %s; load average ≤ %.1f\n",
				run, msStr(d.seen.at.Sub(d.firstBad)), msStr(d.seen.at.Sub(d.canary)), msStr(d.seen.at.Sub(d.decided)),
				msStr(d.seen.lastBad.Sub(d.firstBad)), load)
		}
	}
	b.ReportMetric(median(warm), "slipway-warm-ms")
	b.ReportMetric(median(hand), "hand-switch-ms")
	b.ReportMetric(median(handAll), "hand-all-at-once-ms")
	b.ReportMetric(median(ratio), "ratio-warm")
	b.ReportMetric(median(detect), "detect-ms")
	b.ReportMetric(median(fromCanary), "canary-to-previous-ms")
}

// BenchmarkRollbackVsSwarm: Slipway's rollback with the previous replicas kept stopped
// against Docker's own `docker service rollback`: both start containers and wait for their
// health checks, 6 replicas on one engine, the dockerd of a single-node swarm of its own
// (testenv.SwarmDaemon; the default engine is never put in swarm mode), watched by the same
// observer.
//
// Slipway: 6 replicas of 1.0.0, bad-errors released with no canary, one batch, the bench
// spec's health checks (250 ms) and 2 s verification, keep_previous: stopped; from the
// "verdict failed" event to the observer's switch.
//
// Swarm: a service of 6 replicas of 1.0.0 on an overlay network of its own (attachable, so
// the observer joins it; a swarm-scoped bridge network gives no service DNS), --endpoint-mode dnsrr (its name resolves to its
// tasks' addresses; no IPVS here), the image's HEALTHCHECK at the bench spec's cadence
// (250ms interval, 1s timeout, 3 retries), updated to bad-errors (healthy but wrong, so the
// update completes) with --update-parallelism 6 --update-order start-first, then rolled back
// with --rollback-parallelism 6 (all at once, like Slipway's one batch) and
// --rollback-order start-first (no moment without a replica, like Slipway) or stop-first
// (Docker's default). From issuing `docker service rollback --detach` to the observer's
// switch.
//
// Each part cleans up before the next one runs (phase).
func BenchmarkRollbackVsSwarm(b *testing.B) {
	host := testenv.SwarmDaemon(b)
	imgs := newObserverImages(b)
	var stopped, startFirst, stopFirst, ratio []float64
	for i := 0; i < b.N; i++ {
		for run := 1; run <= rollbackRuns(); run++ {
			load := testenv.LoadAverage(b)
			var s rollbackRun
			sw := map[string]swarmRun{}
			sides := []func(){
				func() {
					p := newPhase(b)
					s = slipwayRollback(newFixtureOn(p, host), imgs, 6, spec.KeepStopped)
					p.end()
				},
				func() {
					for _, order := range []string{"start-first", "stop-first"} {
						p := newPhase(b)
						sw[order] = swarmRollback(p, imgs, host, order)
						p.end()
					}
				},
			}
			if run%2 == 0 {
				sides[0], sides[1] = sides[1], sides[0]
			}
			for _, side := range sides {
				side()
			}
			load = max(load, testenv.LoadAverage(b))
			sf, st := sw["start-first"], sw["stop-first"]
			stopped = append(stopped, ms(s.outside()))
			startFirst = append(startFirst, ms(sf.outside()))
			stopFirst = append(stopFirst, ms(st.outside()))
			ratio = append(ratio, float64(s.outside())/float64(sf.outside()))
			fmt.Printf("rollback: run %d vs swarm: slipway kept stopped %s (events: %s; unanswered %d %v) | swarm start-first %s (unanswered %d %v) | swarm stop-first %s (unanswered %d %v) | ratio to start-first %.2f; load average ≤ %.1f\n",
				run, msStr(s.outside()), msStr(s.back.Sub(s.decided)), s.seen.failed, s.seen.why,
				msStr(sf.outside()), sf.seen.failed, sf.seen.why, msStr(st.outside()), st.seen.failed, st.seen.why,
				float64(s.outside())/float64(sf.outside()), load)
		}
	}
	b.ReportMetric(median(stopped), "slipway-stopped-ms")
	b.ReportMetric(median(startFirst), "swarm-start-first-ms")
	b.ReportMetric(median(stopFirst), "swarm-stop-first-ms")
	b.ReportMetric(median(ratio), "ratio-start-first")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func msStr(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// rollbackRun is one Slipway rollback, measured.
type rollbackRun struct {
	decided time.Time  // the "verdict failed" event
	back    time.Time  // the last "previous version back in traffic" event
	seen    switchView // what the observers saw (the later cluster's switch)
}

// outside is the figure: the failed verdict to the observers' switch.
func (r rollbackRun) outside() time.Duration { return r.seen.at.Sub(r.decided) }

// badShape is the bench shape: per replicas per cluster, one batch, no canary, the previous
// replicas kept as keep says.
func badShape(per int, keep string) func(*spec.Service) {
	return func(s *spec.Service) {
		s.Replicas, s.Rollout.BatchSize = per, per
		s.Canary.Skip = true
		s.Rollback.KeepPrevious = keep
	}
}

// observeTargets starts an observer on each of f's clusters, asking "web" (the service's
// alias on the environment's network), and waits until each sees version served by want
// replicas.
func observeTargets(f *fixture, imgs *observerImages, want int, ready func(string, int) func([]round) bool, version string) []*observer {
	f.t.Helper()
	var obs []*observer
	for _, tg := range f.targets {
		obs = append(obs, observe(f.t, imgs, tg.Endpoint, f.env, tg.Network(), "web", want, "cluster "+tg.Cluster))
	}
	for _, o := range obs {
		o.waitFor(version+" served", time.Minute, ready(version, want))
	}
	return obs
}

// switchedAll waits until every observer has seen a second of whole rounds of version and
// returns the latest switch among those that saw another version (failures summed).
func switchedAll(t testing.TB, obs []*observer, version string, from time.Time) switchView {
	t.Helper()
	var out switchView
	for _, o := range obs {
		rs := o.waitFor(version+" settled", time.Minute, func(rs []round) bool { return settled(rs, version, o.want) })
		v, ok := switched(rs, version, o.want, from)
		if v.firstBad.IsZero() {
			// A release that failed early on one cluster may roll back before another
			// cluster's batch took traffic: nothing to switch back there.
			t.Logf("observer %s: the bad version never served there", o.label)
			continue
		}
		require.True(t, ok, "observer %s: no switch back to %s after %s; last rounds %v", o.label, version, from.Format("15:04:05.000"), tail(rs, 5))
		out.clusters++
		t.Logf("observer %s: %d rounds; bad version first %s, last %s; every answer %s from %s; %d requests unanswered %v",
			o.label, v.rounds, v.firstBad.Format("15:04:05.000"), v.lastBad.Format("15:04:05.000"), version, v.at.Format("15:04:05.000"), v.failed, v.why)
		if v.at.After(out.at) {
			out.at, out.lastBad = v.at, v.lastBad
		}
		if out.firstBad.IsZero() || v.firstBad.Before(out.firstBad) {
			out.firstBad = v.firstBad
		}
		out.failed += v.failed
		for k, n := range v.why {
			if out.why == nil {
				out.why = map[string]int{}
			}
			out.why[k] += n
		}
		out.rounds += v.rounds
	}
	require.NotZero(t, out.clusters, "no observer saw the bad version")
	return out
}

// slipwayRollback seeds 1.0.0 with per replicas on each of f's clusters, starts the
// observers, releases bad-errors with every cluster in wave 1 (badShape), and measures the
// rollback its failed verification causes.
func slipwayRollback(f *fixture, imgs *observerImages, per int, keep string) rollbackRun {
	f.t.Helper()
	f.startWorker()
	shape := badShape(per, keep)
	f.seed("1.0.0", shape)
	obs := observeTargets(f, imgs, per, serving, "1.0.0")
	bad := f.spec("bad-errors", shape)
	for j := range bad.Clusters {
		bad.Clusters[j].Wave = 1
	}
	st := f.wait(f.release("rollback", workflows.ReleaseInput{Spec: bad}))
	require.Equal(f.t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	var r rollbackRun
	for _, e := range st.Events {
		if r.decided.IsZero() && strings.HasPrefix(e.Message, "verdict failed") {
			r.decided = e.At
		}
		if strings.HasPrefix(e.Message, "previous version back in traffic") && e.At.After(r.back) {
			r.back = e.At
		}
	}
	require.False(f.t, r.decided.IsZero() || r.back.IsZero(), "events of the failure and the switch")
	r.seen = switchedAll(f.t, obs, "1.0.0", r.decided)
	return r
}

// handRun is one switch by hand, measured.
type handRun struct {
	issued time.Time     // the first call issued
	calls  time.Duration // until the last call returned
	seen   switchView
}

func (h handRun) outside() time.Duration { return h.seen.at.Sub(h.issued) }

// handSwitches seeds 1.0.0 and bad-errors (per replicas each per cluster), bad-errors in
// traffic, and switches back to 1.0.0 by hand twice: attach then detach, then (after
// switching to bad-errors again) all calls at once.
func handSwitches(f *fixture, imgs *observerImages, per int) (attachThenDetach, allAtOnce handRun) {
	f.t.Helper()
	shape := badShape(per, spec.KeepRunning)
	f.seed("1.0.0", shape)
	f.seed("bad-errors", shape)
	engines := make([]engine.Engine, len(f.targets))
	for i, tg := range f.targets {
		e, err := f.dialer.Dial(ctxT(f.t, time.Minute), tg.EngineEndpoint())
		require.NoError(f.t, err)
		engines[i] = e
	}
	names := func(tg workflows.Target, version string) []string {
		var out []string
		for slot := 0; slot < per; slot++ {
			out = append(out, engine.Key{Environment: f.env, Cluster: tg.Cluster, Service: "web", Version: version, Slot: slot}.ContainerName())
		}
		return out
	}
	// toBad puts bad-errors alone in traffic (setup, not measured).
	toBad := func() {
		for i, tg := range f.targets {
			for _, n := range names(tg, "bad-errors") {
				require.NoError(f.t, engines[i].Attach(ctxT(f.t, time.Minute), n, tg.Network(), "web"))
			}
			for _, n := range names(tg, "1.0.0") {
				require.NoError(f.t, engines[i].Detach(ctxT(f.t, time.Minute), n, tg.Network()))
			}
		}
	}
	measure := func(together bool) handRun {
		toBad()
		obs := observeTargets(f, imgs, per, servingOnly, "bad-errors")
		var h handRun
		var mu sync.Mutex
		var errs []error
		call := func(wg *sync.WaitGroup, fn func() error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		h.issued = time.Now()
		var clusters sync.WaitGroup
		for i, tg := range f.targets {
			clusters.Add(1)
			go func() {
				defer clusters.Done()
				ctx := ctxT(f.t, time.Minute)
				var wg sync.WaitGroup
				for _, n := range names(tg, "1.0.0") {
					call(&wg, func() error { return engines[i].Attach(ctx, n, tg.Network(), "web") })
				}
				if !together {
					wg.Wait()
				}
				for _, n := range names(tg, "bad-errors") {
					call(&wg, func() error { return engines[i].Detach(ctx, n, tg.Network()) })
				}
				wg.Wait()
			}()
		}
		clusters.Wait()
		h.calls = time.Since(h.issued)
		require.NoError(f.t, errors.Join(errs...))
		h.seen = switchedAll(f.t, obs, "1.0.0", h.issued)
		for _, o := range obs {
			_, err := dockerCLI(o.host, time.Minute, "rm", "-f", o.name)
			require.NoError(f.t, err)
		}
		return h
	}
	return measure(false), measure(true)
}

// detectionRun is one release of a bad version under the built-in defaults, watched.
type detectionRun struct {
	canary   time.Time // the canary stage's start (event)
	decided  time.Time // the failed verdict
	firstBad time.Time // the observer's first answer of the bad version
	seen     switchView
}

// detection releases bad-intermittent over 1.0.0 with defaultsSpec (no policy) on f (one
// cluster) and watches it from outside.
func detection(f *fixture, imgs *observerImages) detectionRun {
	f.t.Helper()
	f.startWorker()
	f.seedSpec(f.defaultsSpec("1.0.0"))
	obs := observeTargets(f, imgs, 2, serving, "1.0.0")
	st := f.wait(f.release("detect", workflows.ReleaseInput{Spec: f.defaultsSpec("bad-intermittent")}))
	require.Equal(f.t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	require.True(f.t, caughtAtCanary(st), "caught at the canary")
	var d detectionRun
	for _, e := range st.Events {
		if d.canary.IsZero() && e.Phase == workflows.PhaseCanary {
			d.canary = e.At
		}
	}
	for _, v := range st.Verdicts {
		if v.Result == workflows.VerdictFailed && d.decided.IsZero() {
			d.decided = v.At
		}
	}
	require.False(f.t, d.canary.IsZero() || d.decided.IsZero(), "canary start and failed verdict")
	d.seen = switchedAll(f.t, obs, "1.0.0", d.decided)
	d.firstBad = d.seen.firstBad
	return d
}

// swarmRun is one `docker service rollback`, measured.
type swarmRun struct {
	issued time.Time
	seen   switchView
}

func (s swarmRun) outside() time.Duration { return s.seen.at.Sub(s.issued) }

// swarmReplicas is the replica count of the swarm service (and of Slipway's side).
const swarmReplicas = 6

// swarmRollback creates the bench service on the swarm at host on a network of its own,
// updates it to bad-errors, and measures `docker service rollback` with the given
// --rollback-order, watched by an observer on the service's network.
func swarmRollback(t testing.TB, imgs *observerImages, host, order string) swarmRun {
	t.Helper()
	env := testenv.UniqueEnv(t) // its cleanup checks no container or network of env is left
	sw := &swarmService{t: t, host: host, name: env + "-web"}
	network := env + "-net"
	sw.docker(time.Minute, "network", "create", "--driver", "overlay", "--attachable",
		"--label", engine.LabelEnvironment+"="+env, network)
	t.Cleanup(func() {
		if _, err := sw.try(time.Minute, "network", "rm", network); err != nil {
			t.Errorf("removing swarm network %s: %v", network, err)
		}
	})
	sw.docker(time.Minute, "service", "create", "--detach", "--no-resolve-image",
		"--name", sw.name, "--replicas", fmt.Sprint(swarmReplicas), "--endpoint-mode", "dnsrr", "--network", network,
		// the image's own HEALTHCHECK command, at the cadence of Slipway's bench spec
		"--health-interval", "250ms", "--health-timeout", "1s", "--health-retries", "3",
		"--update-parallelism", fmt.Sprint(swarmReplicas), "--update-order", "start-first",
		"--update-monitor", "1s", "--update-failure-action", "pause",
		"--rollback-parallelism", fmt.Sprint(swarmReplicas), "--rollback-order", order,
		"--rollback-monitor", "1s", "--rollback-failure-action", "pause",
		"--label", engine.LabelEnvironment+"="+env, "--container-label", engine.LabelEnvironment+"="+env,
		testenv.DemoImage("1.0.0"))
	t.Cleanup(sw.remove) // registered after the network's: runs before it
	o := observe(t, imgs, host, env, network, sw.name, swarmReplicas, "swarm "+order)
	o.waitFor("1.0.0 served", 2*time.Minute, serving("1.0.0", swarmReplicas))

	sw.docker(time.Minute, "service", "update", "--detach", "--no-resolve-image", "--image", testenv.DemoImage("bad-errors"), sw.name)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		state := strings.TrimSpace(sw.docker(time.Minute, "service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", sw.name))
		require.Contains(t, []string{"", "updating", "completed"}, state, "the update to bad-errors")
		if state == "completed" && sw.running("bad-errors") == swarmReplicas && sw.running("1.0.0") == 0 {
			break
		}
		require.False(t, time.Now().After(deadline), "the update to bad-errors did not complete within 2 minutes: %+v", sw.tasks)
	}
	o.waitFor("bad-errors served", time.Minute, servingOnly("bad-errors", swarmReplicas))

	r := swarmRun{issued: time.Now()}
	sw.docker(time.Minute, "service", "rollback", "--detach", sw.name)
	r.seen = switchedAll(t, []*observer{o}, "1.0.0", r.issued)
	return r
}

// phase collects the cleanups registered during one part of a benchmark and runs them (last
// first) at end, so each part leaves the machine as it found it before the next part is
// measured; b's own cleanups would only run when the whole benchmark ends. end is also
// registered on b, for a part that stops on a failure.
type phase struct {
	testing.TB
	mu  sync.Mutex
	fns []func()
}

func newPhase(b testing.TB) *phase {
	p := &phase{TB: b}
	b.Cleanup(p.end)
	return p
}

// Cleanup registers f to run at the end of the phase.
func (p *phase) Cleanup(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fns = append(p.fns, f)
}

// end runs the phase's cleanups, last registered first; a second call does nothing.
func (p *phase) end() {
	for {
		p.mu.Lock()
		if len(p.fns) == 0 {
			p.mu.Unlock()
			return
		}
		f := p.fns[len(p.fns)-1]
		p.fns = p.fns[:len(p.fns)-1]
		p.mu.Unlock()
		f()
	}
}

// newFixtureOn is newFixture with one cluster, "a", on the engine at endpoint.
func newFixtureOn(t testing.TB, endpoint string) *fixture {
	t.Helper()
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	f := &fixture{t: t, env: env, queue: "e2e-" + env, dialer: dockerengine.NewDialer(dockerengine.Options{})}
	f.targets = []workflows.Target{{Environment: env, Cluster: "a", Endpoint: endpoint}}
	server(t)
	t.Cleanup(func() {
		for _, tg := range f.targets {
			f.cleanup(tg)
		}
		_ = f.dialer.Close()
	})
	return f
}

// swarmService is a swarm service under measurement, driven through the docker CLI.
type swarmService struct {
	t     testing.TB
	host  string
	name  string
	tasks []swarmTask // last poll
}

// swarmTask is one line of `docker service ps`.
type swarmTask struct{ id, image, desired, current string }

func (s *swarmService) docker(timeout time.Duration, args ...string) string {
	s.t.Helper()
	out, err := s.try(timeout, args...)
	require.NoError(s.t, err)
	return out
}

func (s *swarmService) try(timeout time.Duration, args ...string) (string, error) {
	return dockerCLI(s.host, timeout, args...)
}

// running reads the service's tasks and counts the Running ones of version.
func (s *swarmService) running(version string) int {
	s.t.Helper()
	out := s.docker(time.Minute, "service", "ps", "--no-trunc", "--format", "{{.ID}}\t{{.Image}}\t{{.DesiredState}}\t{{.CurrentState}}", s.name)
	s.tasks = s.tasks[:0]
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			task := swarmTask{id: f[0], image: f[1], desired: f[2], current: f[3]}
			s.tasks = append(s.tasks, task)
			if task.image == testenv.DemoImage(version) && strings.HasPrefix(task.current, "Running") {
				n++
			}
		}
	}
	return n
}

// remove removes the service and waits until its containers are gone.
func (s *swarmService) remove() {
	if _, err := s.try(time.Minute, "service", "rm", s.name); err != nil {
		s.t.Errorf("removing swarm service %s: %v", s.name, err)
		return
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := s.try(time.Minute, "ps", "-aq", "--filter", "label=com.docker.swarm.service.name="+s.name)
		if err == nil && strings.TrimSpace(out) == "" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("containers of swarm service %s still there a minute after service rm: %s %v", s.name, out, err)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
