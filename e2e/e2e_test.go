// Package e2e runs the real Release workflow on the embedded Temporal server with the real
// worker and the real Docker engines, with the demo images. Nothing is faked here. The second
// cluster's engine runs in a network namespace of its own (testenv.IsolatedDaemon): the test
// process and the worker reach it only through its API socket, never a container address,
// as with an engine on another machine.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/probe"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/worker"
	"github.com/slipwayhq/slipway/workflows"
)

// A test binary started with these variables is a worker process (see TestMain): the
// SIGKILL test runs its worker that way, so the worker can die without the test.
const (
	envWorkerHostPort = "SLIPWAY_E2E_WORKER_HOSTPORT"
	envWorkerQueue    = "SLIPWAY_E2E_WORKER_QUEUE"
)

func TestMain(m *testing.M) {
	if hp := os.Getenv(envWorkerHostPort); hp != "" {
		os.Exit(workerProcess(hp, os.Getenv(envWorkerQueue)))
	}
	testenv.Main(m)
}

// workerProcess runs a Slipway worker until it is killed (or interrupted).
func workerProcess(hostPort, queue string) int {
	c, err := client.Dial(client.Options{HostPort: hostPort})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker process:", err)
		return 2
	}
	defer c.Close()
	d := dockerengine.NewDialer(dockerengine.Options{})
	defer func() { _ = d.Close() }() // on the way out: only idle Docker connections to drop
	w, err := worker.New(c, d, worker.Options{TaskQueue: queue, Identity: workerIdentity(os.Getpid()), Interceptors: workerInterceptors()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker process:", err)
		return 2
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	if err := w.Run(stopChan(stop)); err != nil {
		fmt.Fprintln(os.Stderr, "worker process:", err)
		return 1
	}
	return 0
}

func stopChan(sig <-chan os.Signal) <-chan any {
	out := make(chan any)
	go func() { <-sig; close(out) }()
	return out
}

var (
	srvOnce sync.Once
	srv     *devserver.Server
	srvErr  error
)

// server is the embedded Temporal server shared by the tests of this process (in memory;
// it goes with the process).
func server(t testing.TB) *devserver.Server {
	t.Helper()
	testenv.RequireTemporal(t)
	srvOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		srv, srvErr = devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: -1, SearchAttributes: workflows.SearchAttributeTypes})
	})
	if srvErr != nil {
		t.Fatalf("embedded Temporal server: %v", srvErr)
	}
	return srv
}

// fixture is one environment with clusters a (default engine, wave 1, canary) and, when
// two, b (an isolated engine the worker cannot route to, wave 2).
type fixture struct {
	t       testing.TB
	env     string
	queue   string
	dialer  *dockerengine.Dialer
	targets []workflows.Target
}

func newFixture(t testing.TB, clusters int) *fixture {
	t.Helper()
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	f := &fixture{t: t, env: env, queue: "e2e-" + env, dialer: dockerengine.NewDialer(dockerengine.Options{})}
	f.targets = append(f.targets, workflows.Target{Environment: env, Cluster: "a"})
	if clusters > 1 {
		f.targets = append(f.targets, workflows.Target{Environment: env, Cluster: "b", Endpoint: testenv.IsolatedDaemon(t)})
	}
	server(t)
	t.Cleanup(func() {
		for _, tg := range f.targets {
			f.cleanup(tg)
		}
		_ = f.dialer.Close()
	})
	return f
}

// startWorker runs an in-process worker on the fixture's task queue until the test ends.
func (f *fixture) startWorker() {
	f.t.Helper()
	f.startWorkerWith(worker.Options{})
}

// startWorkerWith starts the fixture's worker with opts (its task queue set here).
func (f *fixture) startWorkerWith(opts worker.Options) {
	f.t.Helper()
	opts.TaskQueue = f.queue
	w, err := worker.New(srv.Client(), f.dialer, opts)
	require.NoError(f.t, err)
	require.NoError(f.t, w.Start())
	f.t.Cleanup(w.Stop)
}

func (f *fixture) cleanup(tg workflows.Target) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := f.dialer.Dial(ctx, tg.EngineEndpoint())
	if err != nil {
		f.t.Errorf("cleanup %s: %v", tg.Cluster, err)
		return
	}
	cs, err := e.List(ctx, engine.Selector{Environment: f.env})
	if err != nil {
		f.t.Errorf("cleanup %s: %v", tg.Cluster, err)
	}
	for _, c := range cs {
		if err := e.Remove(ctx, c.Name); err != nil {
			f.t.Errorf("cleanup: %v", err)
		}
	}
	if de, ok := e.(*dockerengine.Engine); ok {
		if err := de.RemoveNetwork(ctx, tg.Network()); err != nil {
			f.t.Errorf("cleanup: %v", err)
		}
	}
}

