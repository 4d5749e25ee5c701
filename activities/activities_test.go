package activities_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is one unique environment on the real Docker engine, with the activities bound
// to a real dockerengine dialer, run through the SDK's activity test environment (real
// activity contexts: heartbeats, heartbeat details).
type fixture struct {
	t      *testing.T
	env    string
	dialer *dockerengine.Dialer
	acts   *activities.Activities
	target workflows.Target
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	d := dockerengine.NewDialer(dockerengine.Options{})
	f := &fixture{t: t, env: env, dialer: d, acts: activities.New(d, activities.Options{HeartbeatEvery: 200 * time.Millisecond}),
		target: workflows.Target{Environment: env, Cluster: "a"}}
	t.Cleanup(func() {
		f.cleanup(f.target)
		_ = d.Close()
	})
	require.NoError(t, f.acts.EnsureNetwork(ctxT(t), workflows.EnsureNetworkInput{Target: f.target}))
	return f
}

// cleanup removes every container of the environment on a target, then its network (the
// leftover check of testenv.UniqueEnv runs after this and fails the test on anything left).
func (f *fixture) cleanup(t workflows.Target) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := f.dialer.Dial(ctx, t.EngineEndpoint())
	if err != nil {
		f.t.Errorf("cleanup: %v", err)
		return
	}
	cs, err := e.List(ctx, engine.Selector{Environment: f.env})
	if err != nil {
		f.t.Errorf("cleanup: %v", err)
	}
	for _, c := range cs {
		if err := e.Remove(ctx, c.Name); err != nil {
			f.t.Errorf("cleanup: %v", err)
		}
	}
	if de, ok := e.(*dockerengine.Engine); ok {
		if err := de.RemoveNetwork(ctx, t.Network()); err != nil {
			f.t.Errorf("cleanup: %v", err)
		}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (f *fixture) activityEnv() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	ae := s.NewTestActivityEnvironment()
	activities.Register(ae, f.acts)
	return ae
}

func demo(version string, mods ...func(*spec.Service)) spec.Service {
	s := spec.Service{Name: "web", Image: testenv.DemoRepository, Version: version, Port: 8080,
		Health: &spec.Health{HTTPPath: "/healthz", Interval: spec.Duration(200 * time.Millisecond), Timeout: spec.Duration(time.Second), Retries: 3}}
	for _, m := range mods {
		m(&s)
	}
	return s
}

