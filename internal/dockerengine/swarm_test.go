package dockerengine

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/probe"
)

// swarmFixture is one test's environment on a single-node swarm of its own (a second
// dockerd: the default engine is never a swarm).
func swarmFixture(t *testing.T, cluster string) (*fixture, *Swarm) {
	t.Helper()
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	host := testenv.SwarmDaemon(t)
	d := NewDialer(Options{})
	t.Cleanup(func() { _ = d.Close() })
	eng, err := d.Dial(context.Background(), engine.Endpoint{Cluster: cluster, Host: host, Swarm: true})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := eng.(*Swarm)
	if !ok {
		t.Fatalf("Dial of a swarm endpoint gave %T", eng)
	}
	f := &fixture{t: t, e: s.Engine, env: env}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := s.List(ctx, engine.Selector{Environment: env})
		if err != nil {
			t.Errorf("cleanup: list: %v", err)
		}
		for _, c := range list {
			if err := s.Remove(ctx, c.Name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	if err := s.EnsureNetwork(ctxT(t, time.Minute), engine.NetworkName(env, cluster), map[string]string{engine.LabelEnvironment: env, engine.LabelCluster: cluster}); err != nil {
		t.Fatalf("ensure network: %v", err)
	}
	return f, s
}

// TestSwarmReplicas drives one service version through the port on a swarm: two slots up
// (one Swarm service at scale 2, in dnsrr mode on an attachable overlay network), healthy by
// an HTTP probe beside each task, probed through the network by name; a slot stopped (scale
// 1, kept known) and started again; a second version beside it; removal of every slot
// removes the services.
func TestSwarmReplicas(t *testing.T) {
	f, s := swarmFixture(t, "sw")
	ctx := ctxT(t, 3*time.Minute)

	// The same network twice is fine; it is an attachable overlay network.
	net := engine.NetworkName(f.env, "sw")
	if err := s.EnsureNetwork(ctx, net, nil); err != nil {
		t.Fatalf("ensure network again: %v", err)
	}
	nets, err := s.networksNamed(ctx, "test", SwarmNetworkName(net))
	if err != nil || len(nets) != 1 || nets[0].Scope != "swarm" || !nets[0].Attachable {
		t.Fatalf("network %s: %+v, %v", net, nets, err)
	}

	for slot := range 2 {
		mustEnsure(t, s, f.spec("sw", "web", "1.0.0", slot))
	}
	for slot := range 2 {
		mustHealthy(t, s, f.spec("sw", "web", "1.0.0", slot).ContainerName())
	}
	svc, ok, err := s.service(ctx, "test", f.spec("sw", "web", "1.0.0", 0).Key)
	if err != nil || !ok {
		t.Fatalf("service: %v %v", ok, err)
	}
	if got := *svc.Spec.Mode.Replicated.Replicas; got != 2 {
		t.Fatalf("scale %d, want 2", got)
	}
	if svc.Spec.EndpointSpec == nil || svc.Spec.EndpointSpec.Mode != swarm.ResolutionModeDNSRR {
		t.Fatalf("endpoint spec %+v, want dnsrr", svc.Spec.EndpointSpec)
	}
	if svc.Spec.Labels[engine.LabelVersion] != "1.0.0" || svc.Spec.Labels[engine.LabelService] != "web" || svc.Spec.Labels[engine.LabelEnvironment] != f.env {
		t.Fatalf("labels %v", svc.Spec.Labels)
	}
	list := mustList(t, s, engine.Selector{Environment: f.env, Service: "web"})
	if len(list) != 2 {
		t.Fatalf("list: %+v", list)
	}
	for i, c := range list {
		if c.Name != f.spec("sw", "web", "1.0.0", i).ContainerName() || !c.Running() || !c.InTraffic || c.Address == "" || c.ID == "" {
			t.Fatalf("replica %d: %+v", i, c)
		}
	}

	// The alias answers from inside the network (a probe container on it, by name).
	var answers, ok200 int
	err = s.Probe(ctx, engine.ProbeAt{Network: net}, probe.Job{
		Targets: []string{"web:8080"}, Requests: []probe.Request{{Path: "/", Timeout: 2 * time.Second}},
		Streams: []probe.Stream{{}}, Rounds: 5, Interval: 100 * time.Millisecond,
	}, func(r probe.Result) {
		answers++
		if r.Status == 200 {
			ok200++
		}
	})
	if err != nil || answers == 0 || ok200 != answers {
		t.Fatalf("probe of web:8080 on %s: %d answers, %d 200s, %v", net, answers, ok200, err)
	}

	// Stop slot 1: scale 1, the slot kept (exited); Start brings it back.
	n1 := f.spec("sw", "web", "1.0.0", 1).ContainerName()
	if err := s.Stop(ctx, n1, time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	byName := func() map[string]engine.Container {
		m := map[string]engine.Container{}
		for _, c := range mustList(t, s, engine.Selector{Environment: f.env, Service: "web"}) {
			m[c.Name] = c
		}
		return m
	}
	if c := byName()[n1]; c.State != "exited" || c.InTraffic {
		t.Fatalf("stopped replica: %+v", c)
	}
	if err := s.Start(ctx, n1); err != nil {
		t.Fatalf("start: %v", err)
	}
	mustHealthy(t, s, n1)

	// A second version beside it: its own service; Detach takes the slot out of the scale.
	canary := f.spec("sw", "web", "2.0.0", 0)
	canary.Role = engine.RoleCanary
	mustEnsure(t, s, canary)
	c := mustHealthy(t, s, canary.ContainerName())
	if c.Version != "2.0.0" || c.Role != engine.RoleCanary {
		t.Fatalf("canary: %+v", c)
	}
	if err := s.Detach(ctx, canary.ContainerName(), net); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if c := byName()[canary.ContainerName()]; c.InTraffic || c.Running() {
		t.Fatalf("detached canary: %+v", c)
	}
	if err := s.Attach(ctx, canary.ContainerName(), net, "web"); err != nil {
		t.Fatalf("attach: %v", err)
	}
	if c := byName()[canary.ContainerName()]; !c.InTraffic || !c.Running() {
		t.Fatalf("attached canary: %+v", c)
	}

	// Another image under a version's name is a conflict.
	other := f.spec("sw", "web", "1.0.0", 2)
	other.Image = testenv.DemoImage("2.0.0")
	_, err = s.Ensure(ctx, other)
	wantKind(t, err, engine.KindConflict)

	for name := range byName() {
		if err := s.Remove(ctx, name); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
	}
	if err := s.Remove(ctx, n1); err != nil {
		t.Fatalf("remove again: %v", err)
	}
	svcs, err := s.services(ctx, "test", engine.Selector{Environment: f.env})
	if err != nil || len(svcs) != 0 {
		t.Fatalf("services left: %d, %v", len(svcs), err)
	}
}

// TestSwarmUnhealthy: a version whose task exits at start is unhealthy, with its logs; its
// task's die reaches Events (a restart by Swarm is a failure, not healing).
func TestSwarmUnhealthy(t *testing.T) {
	f, s := swarmFixture(t, "sw")
	ctx := ctxT(t, 2*time.Minute)
	since := time.Now().Add(-time.Second)
	bad := f.spec("sw", "web", "bad-crash", 0)
	mustEnsure(t, s, bad)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := s.WaitHealthy(wctx, bad.ContainerName())
	wantKind(t, err, engine.KindUnhealthy)
	if !strings.Contains(err.Error(), "exit") {
		t.Fatalf("error does not say the task exited: %v", err)
	}

	ectx, ecancel := context.WithTimeout(ctx, 30*time.Second)
	defer ecancel()
	var got engine.Event
	_ = s.Events(ectx, engine.Selector{Environment: f.env, Cluster: "sw", Service: "web", Version: "bad-crash"}, since, func(ev engine.Event) {
		if got.Action == "" {
			got = ev
			ecancel()
		}
	})
	if got.Action != engine.EventDie || got.ExitCode == 0 || got.Version != "bad-crash" {
		t.Fatalf("event %+v, want a die with a non-zero exit code", got)
	}
}

// TestSwarmServiceName: names Swarm accepts (a DNS name component of at most 63
// characters), the same for the same version, distinct for versions that differ only in
// characters Swarm refuses, or past the cut.
func TestSwarmServiceName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)
	k := engine.Key{Environment: "prod", Cluster: "core", Service: "web"}
	long := strings.Repeat("x", 80)
	seen := map[string]string{}
	for _, v := range []string{"v2", "1.0.0", "1-0-0", "sha256:" + strings.Repeat("ab", 32), long + "1", long + "2"} {
		k.Version = v
		n := SwarmServiceName(k)
		if !valid.MatchString(n) || len(n) > 63 {
			t.Errorf("version %q: name %q is not a valid swarm name", v, n)
		}
		if n != SwarmServiceName(k) {
			t.Errorf("version %q: name not deterministic", v)
		}
		if o, dup := seen[n]; dup {
			t.Errorf("versions %q and %q share the name %q", o, v, n)
		}
		seen[n] = v
	}
	if got := SwarmServiceName(engine.Key{Environment: "prod", Cluster: "core", Service: "web", Version: "v2"}); got != "slipway-prod-core-web-v2" {
		t.Errorf("plain name: %q", got)
	}
	if got := SwarmNetworkName(engine.NetworkName("prod", "core")); got != "slipway-prod-core" {
		t.Errorf("network name: %q", got)
	}
}