// spec is the environment's deployment spec at version, parsed like a spec file (strict
// decoding, validation, defaults), with short timings.
func (f *fixture) spec(version string, mods ...func(*spec.Service)) spec.Environment {
	f.t.Helper()
	clusters := f.clustersYAML()
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
      interval: 250ms
      timeout: 1s
      retries: 3
      deadline: 15s
    canary:
      replicas: 1
      soak: 5s
    rollout:
      batch_size: 1
    verification:
      duration: 2s
      min_samples: 150
      max_error_rate: 0.05
      max_p95_latency: 200ms
      max_latency_ratio: 3
`, f.env, clusters, version)
	env, err := spec.Parse("e2e.yaml", []byte(y))
	require.NoError(f.t, err, y)
	for _, m := range mods {
		m(&env.Services[0])
	}
	return *env
}

// clustersYAML is the fixture's clusters as a spec's clusters: list (a in wave 1, the others
// in wave 2, with their endpoints).
func (f *fixture) clustersYAML() string {
	var b strings.Builder
	for _, tg := range f.targets {
		wave := 1
		if tg.Cluster != "a" {
			wave = 2
		}
		fmt.Fprintf(&b, "  - name: %s\n    wave: %d\n", tg.Cluster, wave)
		if tg.Endpoint != "" {
			fmt.Fprintf(&b, "    endpoint: %s\n", tg.Endpoint)
		}
	}
	return b.String()
}

// seed makes version serve on every cluster (2 replicas each, or as mods say) without a
// release, through the real activities.
func (f *fixture) seed(version string, mods ...func(*spec.Service)) {
	f.t.Helper()
	f.seedSpec(f.spec(version, mods...))
}

// seedSpec makes the spec's web service serve on every cluster without a release.
func (f *fixture) seedSpec(env spec.Environment) {
	f.t.Helper()
	s, _ := env.Service("web")
	var slots []int
	for i := 0; i < s.Replicas; i++ {
		slots = append(slots, i)
	}
	a := activities.New(f.dialer, activities.Options{})
	for _, tg := range f.targets {
		ctx := ctxT(f.t, time.Minute)
		require.NoError(f.t, a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tg}))
		_, err := a.StartReplicas(ctx, workflows.StartReplicasInput{Target: tg, Release: "seed", Role: engine.RoleStable,
			Service: s, Slots: slots, Attach: true, HealthDeadline: 20 * time.Second})
		require.NoError(f.t, err)
	}
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// release starts a release and returns its handle.
func (f *fixture) release(id string, in workflows.ReleaseInput) client.WorkflowRun {
	f.t.Helper()
	in.ID, in.TriggeredBy = id, "e2e"
	run, err := srv.Client().ExecuteWorkflow(ctxT(f.t, time.Minute), client.StartWorkflowOptions{
		ID: workflows.ReleaseWorkflowID(f.env, id), TaskQueue: f.queue, WorkflowExecutionTimeout: 10 * time.Minute,
		WorkflowTaskTimeout: workflows.WorkflowTaskTimeout,
	}, workflows.ReleaseWorkflowName, in)
	require.NoError(f.t, err)
	return run
}

func (f *fixture) wait(run client.WorkflowRun) workflows.ReleaseStatus {
	f.t.Helper()
	return f.waitFor(run, 3*time.Minute)
}

// waitFor is wait for a release that takes longer (the default windows on several clusters).
func (f *fixture) waitFor(run client.WorkflowRun, d time.Duration) workflows.ReleaseStatus {
	f.t.Helper()
	st, err := workflows.ReleaseResult(ctxT(f.t, d), run)
	if err != nil {
		f.dumpHistory(run)
		f.t.Fatalf("release %s: %v", run.GetID(), err)
	}
	for _, e := range st.Events {
		f.t.Logf("%3d %-17s %s/%s %s", e.Seq, e.Phase, e.Service, e.Cluster, e.Message)
	}
	return st
}

// live is what runs on one cluster, by version.
func (f *fixture) live(tg workflows.Target) map[string][]engine.Container {
	f.t.Helper()
	e, err := f.dialer.Dial(ctxT(f.t, time.Minute), tg.EngineEndpoint())
	require.NoError(f.t, err)
	cs, err := e.List(ctxT(f.t, time.Minute), engine.Selector{Environment: f.env, Cluster: tg.Cluster})
	require.NoError(f.t, err)
	out := map[string][]engine.Container{}
	for _, c := range cs {
		out[c.Version] = append(out[c.Version], c)
	}
	return out
}

// requireServes checks that on every cluster exactly `version` takes traffic with 2
// running replicas that answer with that version, and returns the other versions present.
func (f *fixture) requireServes(version string) map[string][]string {
	f.t.Helper()
	others := map[string][]string{}
	for _, tg := range f.targets {
		byV := f.live(tg)
		var serving []engine.Container
		for v, cs := range byV {
			for _, c := range cs {
				if c.Running() && c.InTraffic {
					require.Equal(f.t, version, v, "%s on %s takes traffic", c.Name, tg.Cluster)
					serving = append(serving, c)
				}
			}
			if v != version {
				others[tg.Cluster] = append(others[tg.Cluster], v)
			}
		}
		require.Len(f.t, serving, 2, "replicas serving on %s", tg.Cluster)
		for _, c := range serving {
			require.Equal(f.t, version, f.answer(tg, c.Address), "%s answers", c.Name)
		}
	}
	return others
}

// answer GETs / on a replica and returns the version it reports. The request goes from a
// probe container on the replica's own network, through the engine's API (the test process
// cannot reach an isolated engine's containers).
func (f *fixture) answer(tg workflows.Target, addr string) string {
	f.t.Helper()
	e, err := f.dialer.Dial(ctxT(f.t, time.Minute), tg.EngineEndpoint())
	require.NoError(f.t, err)
	var got []probe.Result
	err = e.Probe(ctxT(f.t, time.Minute), engine.ProbeAt{Network: tg.Network()}, probe.Job{
		Targets: []string{addr}, Requests: []probe.Request{{Path: "/", KeepBody: 1024}}, Streams: []probe.Stream{{}},
		Interval: 10 * time.Millisecond, Rounds: 1,
	}, func(r probe.Result) { got = append(got, r) })
	require.NoError(f.t, err)
	require.Len(f.t, got, 1)
	require.Equal(f.t, http.StatusOK, got[0].Status, "%+v", got[0])
	var r struct {
		Version string `json:"version"`
	}
	require.NoError(f.t, json.Unmarshal([]byte(got[0].Body), &r), got[0].Body)
	return r.Version
}

// requireIsolated asserts that the test process cannot reach the replicas of the clusters
// on an isolated engine: what the release does there, it does through the engine's API.
func (f *fixture) requireIsolated() {
	f.t.Helper()
	n := 0
	for _, tg := range f.targets {
		if tg.Endpoint == "" {
			continue // the default engine
		}
		for _, cs := range f.live(tg) {
			for _, c := range cs {
				if c.Address != "" {
					testenv.AssertUnreachable(f.t, c.Address)
					n++
				}
			}
		}
	}
	require.Positive(f.t, n, "no replica on an isolated engine to check")
}

func TestGoodReleaseOnTwoClusters(t *testing.T) {
	f := newFixture(t, 2)
	f.startWorker()
	f.seed("1.0.0")
	f.requireIsolated()
	st := f.wait(f.release("good", workflows.ReleaseInput{Spec: f.spec("1.1.0")}))

	require.Equal(t, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
	others := f.requireServes("1.1.0")
	for _, tg := range f.targets {
		// the previous revision is kept, stopped, for a fast manual rollback
		require.Equal(t, []string{"1.0.0"}, others[tg.Cluster])
		for _, c := range f.live(tg)["1.0.0"] {
			require.False(t, c.Running(), "%s is stopped", c.Name)
		}
		require.Len(t, f.live(tg)["1.1.0"], 2, "no duplicate on %s", tg.Cluster)
	}
	require.Len(t, st.Verdicts, 7) // canary; a: 2 batches + wave; b: 2 batches + wave
	for _, v := range st.Verdicts {
		require.Equal(t, workflows.VerdictPassed, v.Result, v.Reason)
		require.GreaterOrEqual(t, v.Evidence.Samples, 150)
		require.Contains(t, v.Evidence.ProbedFrom, "probe container", "probes ran next to the replicas")
	}

	// the lock is free again: the same service can be released at once
	st2 := f.wait(f.release("again", workflows.ReleaseInput{Spec: f.spec("1.1.0")}))
	require.Equal(t, workflows.OutcomeSucceeded, st2.Outcome)
	require.Contains(t, st2.Reason, "nothing to change")
}

// TestBadVersionsCaughtAtTheCanary runs on one cluster whose engine the worker cannot route
// to: health checks and verification run next to the replicas, or nothing could be judged.
func TestBadVersionsCaughtAtTheCanary(t *testing.T) {
	for _, tc := range []struct{ tag, reason, rule string }{
		{"bad-crash", "did not come up", ""},
		{"bad-health", "health check", ""},
		{"bad-errors", "failed verification", "error"},
		{"bad-latency", "failed verification", "slow"},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			t.Parallel()
			f := newRemoteFixture(t)
			f.startWorker()
			f.seed("1.0.0")
			f.requireIsolated()
			st := f.wait(f.release("bad", workflows.ReleaseInput{Spec: f.spec(tc.tag)}))

			require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
			require.Contains(t, st.Reason, tc.reason)
			require.Contains(t, st.Reason, "canary")
			// the old version serves, and nothing of the bad one is left, running or not
			require.Empty(t, f.requireServes("1.0.0"))
			last := lastVerdict(t, st)
			require.Equal(t, workflows.VerdictFailed, last.Result)
			require.Equal(t, "canary", last.Stage)
			require.Contains(t, last.Evidence.Rule, tc.rule)
		})
	}
}

// newRemoteFixture is an environment of one cluster, a, on an isolated engine.
func newRemoteFixture(t testing.TB) *fixture {
	t.Helper()
	f := newFixture(t, 1)
	f.targets[0].Endpoint = testenv.IsolatedDaemon(t)
	return f
}

func TestWorkerKilledMidRollout(t *testing.T) {
	f := newFixture(t, 2)
	f.seed("1.0.0")
	child := f.startWorkerProcess()
	run := f.release("killed", workflows.ReleaseInput{Spec: f.spec("1.1.0")})

	// wait until the rollout is under way on cluster a, then SIGKILL the worker
	require.Eventually(t, func() bool {
		st, err := f.status(run)
		if err != nil {
			return false
		}
		for _, s := range st.Services {
			for _, c := range s.Clusters {
				if c.Cluster == "a" && c.Phase == workflows.PhaseRollingOut {
					return true
				}
			}
		}
		return false
	}, 2*time.Minute, 100*time.Millisecond)
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	t.Log("worker killed")

	// a new worker finishes the same release
	f.startWorkerProcess()
	st := f.wait(run)
	require.Equal(t, workflows.OutcomeSucceeded, st.Outcome, st.Reason)
	f.requireServes("1.1.0")
	for _, tg := range f.targets {
		byV := f.live(tg)
		// no duplicate and no orphan: exactly the two new slots and the two old ones
		require.Len(t, byV, 2, "versions on %s: %v", tg.Cluster, byV)
		require.Len(t, byV["1.1.0"], 2)
		require.Len(t, byV["1.0.0"], 2)
		for _, c := range byV["1.1.0"] {
			require.Less(t, c.Slot, 2)
		}
	}
}

// startWorkerProcess runs a worker in a child process (this test binary, see TestMain) on
// the fixture's task queue; it is killed when the test ends.
func (f *fixture) startWorkerProcess() *exec.Cmd {
	f.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envWorkerHostPort+"="+srv.HostPort(), envWorkerQueue+"="+f.queue)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(f.t, cmd.Start())
	f.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// dumpHistory logs a release's history (what went wrong when it did not end).
func (f *fixture) dumpHistory(run client.WorkflowRun) {
	it := srv.Client().GetWorkflowHistory(ctxT(f.t, 30*time.Second), run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			f.t.Logf("history: %v", err)
			return
		}
		line := fmt.Sprintf("%d %s", e.GetEventId(), e.GetEventType())
		if a := e.GetWorkflowTaskFailedEventAttributes(); a != nil {
			line += " " + a.GetFailure().GetMessage()
		}
		if a := e.GetActivityTaskFailedEventAttributes(); a != nil {
			line += " " + a.GetFailure().GetMessage()
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			line += " " + a.GetActivityType().GetName()
		}
		f.t.Log(line)
	}
}

func (f *fixture) status(run client.WorkflowRun) (workflows.ReleaseStatus, error) {
	var st workflows.ReleaseStatus
	v, err := srv.Client().QueryWorkflow(ctxT(f.t, 10*time.Second), run.GetID(), run.GetRunID(), workflows.QueryStatus)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

func TestRollbackWithPreviousKeptStopped(t *testing.T) {
	f := newFixture(t, 2)
	f.startWorker()
	f.seed("1.0.0")
	// no canary, the whole cluster in one batch: the failure comes after the old replicas
	// were taken out and stopped, so the rollback must start them again
	stopped := func(s *spec.Service) {
		s.Canary.Skip = true
		s.Rollout.BatchSize = 2
		s.Rollback.KeepPrevious = spec.KeepStopped
	}
	st := f.wait(f.release("stopped", workflows.ReleaseInput{Spec: f.spec("bad-errors", stopped)}))
	require.Equal(t, workflows.OutcomeRolledBack, st.Outcome, st.Reason)
	require.Contains(t, st.Reason, "failed verification")
	require.Contains(t, lastVerdict(t, st).Evidence.Rule, "error")
	require.Empty(t, f.requireServes("1.0.0"), "nothing of bad-errors left")
}