func (f *fixture) start(s spec.Service, role engine.Role, slots ...int) ([]engine.Container, error) {
	f.t.Helper()
	v, err := f.activityEnv().ExecuteActivity(workflows.ActivityStartReplicas, workflows.StartReplicasInput{
		Target: f.target, Release: "r1", Role: role, Service: s, Slots: slots, Attach: true, HealthDeadline: 20 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	var res workflows.StartReplicasResult
	require.NoError(f.t, v.Get(&res))
	return res.Containers, nil
}

func (f *fixture) inspect() workflows.InspectResult {
	f.t.Helper()
	res, err := f.acts.Inspect(ctxT(f.t), workflows.InspectInput{Environment: f.env, Targets: []workflows.Target{f.target}})
	require.NoError(f.t, err)
	return res
}

func names(cs []engine.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func appErr(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var ae *temporal.ApplicationError
	require.True(t, errors.As(err, &ae), "want an application error, got %v", err)
	return ae
}

func TestStartReplicasHealthyAndIdempotent(t *testing.T) {
	f := newFixture(t)
	cs, err := f.start(demo("1.0.0"), engine.RoleStable, 0, 1)
	require.NoError(t, err)
	require.Len(t, cs, 2)
	for _, c := range cs {
		require.True(t, c.Running(), c.Name)
		require.True(t, c.InTraffic, c.Name)
		require.NotEmpty(t, c.Address, c.Name)
		require.Equal(t, "r1", c.Release)
	}
	again, err := f.start(demo("1.0.0"), engine.RoleStable, 0, 1)
	require.NoError(t, err)
	require.Equal(t, []string{cs[0].ID, cs[1].ID}, []string{again[0].ID, again[1].ID}, "a second start changes nothing")

	live := f.inspect()
	require.Len(t, live.Clusters, 1)
	st := live.Clusters[0]
	require.Len(t, st.Services, 1)
	require.Equal(t, "web", st.Services[0].Service)
	require.Len(t, st.Services[0].Versions, 1)
	v := st.Services[0].Versions[0]
	require.Equal(t, "1.0.0", v.Version)
	require.Equal(t, 2, v.Running)
	require.Equal(t, 2, v.InTraffic)
}

func TestStartReplicasUnhealthy(t *testing.T) {
	f := newFixture(t)
	_, err := f.start(demo("bad-crash"), engine.RoleCanary, 0)
	require.Error(t, err)
	ae := appErr(t, err)
	require.Equal(t, workflows.ErrUnhealthy, ae.Type())
	require.True(t, ae.NonRetryable())
	require.Contains(t, ae.Error(), "did not come up")
	require.Contains(t, ae.Error(), "exited with code 1")
	require.NotContains(t, ae.Error(), "within", "a crash is not blamed on the health deadline")
	// it never took traffic
	for _, c := range f.inspect().Clusters[0].Services[0].Versions[0].Containers {
		require.False(t, c.InTraffic)
	}
}

// TestStartReplicasPreTrafficCheck: a healthy replica that fails every request is probed
// out of traffic before it takes any, and never takes traffic; a good one goes in.
func TestStartReplicasPreTrafficCheck(t *testing.T) {
	f := newFixture(t)
	verified := func(s *spec.Service) {
		s.Verification = &spec.Verification{Requests: []spec.Probe{{Path: "/", Method: "GET", Timeout: spec.Duration(time.Second)}}}
	}
	_, err := f.start(demo("bad-routes", verified), engine.RoleCanary, 0)
	require.Error(t, err)
	ae := appErr(t, err)
	require.Equal(t, workflows.ErrUnhealthy, ae.Type())
	require.True(t, ae.NonRetryable())
	require.Contains(t, ae.Error(), "pre-traffic check")
	require.Contains(t, ae.Error(), "GET /")
	require.Contains(t, ae.Error(), "500×")
	for _, c := range f.inspect().Clusters[0].Services[0].Versions[0].Containers {
		require.False(t, c.InTraffic, "%s took traffic", c.Name)
	}
	good, err := f.start(demo("1.1.0", func(s *spec.Service) { verified(s); s.Name = "ok" }), engine.RoleCanary, 0)
	require.NoError(t, err)
	require.True(t, good[0].InTraffic)
}

func TestStartReplicasRefusedByPolicy(t *testing.T) {
	f := newFixture(t)
	_, err := f.start(demo("1.0.0", func(s *spec.Service) { s.Privileged = true }), engine.RoleStable, 0)
	ae := appErr(t, err)
	require.Equal(t, workflows.ErrPolicyDenied, ae.Type())
	require.True(t, ae.NonRetryable())
}

func TestSetTrafficAndRemoveIdempotent(t *testing.T) {
	f := newFixture(t)
	old, err := f.start(demo("1.0.0"), engine.RoleStable, 0)
	require.NoError(t, err)
	nw, err := f.start(demo("1.1.0"), engine.RoleStable, 0)
	require.NoError(t, err)

	ae := f.activityEnv()
	_, err = ae.ExecuteActivity(workflows.ActivitySetTraffic, workflows.SetTrafficInput{Target: f.target, Service: "web", Detach: names(old)})
	require.NoError(t, err)
	serving := func() map[string]bool {
		out := map[string]bool{}
		for _, v := range f.inspect().Clusters[0].Services[0].Versions {
			for _, c := range v.Containers {
				out[c.Name] = c.InTraffic && c.Running()
			}
		}
		return out
	}
	require.Equal(t, map[string]bool{old[0].Name: false, nw[0].Name: true}, serving())

	// switch back in one call: attach old, detach new (detaching a missing container is fine)
	_, err = ae.ExecuteActivity(workflows.ActivitySetTraffic, workflows.SetTrafficInput{Target: f.target, Service: "web",
		Attach: names(old), Detach: append(names(nw), "slipway."+f.env+".a.web.9.9.9.0")})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{old[0].Name: true, nw[0].Name: false}, serving())

	// attaching a container that does not exist is permanent
	_, err = ae.ExecuteActivity(workflows.ActivitySetTraffic, workflows.SetTrafficInput{Target: f.target, Service: "web", Attach: []string{"slipway." + f.env + ".a.web.9.9.9.0"}})
	require.Equal(t, workflows.ErrNotFound, appErr(t, err).Type())

	// remove the new version by sweep, twice: the second is a no-op
	for i := 0; i < 2; i++ {
		_, err = ae.ExecuteActivity(workflows.ActivityRemoveReplicas, workflows.RemoveReplicasInput{Target: f.target, Service: "web", Version: "1.1.0"})
		require.NoError(t, err)
	}
	require.Equal(t, map[string]bool{old[0].Name: true}, serving())

	// keep_previous stopped: detach, stop; then start it again (it must come up healthy
	// before it takes traffic) and put it back
	_, err = ae.ExecuteActivity(workflows.ActivitySetTraffic, workflows.SetTrafficInput{Target: f.target, Service: "web", Detach: names(old)})
	require.NoError(t, err)
	_, err = ae.ExecuteActivity(workflows.ActivityStopReplicas, workflows.ContainersInput{Target: f.target, Names: names(old), StopTimeout: time.Second})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{old[0].Name: false}, serving())
	_, err = ae.ExecuteActivity(workflows.ActivityStartStopped, workflows.ContainersInput{Target: f.target, Names: names(old), HealthDeadline: 20 * time.Second})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{old[0].Name: false}, serving(), "started and healthy, not yet in traffic")
	_, err = ae.ExecuteActivity(workflows.ActivitySetTraffic, workflows.SetTrafficInput{Target: f.target, Service: "web", Attach: names(old)})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{old[0].Name: true}, serving())

	// remove by name, twice
	for i := 0; i < 2; i++ {
		_, err = ae.ExecuteActivity(workflows.ActivityRemoveReplicas, workflows.RemoveReplicasInput{Target: f.target, Names: names(old)})
		require.NoError(t, err)
	}
	require.Empty(t, f.inspect().Clusters[0].Services)
}

