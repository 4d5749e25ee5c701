package dockerengine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
)

func TestEnsureIsIdempotent(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	s.Env = map[string]string{"GREETING": "hi"}
	s.MemoryBytes = 64 << 20
	s.NanoCPUs = 500_000_000

	first := mustEnsure(t, f.e, s)
	second := mustEnsure(t, f.e, s)
	if first.ID == "" || first.ID != second.ID {
		t.Fatalf("ensure twice: IDs %q and %q", first.ID, second.ID)
	}
	if first.Name != s.ContainerName() || !second.Running() {
		t.Fatalf("name %q state %q", first.Name, second.State)
	}
	if second.Key != s.Key || second.Release != "r1" || second.Role != engine.RoleStable || second.Image != s.Image {
		t.Fatalf("container %+v does not reflect spec %+v", second, s)
	}
	if list := mustList(t, f.e, engine.Selector{Environment: f.env}); len(list) != 1 || list[0].ID != first.ID {
		t.Fatalf("want one container, got %v", names(list))
	}

	// The create request carried every label, limit and variable.
	raw, err := f.e.cli.ContainerInspect(ctxT(t, time.Minute), first.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{engine.LabelManaged, engine.LabelEnvironment, engine.LabelCluster, engine.LabelService,
		engine.LabelVersion, engine.LabelRelease, engine.LabelRole, engine.LabelSlot, engine.LabelPort} {
		if raw.Config.Labels[k] == "" {
			t.Errorf("label %s missing: %v", k, raw.Config.Labels)
		}
	}
	if raw.HostConfig.Memory != 64<<20 || raw.HostConfig.NanoCPUs != 500_000_000 {
		t.Errorf("limits: memory %d nano CPUs %d", raw.HostConfig.Memory, raw.HostConfig.NanoCPUs)
	}
	if raw.HostConfig.RestartPolicy.Name != "no" || raw.HostConfig.Privileged {
		t.Errorf("restart policy %q privileged %t", raw.HostConfig.RestartPolicy.Name, raw.HostConfig.Privileged)
	}
	if !contains(raw.Config.Env, "GREETING=hi") {
		t.Errorf("env %v", raw.Config.Env)
	}

	// A stopped replica is started again by Ensure, keeping its ID.
	if err := f.e.Stop(ctxT(t, time.Minute), first.Name, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if again := mustEnsure(t, f.e, s); again.ID != first.ID || !again.Running() {
		t.Fatalf("ensure after stop: %+v", again)
	}

	// Remove twice, Stop of a missing container: success.
	for range 2 {
		if err := f.e.Remove(ctxT(t, time.Minute), first.Name); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.e.Stop(ctxT(t, time.Minute), first.Name, time.Second); err != nil {
		t.Fatalf("stop of a missing container: %v", err)
	}
	if list := mustList(t, f.e, engine.Selector{Environment: f.env}); len(list) != 0 {
		t.Fatalf("after remove: %v", names(list))
	}
	// Start of a missing one is NotFound.
	wantKind(t, f.e.Start(ctxT(t, time.Minute), first.Name), engine.KindNotFound)

	// EnsureNetwork twice is one network; RemoveNetwork twice is success.
	for range 2 {
		if err := f.e.EnsureNetwork(ctxT(t, time.Minute), s.Network, nil); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := f.e.RemoveNetwork(ctxT(t, time.Minute), s.Network); err != nil {
			t.Fatal(err)
		}
	}
	testenv.AssertNoContainers(t, f.env)
}

// TestEnsureRestoresADetachedStoppedReplica: a replica taken out of traffic (Detach) and
// stopped, as a release keeps the previous revision, comes back on its network when Ensure
// starts it again, so its health can be probed and it can be attached.
func TestEnsureRestoresADetachedStoppedReplica(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	c := mustEnsure(t, f.e, s)
	if err := f.e.Detach(ctxT(t, time.Minute), c.Name, s.Network); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Stop(ctxT(t, time.Minute), c.Name, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	again := mustEnsure(t, f.e, s)
	if again.ID != c.ID || !again.Running() {
		t.Fatalf("ensure after detach+stop: %+v", again)
	}
	healthy, err := f.e.WaitHealthy(ctxT(t, time.Minute), c.Name)
	if err != nil {
		t.Fatalf("a restored replica must become healthy: %v", err)
	}
	if healthy.Address == "" {
		t.Fatalf("a restored replica has no address on %s: %+v", s.Network, healthy)
	}
	if err := f.e.Remove(ctxT(t, time.Minute), c.Name); err != nil {
		t.Fatal(err)
	}
}

// TestEnsureConcurrently: workers racing to ensure the same replica (and its new network)
// end with one container and one network, and no error. Half of them use engines of their
// own, as other worker processes would (no shared in-process lock).
func TestEnsureConcurrently(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	const n = 6
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		e := f.e
		if i%2 == 1 {
			own, err := New(engine.Endpoint{}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = own.Close() })
			e = own
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := e.Ensure(ctxT(t, time.Minute), s)
			ids[i], errs[i] = c.ID, err
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatalf("two containers: %s and %s", ids[0], ids[i])
		}
	}
	if list := mustList(t, f.e, engine.Selector{Environment: f.env}); len(list) != 1 {
		t.Fatalf("want one container, got %v", names(list))
	}
	nets, err := f.e.cli.NetworkList(ctxT(t, time.Minute), network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", s.Network))})
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 {
		t.Fatalf("want one network %s, got %d", s.Network, len(nets))
	}
}

func TestEnsureConflicts(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	mustEnsure(t, f.e, s)

	// Same name (same key), another image.
	other := s
	other.Image = testenv.DemoImage("1.1.0")
	_, err := f.e.Ensure(ctxT(t, time.Minute), other)
	wantKind(t, err, engine.KindConflict)
	if !strings.Contains(err.Error(), "slipway/demo:1.0.0") {
		t.Fatalf("conflict does not name the running image: %v", err)
	}

	// A spec without a key is refused before the engine sees it.
	bad := s
	bad.Service = ""
	_, err = f.e.Ensure(ctxT(t, time.Minute), bad)
	wantKind(t, err, engine.KindInvalid)

	// The engine refusing a spec is KindInvalid too: a bind mount of a relative path.
	refused := f.spec("a", "web", "1.1.0", 0)
	refused.Mounts = []engine.Mount{{Source: "relative/path", Target: "/data"}}
	_, err = f.e.Ensure(ctxT(t, time.Minute), refused)
	wantKind(t, err, engine.KindInvalid)

	_, err = f.e.List(ctxT(t, time.Minute), engine.Selector{})
	wantKind(t, err, engine.KindInvalid)
}

// TestMountsArePassedThrough: policy is checked upstream; the adapter passes a bind mount
// the spec asks for, read-only when asked.
func TestMountsArePassedThrough(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	dir := t.TempDir()
	s := f.spec("a", "web", "1.0.0", 0)
	s.Mounts = []engine.Mount{{Source: dir, Target: "/data", ReadOnly: true}}
	c := mustEnsure(t, f.e, s)
	raw, err := f.e.cli.ContainerInspect(ctxT(t, time.Minute), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw.Mounts) != 1 || raw.Mounts[0].Source != dir || raw.Mounts[0].Destination != "/data" || raw.Mounts[0].RW {
		t.Fatalf("mounts %+v", raw.Mounts)
	}
}

func TestImageMissing(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	missing := testenv.DemoRepository + ":does-not-exist"
	err := f.e.ImagePresent(ctxT(t, time.Minute), missing)
	wantKind(t, err, engine.KindImageMissing)
	if !strings.Contains(err.Error(), missing) {
		t.Fatalf("error does not name the image: %v", err)
	}
	if err := f.e.ImagePresent(ctxT(t, time.Minute), testenv.DemoImage("1.0.0")); err != nil {
		t.Fatalf("present image: %v", err)
	}

	s := f.spec("a", "web", "9.9.9", 0)
	s.Image = missing
	_, err = f.e.Ensure(ctxT(t, time.Minute), s)
	wantKind(t, err, engine.KindImageMissing)
	if list := mustList(t, f.e, engine.Selector{Environment: f.env}); len(list) != 0 {
		t.Fatalf("a container was created for a missing image: %v", names(list))
	}
}

func TestWaitHealthy(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")

	t.Run("http probe", func(t *testing.T) {
		t.Parallel()
		s := f.spec("a", "web", "1.0.0", 0)
		mustEnsure(t, f.e, s)
		c := mustHealthy(t, f.e, s.ContainerName())
		if c.Address == "" || !c.InTraffic {
			t.Fatalf("healthy replica without address or out of traffic: %+v", c)
		}
		if v := getVersion(t, c.Address); v != "1.0.0" {
			t.Fatalf("replica reports version %q", v)
		}
		// A listing runs no probe: HTTP health is judged by WaitHealthy and verification.
		list := mustList(t, f.e, engine.Selector{Environment: f.env, Service: "web"})
		if len(list) != 1 || list[0].Health != engine.HealthUnknown || !list[0].Running() {
			t.Fatalf("list: %+v", list)
		}
	})

	t.Run("slower than one probe job", func(t *testing.T) {
		t.Parallel()
		// Healthy only after the first probe job (healthProbeSpan) ended: the wait starts
		// another and sees the replica come up.
		s := f.spec("a", "late", "slow-start", 0)
		s.Env = map[string]string{"DEMO_START_DELAY": (healthProbeSpan + 5*time.Second).String()}
		mustEnsure(t, f.e, s)
		began := time.Now()
		c, err := f.e.WaitHealthy(ctxT(t, 2*time.Minute), s.ContainerName())
		if err != nil {
			t.Fatalf("wait healthy: %v", err)
		}
		if c.Health != engine.HealthHealthy || time.Since(began) < healthProbeSpan {
			t.Fatalf("health %q after %s, want healthy after more than %s", c.Health, time.Since(began), healthProbeSpan)
		}
	})

	t.Run("image healthcheck", func(t *testing.T) {
		t.Parallel()
		s := f.spec("a", "img", "1.1.0", 0)
		s.Health = engine.HealthCheck{UseImage: true}
		mustEnsure(t, f.e, s)
		mustHealthy(t, f.e, s.ContainerName())
	})

	t.Run("no health check", func(t *testing.T) {
		t.Parallel()
		s := f.spec("a", "plain", "2.0.0", 0)
		s.Health = engine.HealthCheck{}
		mustEnsure(t, f.e, s)
		mustHealthy(t, f.e, s.ContainerName())
	})

	t.Run("crash at start", func(t *testing.T) {
		t.Parallel()
		for _, h := range []engine.HealthCheck{
			{HTTPPath: "/healthz", Interval: 200 * time.Millisecond},
			{UseImage: true},
			{},
		} {
			s := f.spec("a", "crash", "bad-crash", 0)
			s.Health = h
			mustEnsure(t, f.e, s)
			_, err := f.e.WaitHealthy(ctxT(t, 30*time.Second), s.ContainerName())
			wantKind(t, err, engine.KindUnhealthy)
			t.Logf("health %+v: %v", h, err)
			if !strings.Contains(err.Error(), "exited with code 1") || !strings.Contains(err.Error(), "DEMO_CRASH_AT_START") {
				t.Fatalf("health %+v: error lacks the exit code or the logs: %v", h, err)
			}
			if err := f.e.Remove(ctxT(t, time.Minute), s.ContainerName()); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("health fails after 3s", func(t *testing.T) {
		t.Parallel()
		for _, h := range []engine.HealthCheck{
			{HTTPPath: "/healthz", Interval: 200 * time.Millisecond, Retries: 2},
			{UseImage: true},
		} {
			s := f.spec("a", "sick", "bad-health", 0)
			s.Health = h
			mustEnsure(t, f.e, s)
			// Healthy at first...
			mustHealthy(t, f.e, s.ContainerName())
			var err error
			if h.UseImage {
				// ...unhealthy once the knob's 3 s have passed: Docker's check says so.
				_, err = waitUnhealthy(t, f.e, s.ContainerName())
			} else {
				// ...and once sick, an HTTP-checked replica no longer becomes healthy: the
				// wait ends at its deadline, naming the last answer.
				time.Sleep(3500 * time.Millisecond)
				_, err = f.e.WaitHealthy(ctxT(t, 2*time.Second), s.ContainerName())
			}
			wantKind(t, err, engine.KindUnhealthy)
			if !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "health check failed") {
				t.Fatalf("health %+v: %v", h, err)
			}
			want := engine.HealthUnhealthy
			if !h.UseImage {
				want = engine.HealthUnknown
			}
			list := mustList(t, f.e, engine.Selector{Environment: f.env, Service: "sick"})
			if len(list) != 1 || list[0].Health != want {
				t.Fatalf("health %+v: list says %+v", h, list)
			}
			if err := f.e.Remove(ctxT(t, time.Minute), s.ContainerName()); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("slow starter is not failed before its deadline", func(t *testing.T) {
		t.Parallel()
		// /healthz answers 404 until... never: but failures before the first success
		// must not count, however many retries the check allows.
		s := f.spec("a", "slowstart", "1.0.0", 0)
		s.Health = engine.HealthCheck{HTTPPath: "/not-yet", Interval: 100 * time.Millisecond, Retries: 1}
		mustEnsure(t, f.e, s)
		start := time.Now()
		_, err := f.e.WaitHealthy(ctxT(t, 3*time.Second), s.ContainerName())
		wantKind(t, err, engine.KindUnhealthy)
		if waited := time.Since(start); waited < 2500*time.Millisecond || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("failed after %s with %v; want the 3 s deadline, not the retries", waited, err)
		}
	})

	t.Run("deadline", func(t *testing.T) {
		t.Parallel()
		s := f.spec("a", "slow", "1.0.0", 0)
		s.Health = engine.HealthCheck{HTTPPath: "/not-there", Interval: 200 * time.Millisecond, StartPeriod: time.Hour}
		mustEnsure(t, f.e, s)
		_, err := f.e.WaitHealthy(ctxT(t, 2*time.Second), s.ContainerName())
		wantKind(t, err, engine.KindUnhealthy)
		t.Log(err)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "listening on :8080") {
			t.Fatalf("want the deadline, the last probe and the logs: %v", err)
		}
	})

	t.Run("missing container", func(t *testing.T) {
		t.Parallel()
		_, err := f.e.WaitHealthy(ctxT(t, 10*time.Second), "slipway."+f.env+".a.nothing.1.0")
		wantKind(t, err, engine.KindNotFound)
	})
}

// waitUnhealthy calls WaitHealthy until it fails (the container may still pass a probe or
// two after its health turned), for at most 30 s.
func waitUnhealthy(t *testing.T, e engine.Engine, name string) (engine.Container, error) {
	t.Helper()
	ctx := ctxT(t, 30*time.Second)
	for {
		c, err := e.WaitHealthy(ctx, name)
		if err != nil {
			return c, err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s stayed healthy", name)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func TestStopGracefulThenKilled(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	good := f.spec("a", "good", "1.0.0", 0)
	stubborn := f.spec("a", "stubborn", "1.0.0", 0)
	stubborn.Env = map[string]string{"DEMO_IGNORE_SIGTERM": "1"}
	for _, s := range []engine.ContainerSpec{good, stubborn} {
		mustEnsure(t, f.e, s)
		mustHealthy(t, f.e, s.ContainerName())
		if err := f.e.Stop(ctxT(t, time.Minute), s.ContainerName(), time.Second); err != nil {
			t.Fatal(err)
		}
		if err := f.e.Stop(ctxT(t, time.Minute), s.ContainerName(), time.Second); err != nil {
			t.Fatalf("second stop: %v", err)
		}
	}
	exit := func(name string) int {
		raw, err := f.e.cli.ContainerInspect(ctxT(t, time.Minute), name)
		if err != nil {
			t.Fatal(err)
		}
		if raw.State.Running {
			t.Fatalf("%s still running", name)
		}
		return raw.State.ExitCode
	}
	if code := exit(good.ContainerName()); code != 0 {
		t.Errorf("graceful stop: exit code %d", code)
	}
	if code := exit(stubborn.ContainerName()); code != 137 {
		t.Errorf("SIGTERM ignored: want killed (137), exit code %d", code)
	}
	// Start brings it back.
	if err := f.e.Start(ctxT(t, time.Minute), good.ContainerName()); err != nil {
		t.Fatal(err)
	}
	mustHealthy(t, f.e, good.ContainerName())
}

func TestAttachDetach(t *testing.T) {
	t.Parallel()
	f := setup(t, "a")
	var specs []engine.ContainerSpec
	for slot := range 2 {
		s := f.spec("a", "web", "1.0.0", slot)
		mustEnsure(t, f.e, s)
		mustHealthy(t, f.e, s.ContainerName())
		specs = append(specs, s)
	}
	net := specs[0].Network
	inTraffic := func() map[int]bool {
		m := map[int]bool{}
		for _, c := range mustList(t, f.e, engine.Selector{Environment: f.env, Service: "web"}) {
			m[c.Slot] = c.InTraffic
		}
		return m
	}
	if got := inTraffic(); !got[0] || !got[1] {
		t.Fatalf("created replicas take traffic: %v", got)
	}
	// Docker's DNS answers the service name with every replica in traffic (asked from
	// inside replica 0, on the environment network).
	list := mustList(t, f.e, engine.Selector{Environment: f.env, Service: "web"})
	ip0, ip1 := hostOf(t, list[0].Address), hostOf(t, list[1].Address)
	if got := lookup(t, list[0].Address, "web"); !sameSet(got, ip0, ip1) {
		t.Fatalf("web resolves to %v, want %s and %s", got, ip0, ip1)
	}

	name := specs[1].ContainerName()
	for range 2 { // the second call is a no-op
		if err := f.e.Detach(ctxT(t, time.Minute), name, net); err != nil {
			t.Fatal(err)
		}
	}
	if got := inTraffic(); !got[0] || got[1] {
		t.Fatalf("after detach of slot 1: %v", got)
	}
	// Still running, out of traffic, still on the environment network with an address
	// (so it can be probed as a baseline), and out of the service name's DNS answer.
	if list := mustList(t, f.e, engine.Selector{Environment: f.env, Service: "web"}); !list[1].Running() || list[1].Address == "" || list[0].Address == "" {
		t.Fatalf("after detach: %+v", list)
	}
	if got := lookup(t, list[0].Address, "web"); !sameSet(got, ip0) {
		t.Fatalf("after detach web resolves to %v, want only %s", got, ip0)
	}
	for range 2 {
		if err := f.e.Attach(ctxT(t, time.Minute), name, net, "web"); err != nil {
			t.Fatal(err)
		}
	}
	got := inTraffic()
	if !got[0] || !got[1] {
		t.Fatalf("after attach: %v", got)
	}
	// Reachable again on its address, healthy, and in the DNS answer.
	back := mustHealthy(t, f.e, name)
	if got := lookup(t, list[0].Address, "web"); !sameSet(got, ip0, hostOf(t, back.Address)) {
		t.Fatalf("after attach web resolves to %v", got)
	}

	// On the network under another alias only: Attach adds the service alias.
	if err := f.e.Detach(ctxT(t, time.Minute), name, net); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Attach(ctxT(t, time.Minute), name, net, "other"); err != nil {
		t.Fatal(err)
	}
	if got := inTraffic(); got[1] {
		t.Fatalf("in traffic under the wrong alias: %v", got)
	}
	if err := f.e.Attach(ctxT(t, time.Minute), name, net, "web"); err != nil {
		t.Fatal(err)
	}
	if got := inTraffic(); !got[1] {
		t.Fatalf("alias not added: %v", got)
	}

	// Detach of a missing container is a no-op; Attach of one is NotFound.
	if err := f.e.Detach(ctxT(t, time.Minute), "slipway."+f.env+".a.none.1.0", net); err != nil {
		t.Fatal(err)
	}
	wantKind(t, f.e.Attach(ctxT(t, time.Minute), "slipway."+f.env+".a.none.1.0", net, "web"), engine.KindNotFound)
}

// TestTwoClustersOnOneEngine: the same service and version in two clusters of one
// environment on one engine get distinct containers and networks.
func TestTwoClustersOnOneEngine(t *testing.T) {
	t.Parallel()
	f := setup(t, "front", "back")
	a := f.spec("front", "web", "1.0.0", 0)
	b := f.spec("back", "web", "1.0.0", 0)
	ca, cb := mustEnsure(t, f.e, a), mustEnsure(t, f.e, b)
	if ca.ID == cb.ID || ca.Name == cb.Name {
		t.Fatalf("one container for two clusters: %+v %+v", ca, cb)
	}
	ha, hb := mustHealthy(t, f.e, ca.Name), mustHealthy(t, f.e, cb.Name)
	if a.Network == b.Network || ha.Address == hb.Address {
		t.Fatalf("shared network or address: %s %s / %s %s", a.Network, b.Network, ha.Address, hb.Address)
	}
	for _, cl := range []string{"front", "back"} {
		list := mustList(t, f.e, engine.Selector{Environment: f.env, Cluster: cl})
		if len(list) != 1 || list[0].Cluster != cl || !list[0].InTraffic {
			t.Fatalf("cluster %s: %v", cl, names(list))
		}
	}
	if err := f.e.Remove(ctxT(t, time.Minute), ca.Name); err != nil {
		t.Fatal(err)
	}
	if list := mustList(t, f.e, engine.Selector{Environment: f.env}); len(list) != 1 || list[0].Name != cb.Name {
		t.Fatalf("removing cluster front's replica touched back: %v", names(list))
	}
}

// TestTwoEndpoints: one Dialer, two engines (the default one and a second dockerd on its own
// socket); the same key on both gives two independent containers.
func TestTwoEndpoints(t *testing.T) {
	t.Parallel()
	host := testenv.SecondDaemon(t)
	f := setup(t, "a")
	second := dial(t, host)
	f.cleanupOn(second, "a")
	if second == f.e {
		t.Fatal("one engine for two endpoints")
	}
	if again := dial(t, host); again != second {
		t.Fatal("the dialer did not cache the endpoint's engine")
	}
	for _, e := range []*Engine{f.e, second} {
		if err := e.Ping(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	s := f.spec("a", "web", "1.0.0", 0)
	c1 := mustEnsure(t, f.e, s)
	s2 := s
	s2.Image = testenv.DemoImage("1.0.0")
	c2 := mustEnsure(t, second, s2)
	if c1.ID == c2.ID {
		t.Fatal("same container on two engines")
	}
	h1, h2 := mustHealthy(t, f.e, c1.Name), mustHealthy(t, second, c2.Name)
	if getVersion(t, h1.Address) != "1.0.0" || getVersion(t, h2.Address) != "1.0.0" {
		t.Fatal("replicas do not answer")
	}
	l1 := mustList(t, f.e, engine.Selector{Environment: f.env})
	l2 := mustList(t, second, engine.Selector{Environment: f.env})
	if len(l1) != 1 || len(l2) != 1 || l1[0].ID != c1.ID || l2[0].ID != c2.ID {
		t.Fatalf("each engine lists its own: %v / %v", names(l1), names(l2))
	}
	// Removing on one leaves the other.
	if err := second.Remove(ctxT(t, time.Minute), c2.Name); err != nil {
		t.Fatal(err)
	}
	if l1 := mustList(t, f.e, engine.Selector{Environment: f.env}); len(l1) != 1 {
		t.Fatalf("default engine after removal on the second: %v", names(l1))
	}
}

// TestUnavailable: an engine that does not answer is KindUnavailable, for a socket nobody
// listens on, a closed TCP port, and a listener that never answers (the call timeout).
func TestUnavailable(t *testing.T) {
	t.Parallel()
	hosts := deadHosts(t)

	d := NewDialer(Options{CallTimeout: 500 * time.Millisecond, PingTimeout: 500 * time.Millisecond})
	defer func() { _ = d.Close() }()
	for _, host := range hosts {
		t.Run(host, func(t *testing.T) {
			eng, err := d.Dial(context.Background(), engine.Endpoint{Cluster: "down", Host: host})
			if err != nil {
				t.Fatal(err)
			}
			ctx := ctxT(t, 20*time.Second)
			wantKind(t, eng.Ping(ctx), engine.KindUnavailable)
			_, err = eng.List(ctx, engine.Selector{Environment: "x"})
			wantKind(t, err, engine.KindUnavailable)
			_, err = eng.Ensure(ctx, engine.ContainerSpec{
				Key:   engine.Key{Environment: "x", Cluster: "c", Service: "s", Version: "1"},
				Image: testenv.DemoImage("1.0.0"),
			})
			wantKind(t, err, engine.KindUnavailable)
			wantKind(t, eng.Remove(ctx, "slipway.x.c.s.1.0"), engine.KindUnavailable)
			if ctx.Err() != nil {
				t.Fatal("the caller's deadline was reached: the engine was not given up on by the adapter")
			}
		})
	}
}

func TestDialRejectsBadEndpoints(t *testing.T) {
	t.Parallel()
	d := NewDialer(Options{})
	defer func() { _ = d.Close() }()
	_, err := d.Dial(context.Background(), engine.Endpoint{Host: "not a url"})
	wantKind(t, err, engine.KindInvalid)
	missing := filepath.Join(t.TempDir(), "ca.pem")
	_, err = d.Dial(context.Background(), engine.Endpoint{Host: "tcp://127.0.0.1:2376", TLSCA: missing, TLSVerify: true})
	wantKind(t, err, engine.KindInvalid)
	if _, statErr := os.Stat(missing); !os.IsNotExist(statErr) {
		t.Fatal(statErr)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
