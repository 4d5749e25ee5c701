package dockerengine

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/probe"
)

// probeContainers lists the probe containers of env on the default engine (docker CLI: from
// the outside).
func probeContainers(t *testing.T, env string) []string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=io.slipway.role=probe", "--filter", "label=io.slipway.environment="+env).Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	return strings.Fields(string(out))
}

// collect runs a job and returns its results.
func collect(ctx context.Context, e *Engine, network string, j probe.Job, beside ...string) ([]probe.Result, error) {
	var mu sync.Mutex
	var got []probe.Result
	err := e.Probe(ctx, engine.ProbeAt{Network: network, Beside: beside}, j, func(r probe.Result) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	})
	return got, err
}

func TestProbeRunsNextToTheReplica(t *testing.T) {
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	mustEnsure(t, f.e, s)
	c := mustHealthy(t, f.e, s.ContainerName())
	if c.Address == "" {
		t.Fatal("no address")
	}
	for _, mode := range []string{"network", "beside", "direct"} {
		direct := mode == "direct"
		var beside []string
		if mode == "beside" {
			// a missing container first: the next running one is joined
			beside = []string{"slipway." + f.env + ".a.web.none.0", s.ContainerName()}
		}
		e := f.e
		if direct {
			de, err := dialer.Dial(context.Background(), engine.Endpoint{Cluster: "a", DirectProbes: true})
			if err != nil {
				t.Fatal(err)
			}
			e = de.(*Engine)
		}
		job := probe.Job{
			Targets:  []string{c.Address, ""},
			Requests: []probe.Request{{Path: "/"}, {Path: "/healthz"}},
			Streams:  []probe.Stream{{Target: 0, Request: 0}, {Target: 0, Request: 1}, {Target: 1, Request: 0}},
			Interval: 100 * time.Millisecond,
			Rounds:   5,
		}
		got, err := collect(ctxT(t, time.Minute), e, s.Network, job, beside...)
		if err != nil {
			t.Fatalf("direct=%t: %v", direct, err)
		}
		if len(got) != 15 {
			t.Fatalf("direct=%t: %d results, want 15: %+v", direct, len(got), got)
		}
		rounds := map[int]int{}
		for _, r := range got {
			rounds[r.R]++
			switch r.S {
			case 0, 1:
				if r.Status != 200 || r.Err != "" || r.Latency <= 0 {
					t.Errorf("direct=%t: stream %d: %+v, want a 200 with a latency", direct, r.S, r)
				}
			case 2:
				if r.Err != probe.ErrNoAddress || !r.Lost() {
					t.Errorf("direct=%t: a target without address: %+v", direct, r)
				}
			}
		}
		for i := range 5 {
			if rounds[i] != 3 {
				t.Errorf("direct=%t: round %d has %d results, want 3", direct, i, rounds[i])
			}
		}
		site := e.ProbeSite(engine.ProbeAt{Network: s.Network})
		if direct != strings.Contains(site, "worker") || !direct && !strings.Contains(site, s.Network) {
			t.Errorf("direct=%t: site %q", direct, site)
		}
	}
	if left := probeContainers(t, f.env); len(left) > 0 {
		t.Errorf("probe containers left after the jobs: %v", left)
	}
}

func TestProbeClassifiesBadAnswers(t *testing.T) {
	f := setup(t, "a")
	s := f.spec("a", "web", "bad-errors", 0)
	mustEnsure(t, f.e, s)
	c := mustHealthy(t, f.e, s.ContainerName())
	host := strings.Split(c.Address, ":")[0]
	job := probe.Job{
		// the replica's port, a closed port on it, and an address on another network
		Targets:  []string{c.Address, host + ":9"},
		Requests: []probe.Request{{Path: "/", Timeout: time.Second}},
		Streams:  []probe.Stream{{Target: 0}, {Target: 1}},
		Interval: 50 * time.Millisecond,
		Rounds:   40,
	}
	got, err := collect(ctxT(t, time.Minute), f.e, s.Network, job)
	if err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for _, r := range got {
		if r.S == 1 {
			if r.Err != probe.ErrRefused || r.Lost() {
				t.Errorf("closed port: %+v, want refused (a failure, not lost)", r)
			}
			continue
		}
		codes[r.Status]++
	}
	if codes[500] == 0 || codes[200] == 0 {
		t.Errorf("bad-errors answered %v, want both 200 and 500", codes)
	}
}