func TestCheckImages(t *testing.T) {
	f := newFixture(t)
	res, err := f.acts.CheckImages(ctxT(t), workflows.CheckImagesInput{Checks: []workflows.ImageCheck{
		{Target: f.target, Service: "web", Image: testenv.DemoImage("1.0.0")},
		{Target: f.target, Service: "api", Image: testenv.DemoImage("no-such-tag")},
	}})
	require.NoError(t, err)
	require.Equal(t, []workflows.MissingImage{{Cluster: "a", Service: "api", Image: testenv.DemoImage("no-such-tag")}}, res.Missing)
}

func TestInspectUnreachableEngine(t *testing.T) {
	f := newFixture(t)
	dead := workflows.Target{Environment: f.env, Cluster: "dead", Endpoint: "unix:///tmp/slipway-no-such-docker.sock"}
	res, err := f.acts.Inspect(ctxT(t), workflows.InspectInput{Environment: f.env, Targets: []workflows.Target{f.target, dead}, AllowUnreachable: true})
	require.NoError(t, err)
	require.Empty(t, res.Clusters[0].Error)
	require.NotEmpty(t, res.Clusters[1].Error)

	_, err = f.acts.Inspect(ctxT(t), workflows.InspectInput{Environment: f.env, Targets: []workflows.Target{dead}})
	ae := appErr(t, err)
	require.False(t, ae.NonRetryable(), "an engine that does not answer is worth a retry")
}

func TestInspectTwoEngines(t *testing.T) {
	f := newFixture(t)
	second := workflows.Target{Environment: f.env, Cluster: "b", Endpoint: testenv.SecondDaemon(t)}
	t.Cleanup(func() { f.cleanup(second) })
	require.NoError(t, f.acts.EnsureNetwork(ctxT(t), workflows.EnsureNetworkInput{Target: second}))
	_, err := f.start(demo("1.0.0"), engine.RoleStable, 0)
	require.NoError(t, err)
	f2 := *f
	f2.target = second
	_, err = f2.start(demo("1.1.0"), engine.RoleStable, 0, 1)
	require.NoError(t, err)

	res, err := f.acts.Inspect(ctxT(t), workflows.InspectInput{Environment: f.env, Targets: []workflows.Target{f.target, second}})
	require.NoError(t, err)
	require.Equal(t, "1.0.0", res.Clusters[0].Services[0].Versions[0].Version)
	require.Equal(t, 1, res.Clusters[0].Services[0].Versions[0].InTraffic)
	require.Equal(t, "1.1.0", res.Clusters[1].Services[0].Versions[0].Version)
	require.Equal(t, 2, res.Clusters[1].Services[0].Versions[0].InTraffic)
}

