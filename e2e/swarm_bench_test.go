package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
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

// BenchmarkRollbackVsSwarm (b), Docker's own baseline: the time from the decision to roll
// back to every replica serving the previous version again, for Slipway and for
// `docker service rollback` of the same service on a swarm, measured in the same run.
//
// The swarm is a single-node swarm on a second dockerd of its own (testenv.SwarmDaemon; the
// default engine is never put in swarm mode). Its service: 6 replicas of slipway/demo:1.0.0,
// --endpoint-mode dnsrr (no IPVS here) on the daemon's default bridge, the image's
// HEALTHCHECK at Slipway's bench cadence (250ms interval, 1s timeout, 3 retries), updated to
// bad-errors (healthy but wrong, so Swarm's update completes) with --update-parallelism 6
// --update-order start-first, then rolled back with --rollback-parallelism 6: all six at
// once, the batch shape of BenchmarkRollback. Measured twice: --rollback-order start-first
// (no moment without a replica, like Slipway) and stop-first (Docker's default).
//
// The clock starts when `docker service rollback --detach` is issued and stops at the first
// poll round (one `docker service ps`, then GET / on the tasks, 50ms apart) that sees every
// replica serving 1.0.0: 6 tasks of 1.0.0 Running (Swarm reports Running only once the
// health check has passed, and binds the task into the service's DNS then), each answering
// GET / on its container address with version 1.0.0, and every task of bad-errors with a
// desired state other than Running (Swarm is taking it out: unbinding it from the service
// is the agent's first shutdown step). That is the counterpart of Slipway's "back in
// traffic", after which the bad replicas are removed. A second figure waits for the bad
// containers to have stopped too ("-bad-stopped-ms"). The mean poll round is reported as
// the resolution of both.
//
// Slipway's figures in the same run, with the previous replicas kept running (the default):
// 6 replicas on one cluster whose engine is that same daemon (the like-for-like figure,
// "slipway-ms"), and 3 + 3 on two engines in one wave, the shape of BenchmarkRollback
// ("slipway-2engines-ms"); and the 6 on the swarm's engine with the previous replicas kept
// stopped ("slipway-stopped-ms": like Swarm, it must start containers and pass their health
// check). All from the "verdict failed" event to the last "previous version back in
// traffic" event, as BenchmarkRollback measures. The ratios are Slipway's like-for-like
// figure over Docker's.
//
// Each part cleans up before the next one runs (phase), so none is measured beside another's
// containers.
func BenchmarkRollbackVsSwarm(b *testing.B) {
	host := testenv.SwarmDaemon(b)
	for i := 0; i < b.N; i++ {
		p := newPhase(b)
		twoEngines := slipwayRollback(newFixture(p, 2), 3, spec.KeepRunning)
		p.end()

		p = newPhase(b)
		oneEngine := slipwayRollback(newFixtureOn(p, host), 6, spec.KeepRunning)
		p.end()

		p = newPhase(b)
		stopped := slipwayRollback(newFixtureOn(p, host), 6, spec.KeepStopped)
		p.end()

		swarm := map[string]swarmResult{}
		for _, order := range []string{"start-first", "stop-first"} {
			p = newPhase(b)
			swarm[order] = swarmRollback(p, host, order)
			p.end()
		}

		b.ReportMetric(ms(oneEngine), "slipway-ms")
		b.ReportMetric(ms(twoEngines), "slipway-2engines-ms")
		b.ReportMetric(ms(stopped), "slipway-stopped-ms")
		for _, order := range []string{"start-first", "stop-first"} {
			r := swarm[order]
			b.ReportMetric(ms(r.serving), "swarm-"+order+"-ms")
			b.ReportMetric(ms(r.stopped), "swarm-"+order+"-bad-stopped-ms")
			b.ReportMetric(ms(r.poll), "swarm-"+order+"-poll-ms")
			b.ReportMetric(float64(oneEngine)/float64(r.serving), "ratio-"+order)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

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

// slipwayRollback seeds 1.0.0 with per replicas on each of f's clusters, releases bad-errors
// with every cluster in wave 1, no canary, one batch per cluster and the previous replicas
// kept as keep says, and returns the time from the failed verdict to the last "previous
// version back in traffic" event (BenchmarkRollback's figure).
func slipwayRollback(f *fixture, per int, keep string) time.Duration {
	f.t.Helper()
	f.startWorker()
	shape := func(s *spec.Service) {
		s.Replicas, s.Rollout.BatchSize = per, per
		s.Canary.Skip = true
		s.Rollback.KeepPrevious = keep
	}
	f.seed("1.0.0", shape)
	bad := f.spec("bad-errors", shape)
	for j := range bad.Clusters {
		bad.Clusters[j].Wave = 1
	}
	st := f.wait(f.release("rollback", workflows.ReleaseInput{Spec: bad}))
	require.Equal(f.t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	var failed, back time.Time
	for _, e := range st.Events {
		if failed.IsZero() && strings.HasPrefix(e.Message, "verdict failed") {
			failed = e.At
		}
		if strings.HasPrefix(e.Message, "previous version back in traffic") && e.At.After(back) {
			back = e.At
		}
	}
	require.False(f.t, failed.IsZero() || back.IsZero(), "events of the failure and the switch")
	// the replicas of 1.0.0 take the traffic again on every cluster
	for _, tg := range f.targets {
		in := 0
		for _, c := range f.live(tg)["1.0.0"] {
			if c.Running() && c.InTraffic {
				in++
			}
		}
		require.Equal(f.t, per, in, "1.0.0 replicas in traffic on %s", tg.Cluster)
	}
	return back.Sub(failed)
}

// swarmResult is one measured `docker service rollback`.
type swarmResult struct {
	serving time.Duration // rollback issued → every replica serving the previous version
	stopped time.Duration // rollback issued → that, and every replica of the bad version stopped
	poll    time.Duration // mean time of one poll round while waiting (the figure's resolution)
}

// swarmReplicas is the replica count of the swarm service (BenchmarkRollback's 6).
const swarmReplicas = 6

// swarmRollback creates the bench service on the swarm at host, updates it to bad-errors,
// and measures `docker service rollback` with the given --rollback-order.
func swarmRollback(t testing.TB, host, order string) swarmResult {
	t.Helper()
	env := testenv.UniqueEnv(t) // its cleanup checks no container of env is left
	sw := &swarmService{t: t, host: host, name: env + "-web", ips: map[string]string{}}
	sw.docker(time.Minute, "service", "create", "--detach", "--no-resolve-image",
		"--name", sw.name, "--replicas", fmt.Sprint(swarmReplicas), "--endpoint-mode", "dnsrr",
		// the image's own HEALTHCHECK command, at the cadence of Slipway's bench spec
		"--health-interval", "250ms", "--health-timeout", "1s", "--health-retries", "3",
		"--update-parallelism", fmt.Sprint(swarmReplicas), "--update-order", "start-first",
		"--update-monitor", "1s", "--update-failure-action", "pause",
		"--rollback-parallelism", fmt.Sprint(swarmReplicas), "--rollback-order", order,
		"--rollback-monitor", "1s", "--rollback-failure-action", "pause",
		"--label", engine.LabelEnvironment+"="+env, "--container-label", engine.LabelEnvironment+"="+env,
		testenv.DemoImage("1.0.0"))
	t.Cleanup(sw.remove)
	sw.waitServing("1.0.0", time.Now(), 2*time.Minute)

	sw.docker(time.Minute, "service", "update", "--detach", "--no-resolve-image", "--image", testenv.DemoImage("bad-errors"), sw.name)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		state := strings.TrimSpace(sw.docker(time.Minute, "service", "inspect", "--format", "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}", sw.name))
		require.Contains(t, []string{"", "updating", "completed"}, state, "the update to bad-errors")
		if state == "completed" && sw.running("bad-errors") == swarmReplicas && sw.running("1.0.0") == 0 {
			break
		}
		require.False(t, time.Now().After(deadline), "the update to bad-errors did not complete within 2 minutes: %+v", sw.tasks)
	}

	t0 := time.Now()
	sw.since = t0
	sw.docker(time.Minute, "service", "rollback", "--detach", sw.name)
	serving, stopped, rounds := sw.waitServing("1.0.0", t0, 2*time.Minute)
	t.Logf("swarm rollback (%s): every replica serving 1.0.0 after %v, bad-errors stopped after %v (%d poll rounds)", order, serving, stopped, rounds)
	return swarmResult{serving: serving, stopped: stopped, poll: stopped / time.Duration(rounds)}
}

// swarmService is a swarm service under measurement, watched through the docker CLI.
type swarmService struct {
	t     testing.TB
	host  string
	name  string
	ips   map[string]string // task ID → container address
	tasks []swarmTask       // last poll

	since time.Time // when set, poll logs each change of the task states from then on
	last  string
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
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", s.host}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// poll reads the service's tasks.
func (s *swarmService) poll() {
	s.t.Helper()
	out := s.docker(time.Minute, "service", "ps", "--no-trunc", "--format", "{{.ID}}\t{{.Image}}\t{{.DesiredState}}\t{{.CurrentState}}", s.name)
	s.tasks = s.tasks[:0]
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Split(line, "\t"); len(f) == 4 {
			s.tasks = append(s.tasks, swarmTask{id: f[0], image: f[1], desired: f[2], current: f[3]})
		}
	}
	if !s.since.IsZero() {
		if sum := s.summary(); sum != s.last {
			s.last = sum
			s.t.Logf("  +%4dms %s", time.Since(s.since).Milliseconds(), sum)
		}
	}
}

// summary counts the tasks of the last poll by version and state, e.g.
// "1.0.0 Running 6 | bad-errors Shutdown 6".
func (s *swarmService) summary() string {
	count := map[string]int{}
	var keys []string
	for _, task := range s.tasks {
		state, _, _ := strings.Cut(task.current, " ")
		k := strings.TrimPrefix(task.image, testenv.DemoRepository+":") + " " + state
		if count[k] == 0 {
			keys = append(keys, k)
		}
		count[k]++
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, count[k])
	}
	return strings.Join(parts, " | ")
}

// runningTasks returns the tasks of version that Swarm reports Running, from the last poll.
func (s *swarmService) runningTasks(version string) []swarmTask {
	var out []swarmTask
	for _, task := range s.tasks {
		if task.image == testenv.DemoImage(version) && strings.HasPrefix(task.current, "Running") {
			out = append(out, task)
		}
	}
	return out
}

// running polls and counts the Running tasks of version.
func (s *swarmService) running(version string) int {
	s.t.Helper()
	s.poll()
	return len(s.runningTasks(version))
}

// pollPause is the pause between two poll rounds: the docker CLI costs CPU on a 2-core
// machine, and a tight loop of it would slow down the daemon being measured.
const pollPause = 50 * time.Millisecond

// waitServing polls until every replica serves version and no replica of another version
// runs any more (see BenchmarkRollbackVsSwarm). It returns how long after t0 the first
// happened, how long after t0 the second, and the number of poll rounds.
func (s *swarmService) waitServing(version string, t0 time.Time, within time.Duration) (serving, othersStopped time.Duration, rounds int) {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for rounds = 1; ; rounds++ {
		up, stopped := s.serving(version)
		now := time.Since(t0)
		if up && serving == 0 {
			serving = now
		}
		if up && stopped {
			return serving, now, rounds
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("swarm service %s: not every replica serves %s within %v; tasks: %+v", s.name, version, within, s.tasks)
		}
		time.Sleep(pollPause)
	}
}

// serving is one poll round. up: `docker service ps` shows 6 Running tasks of version and
// every task of another version is no longer meant to run (desired state not Running:
// Swarm is taking it out), and each of the six answers GET / with version. othersStopped:
// no task of another version is Running any more (its container has stopped).
func (s *swarmService) serving(version string) (up, othersStopped bool) {
	s.t.Helper()
	s.poll()
	want := s.runningTasks(version)
	othersStopped = true
	for _, task := range s.tasks {
		if task.image == testenv.DemoImage(version) {
			continue
		}
		if task.desired == "Running" {
			return false, false
		}
		if strings.HasPrefix(task.current, "Running") {
			othersStopped = false
		}
	}
	if len(want) != swarmReplicas {
		return false, othersStopped
	}
	var unknown []string
	for _, task := range want {
		if s.ips[task.id] == "" {
			unknown = append(unknown, task.id)
		}
	}
	if len(unknown) > 0 {
		// task → container → address, two calls for every new task of the round
		out, err := s.try(time.Minute, append([]string{"inspect", "--type", "task", "--format", "{{.ID}} {{.Status.ContainerStatus.ContainerID}}"}, unknown...)...)
		if err != nil {
			return false, othersStopped // a task gone between the two calls
		}
		containerOf := map[string]string{}
		var cids []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 2 {
				containerOf[f[1]] = f[0]
				cids = append(cids, f[1])
			}
		}
		out, err = s.try(time.Minute, append([]string{"inspect", "--type", "container", "--format", "{{.ID}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"}, cids...)...)
		if err != nil {
			return false, othersStopped
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 2 && containerOf[f[0]] != "" {
				s.ips[containerOf[f[0]]] = f[1]
			}
		}
	}
	var wg sync.WaitGroup
	ok := make([]bool, len(want))
	for i, task := range want {
		ip := s.ips[task.id]
		if ip == "" {
			return false, othersStopped
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := versionAt(net.JoinHostPort(ip, "8080"))
			ok[i] = err == nil && v == version
		}()
	}
	wg.Wait()
	for _, o := range ok {
		if !o {
			return false, othersStopped
		}
	}
	return true, othersStopped
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

// probeClient asks replicas directly (no proxy), with a short timeout.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// versionAt GETs / at addr and returns the version the demo service reports.
func versionAt(addr string) (string, error) {
	resp, err := probeClient.Get("http://" + addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s/: %s", addr, resp.Status)
	}
	var r struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", fmt.Errorf("GET %s/: %w", addr, err)
	}
	return r.Version, nil
}