func TestProbeCancelledRemovesItsContainer(t *testing.T) {
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	mustEnsure(t, f.e, s)
	c := mustHealthy(t, f.e, s.ContainerName())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	var once sync.Once
	err := f.e.Probe(ctx, engine.ProbeAt{Network: s.Network}, probe.Job{
		Targets: []string{c.Address}, Requests: []probe.Request{{Path: "/"}}, Streams: []probe.Stream{{}},
		Interval: 50 * time.Millisecond, Duration: time.Hour,
	}, func(probe.Result) {
		n++
		if n == 5 {
			if left := probeContainers(t, f.env); len(left) != 1 {
				t.Errorf("while probing: %d probe containers, want 1", len(left))
			}
			once.Do(cancel)
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if left := probeContainers(t, f.env); len(left) > 0 {
		t.Errorf("probe container left after the cancel: %v", left)
	}
}

func TestSweepProbesRemovesStaleOnes(t *testing.T) {
	f := setup(t, "a")
	// A probe container a killed worker left: expired label, still running.
	out, err := exec.Command("docker", "run", "-d", "--name", "slipway-probe.stale-"+f.env,
		"--label", "io.slipway.managed=true", "--label", "io.slipway.role=probe",
		"--label", "io.slipway.environment="+f.env, "--label", "io.slipway.probe.expires=2001-01-01T00:00:00Z",
		testenv.DemoImage("1.0.0")).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, out)
	}
	if len(probeContainers(t, f.env)) != 1 {
		t.Fatal("the stale probe container is not there")
	}
	if list := mustList(t, f.e, engine.Selector{Environment: f.env}); len(list) != 0 {
		t.Errorf("List shows probe containers as replicas: %+v", list)
	}
	n, err := f.e.SweepProbes(ctxT(t, time.Minute), false)
	if err != nil {
		t.Fatal(err)
	}
	if n < 1 || len(probeContainers(t, f.env)) != 0 {
		t.Errorf("swept %d, left %v", n, probeContainers(t, f.env))
	}
}

func TestProbeNeedsTheNetwork(t *testing.T) {
	f := setup(t)
	err := f.e.Probe(ctxT(t, time.Minute), engine.ProbeAt{Network: engine.NetworkName(f.env, "nowhere")}, probe.Job{
		Targets: []string{"10.0.0.1:80"}, Requests: []probe.Request{{Path: "/"}}, Streams: []probe.Stream{{}},
		Interval: time.Second, Rounds: 1,
	}, func(probe.Result) {})
	if engine.KindOf(err) != engine.KindNotFound || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("err = %v, want NotFound naming the network", err)
	}
}

// TestBesideGone: a probe that was to join a replica's network namespace falls back to the
// network when the replica stopped between the probe's create and its start (an OOM kill
// at that moment: the engine's error is then runc's about a namespace path, not "non
// running container"). besideGone asks the engine instead of reading the error's words.
func TestBesideGone(t *testing.T) {
	f := setup(t, "a")
	s := f.spec("a", "web", "1.0.0", 0)
	c := mustEnsure(t, f.e, s)
	ctx := ctxT(t, time.Minute)
	mode := container.NetworkMode("container:" + c.ID)
	runc := errors.New("failed to create shim task: OCI runtime create failed: runc create failed: unable to create new parent process: namespace path: lstat /proc/1/ns/net: no such file or directory")
	if f.e.besideGone(ctx, "test", mode, runc) {
		t.Fatal("a running replica is not gone")
	}
	if f.e.besideGone(ctx, "test", container.NetworkMode(s.Network), runc) {
		t.Fatal("a probe on the network joins no replica")
	}
	if !f.e.besideGone(ctx, "test", mode, errors.New("cannot join network of a non running container")) {
		t.Fatal("the engine's own words")
	}
	if err := f.e.Stop(ctx, s.ContainerName(), time.Second); err != nil {
		t.Fatal(err)
	}
	if !f.e.besideGone(ctx, "test", mode, runc) {
		t.Fatal("a stopped replica is gone")
	}
	if err := f.e.Remove(ctx, s.ContainerName()); err != nil {
		t.Fatal(err)
	}
	if !f.e.besideGone(ctx, "test", mode, runc) {
		t.Fatal("a removed replica is gone")
	}
}