// verify runs a short verification of new against baseline.
func (f *fixture) verify(newNames, baseline []string, v spec.Verification, healthPath string) workflows.Verdict {
	f.t.Helper()
	val, err := f.activityEnv().ExecuteActivity(workflows.ActivityVerify, workflows.VerifyInput{
		Target: f.target, Service: "web", Stage: "canary", New: newNames, Baseline: baseline, Verification: v, HealthPath: healthPath, HealthRetries: 3,
	})
	require.NoError(f.t, err)
	var verdict workflows.Verdict
	require.NoError(f.t, val.Get(&verdict))
	f.t.Logf("%s: %s %+v", verdict.Result, verdict.Reason, verdict.Evidence)
	return verdict
}

func shortVerification() spec.Verification {
	return spec.Verification{
		Requests:   []spec.Probe{{Path: "/", Method: "GET", ExpectStatus: 200, Timeout: spec.Duration(2 * time.Second)}},
		Interval:   spec.Duration(10 * time.Millisecond),
		Duration:   spec.Duration(3 * time.Second),
		MinSamples: 200, MaxErrorRate: 0.05, MaxP95Latency: spec.Duration(250 * time.Millisecond), MaxLatencyRatio: 2, Confidence: 0.999,
	}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	stable, err := f.start(demo("1.0.0"), engine.RoleStable, 0, 1)
	require.NoError(t, err)

	t.Run("passes a good version", func(t *testing.T) {
		good, err := f.start(demo("1.1.0"), engine.RoleCanary, 0)
		require.NoError(t, err)
		v := f.verify(names(good), names(stable), shortVerification(), "/healthz")
		require.Equal(t, workflows.VerdictPassed, v.Result, v.Reason)
		require.GreaterOrEqual(t, v.Evidence.Samples, 200)
		require.Zero(t, v.Evidence.Errors)
		require.Equal(t, v.Evidence.Samples, v.Evidence.BaselineSamples, "every canary answer paired with a stable one")
		require.Equal(t, 2, v.Evidence.BaselineTargets)
		require.True(t, v.Evidence.Baseline)
		require.Contains(t, v.Evidence.ProbedFrom, "probe container")
		require.Equal(t, 200, firstKey(v.Evidence.StatusCodes))
	})
	t.Run("fails on errors", func(t *testing.T) {
		bad, err := f.start(demo("bad-errors"), engine.RoleCanary, 0)
		require.NoError(t, err)
		v := f.verify(names(bad), names(stable), shortVerification(), "/healthz")
		require.Equal(t, workflows.VerdictFailed, v.Result, v.Reason)
		require.Contains(t, v.Evidence.Rule, "error", "decided by the error comparison with stable")
		require.True(t, v.Evidence.Baseline)
		require.Greater(t, v.Evidence.ErrorRate, 0.2)
		require.Greater(t, v.Evidence.StatusCodes[500], 0)
	})
	t.Run("fails on latency", func(t *testing.T) {
		slow, err := f.start(demo("bad-latency"), engine.RoleCanary, 0)
		require.NoError(t, err)
		v := f.verify(names(slow), names(stable), shortVerification(), "/healthz")
		require.Equal(t, workflows.VerdictFailed, v.Result, v.Reason)
		require.Contains(t, v.Evidence.Rule, "slow", "decided by the slow answers against stable")
		require.GreaterOrEqual(t, v.Evidence.P95, 300*time.Millisecond)
	})
	t.Run("fails on latency against stable alone", func(t *testing.T) {
		slow, err := f.start(demo("bad-latency"), engine.RoleCanary, 0)
		require.NoError(t, err)
		vv := shortVerification()
		vv.MaxP95Latency = 0 // only the comparison with stable can catch it
		v := f.verify(names(slow), names(stable), vv, "")
		require.Equal(t, workflows.VerdictFailed, v.Result, v.Reason)
		require.Contains(t, v.Evidence.Rule, "slow")
		require.Less(t, v.Evidence.BaselineP95, 100*time.Millisecond, "stable is fast on the same requests")
	})
	t.Run("fails when health turns bad during the soak", func(t *testing.T) {
		sick, err := f.start(demo("bad-health"), engine.RoleCanary, 0)
		require.NoError(t, err)
		vv := shortVerification()
		vv.Duration = spec.Duration(8 * time.Second)
		vv.Interval = spec.Duration(250 * time.Millisecond)
		v := f.verify(names(sick), names(stable), vv, "/healthz")
		require.Equal(t, workflows.VerdictFailed, v.Result, v.Reason)
		require.Contains(t, v.Reason, "health check")
	})
	t.Run("failed when nothing listens where the spec says", func(t *testing.T) {
		// a replica whose port has nothing listening: it runs, but every probe is refused
		// (a version listening on another port): a failure, not "could not measure"
		deaf, err := f.start(demo("1.1.0", func(s *spec.Service) {
			s.Name, s.Port, s.Health = "deaf", 9999, nil
		}), engine.RoleCanary, 0)
		require.NoError(t, err)
		val, err := f.activityEnv().ExecuteActivity(workflows.ActivityVerify, workflows.VerifyInput{
			Target: f.target, Service: "deaf", Stage: "canary", New: names(deaf), Verification: shortVerification(),
		})
		require.NoError(t, err)
		var v workflows.Verdict
		require.NoError(t, val.Get(&v))
		require.Equal(t, workflows.VerdictFailed, v.Result, v.Reason)
		require.Zero(t, v.Evidence.Unreachable)
		require.Equal(t, v.Evidence.Samples, v.Evidence.Errors, "every probe refused")
	})
	t.Run("inconclusive when a replica cannot be reached", func(t *testing.T) {
		// a replica on no network has no address: nothing can be measured
		off, err := f.start(demo("1.1.0", func(s *spec.Service) { s.Name = "off" }), engine.RoleCanary, 0)
		require.NoError(t, err)
		out, err := exec.Command("docker", "network", "disconnect", f.target.Network(), names(off)[0]).CombinedOutput()
		require.NoError(t, err, string(out))
		val, err := f.activityEnv().ExecuteActivity(workflows.ActivityVerify, workflows.VerifyInput{
			Target: f.target, Service: "off", Stage: "canary", New: names(off), Verification: shortVerification(),
		})
		require.NoError(t, err)
		var v workflows.Verdict
		require.NoError(t, val.Get(&v))
		require.Equal(t, workflows.VerdictInconclusive, v.Result, v.Reason)
		require.Greater(t, v.Evidence.Unreachable, 0)
		require.Zero(t, v.Evidence.Samples)
	})
	t.Run("the baseline is the old replicas that run", func(t *testing.T) {
		// an old replica an earlier batch stopped (or, on a swarm, scaled away) is still
		// named by the workflow: it is left out, not counted as lost pairs
		gone, err := f.start(demo("1.0.0"), engine.RoleStable, 2)
		require.NoError(t, err)
		out, err := exec.Command("docker", "stop", "-t", "1", names(gone)[0]).CombinedOutput()
		require.NoError(t, err, string(out))
		good, err := f.start(demo("1.1.0"), engine.RoleCanary, 1)
		require.NoError(t, err)
		v := f.verify(names(good), append(names(stable), names(gone)...), shortVerification(), "/healthz")
		require.Equal(t, workflows.VerdictPassed, v.Result, v.Reason)
		require.Equal(t, 2, v.Evidence.BaselineTargets, "the stopped replica is not a baseline target")
		require.Zero(t, v.Evidence.Unreachable)
		require.Zero(t, v.Evidence.BaselineUnreachable)
		require.True(t, v.Evidence.Baseline)
	})
	t.Run("inconclusive with too few samples", func(t *testing.T) {
		good, err := f.start(demo("1.1.0"), engine.RoleCanary, 0)
		require.NoError(t, err)
		vv := shortVerification()
		vv.MinSamples = 1000
		v := f.verify(names(good), names(stable), vv, "")
		require.Equal(t, workflows.VerdictInconclusive, v.Result, v.Reason)
		require.Contains(t, v.Reason, "pairs")
	})
	t.Run("a retry reports what the previous attempt found fatal", func(t *testing.T) {
		good, err := f.start(demo("1.1.0"), engine.RoleCanary, 0)
		require.NoError(t, err)
		ae := f.activityEnv()
		// a previous attempt saw a new replica die, then the worker was lost
		ae.SetHeartbeatDetails(map[string]any{"rounds": 40, "fatal": "new replica x is exited"})
		val, err := ae.ExecuteActivity(workflows.ActivityVerify, workflows.VerifyInput{
			Target: f.target, Service: "web", Stage: "canary", New: names(good), Verification: shortVerification(),
		})
		require.NoError(t, err)
		var v workflows.Verdict
		require.NoError(t, val.Get(&v))
		require.Equal(t, workflows.VerdictFailed, v.Result, v.Reason)
		require.Contains(t, v.Reason, "exited")
	})
}

func firstKey(m map[int]int) int {
	for k := range m {
		return k
	}
	return 0
}

func TestVerifyBadInput(t *testing.T) {
	a := activities.New(dockerengine.NewDialer(dockerengine.Options{}), activities.Options{})
	_, err := a.Verify(context.Background(), workflows.VerifyInput{Target: workflows.Target{Environment: "e", Cluster: "a"}})
	ae := appErr(t, err)
	require.Equal(t, workflows.ErrBadInput, ae.Type())
	require.True(t, strings.Contains(ae.Error(), "interval"))
}

// socketProxy forwards a unix socket to the default engine's, until cut: then the engine
// behind it stops answering, as an engine on a machine that went away.
type socketProxy struct {
	path string
	l    net.Listener
	mu   sync.Mutex
	cut  bool
	open []net.Conn
}

func newSocketProxy(t *testing.T) *socketProxy {
	t.Helper()
	p := &socketProxy{path: filepath.Join(t.TempDir(), "engine.sock")}
	l, err := net.Listen("unix", p.path)
	require.NoError(t, err)
	p.l = l
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", "/var/run/docker.sock")
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			if p.cut {
				p.mu.Unlock()
				_ = c.Close()
				_ = up.Close()
				continue
			}
			p.open = append(p.open, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	t.Cleanup(p.stop)
	return p
}

func (p *socketProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	_ = p.l.Close()
	for _, c := range p.open {
		_ = c.Close()
	}
}

// TestVerifyEngineStopsAnswering: an engine that stops answering in the middle of a
// verification is a retryable error that names the cluster and the endpoint — never a
// verdict, let alone a pass.
func TestVerifyEngineStopsAnswering(t *testing.T) {
	f := newFixture(t)
	stable, err := f.start(demo("1.0.0"), engine.RoleStable, 0)
	require.NoError(t, err)
	good, err := f.start(demo("1.1.0"), engine.RoleCanary, 0)
	require.NoError(t, err)
	proxy := newSocketProxy(t)
	remote := f.target
	remote.Endpoint = "unix://" + proxy.path
	vv := shortVerification()
	vv.Duration = spec.Duration(4 * time.Second)
	time.AfterFunc(1500*time.Millisecond, proxy.stop)
	_, err = f.activityEnv().ExecuteActivity(workflows.ActivityVerify, workflows.VerifyInput{
		Target: remote, Service: "web", Stage: "canary", New: names(good), Baseline: names(stable), Verification: vv,
	})
	require.Error(t, err, "no verdict when the engine went away")
	ae := appErr(t, err)
	require.False(t, ae.NonRetryable(), "retryable: the engine may come back (%v)", err)
	require.Contains(t, err.Error(), "cluster a")
	require.Contains(t, err.Error(), proxy.path, "the error names the endpoint")
	// The probe container, cut off from its worker, ends with its job and removes itself.
	require.Eventually(t, func() bool {
		out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=io.slipway.role=probe", "--filter", "label=io.slipway.environment="+f.env).Output()
		return err == nil && strings.TrimSpace(string(out)) == ""
	}, time.Minute, 500*time.Millisecond)
}
