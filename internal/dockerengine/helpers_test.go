package dockerengine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/testenv"
)

// Every test here runs against the real Docker engine of the machine (and a second dockerd
// for the two-endpoint test). testenv.Main stops the shared second daemon at the end.
func TestMain(m *testing.M) { testenv.Main(m) }

// dialer is shared by the tests, as the worker shares one.
var dialer = NewDialer(Options{})

// fixture is one test's environment on one engine, cleaned up when the test ends.
type fixture struct {
	t   *testing.T
	e   *Engine
	env string
}

// setup builds the demo images, names a unique environment and registers the cleanup that
// removes every container of it and the networks of the given clusters. testenv's
// leftover check (registered by UniqueEnv) runs after it.
func setup(t *testing.T, clusters ...string) *fixture {
	t.Helper()
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	f := &fixture{t: t, e: dial(t, ""), env: env}
	f.cleanupOn(f.e, clusters...)
	return f
}

// dial returns the dialer's engine for host ("" = the process environment).
func dial(t *testing.T, host string) *Engine {
	t.Helper()
	eng, err := dialer.Dial(context.Background(), engine.Endpoint{Cluster: "test", Host: host})
	if err != nil {
		t.Fatal(err)
	}
	return eng.(*Engine)
}

// cleanupOn removes the environment's containers and the clusters' networks on e.
func (f *fixture) cleanupOn(e *Engine, clusters ...string) {
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, err := e.List(ctx, engine.Selector{Environment: f.env})
		if err != nil {
			f.t.Errorf("cleanup: list: %v", err)
		}
		for _, c := range list {
			if err := e.Remove(ctx, c.Name); err != nil {
				f.t.Errorf("cleanup: %v", err)
			}
		}
		for _, cl := range clusters {
			if err := e.RemoveNetwork(ctx, engine.NetworkName(f.env, cl)); err != nil {
				f.t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// spec is a replica of the demo service with an HTTP health check on /healthz.
func (f *fixture) spec(cluster, service, tag string, slot int) engine.ContainerSpec {
	return engine.ContainerSpec{
		Key:     engine.Key{Environment: f.env, Cluster: cluster, Service: service, Version: tag, Slot: slot},
		Release: "r1",
		Role:    engine.RoleStable,
		Image:   testenv.DemoImage(tag),
		Port:    8080,
		Health:  engine.HealthCheck{HTTPPath: "/healthz", Interval: 200 * time.Millisecond, Retries: 3},
		Network: engine.NetworkName(f.env, cluster),
		Alias:   service,
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustEnsure(t *testing.T, e engine.Engine, s engine.ContainerSpec) engine.Container {
	t.Helper()
	c, err := e.Ensure(ctxT(t, time.Minute), s)
	if err != nil {
		t.Fatalf("ensure %s: %v", s.ContainerName(), err)
	}
	return c
}

func mustHealthy(t *testing.T, e engine.Engine, name string) engine.Container {
	t.Helper()
	c, err := e.WaitHealthy(ctxT(t, 30*time.Second), name)
	if err != nil {
		t.Fatalf("wait healthy %s: %v", name, err)
	}
	if c.Health != engine.HealthHealthy || !c.Running() {
		t.Fatalf("%s: health %q state %q", name, c.Health, c.State)
	}
	return c
}

func mustList(t *testing.T, e engine.Engine, sel engine.Selector) []engine.Container {
	t.Helper()
	list, err := e.List(ctxT(t, time.Minute), sel)
	if err != nil {
		t.Fatalf("list %+v: %v", sel, err)
	}
	return list
}

func wantKind(t *testing.T, err error, k engine.Kind) {
	t.Helper()
	if got := engine.KindOf(err); got != k {
		t.Fatalf("want kind %s, got %q: %v", k, got, err)
	}
}

// getVersion GETs / on a replica's address (from this host) and returns the version it
// reports.
func getVersion(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatalf("GET %s: %v: %s", addr, err, b)
	}
	return body.Version
}

func names(list []engine.Container) []string {
	out := make([]string, len(list))
	for i, c := range list {
		out[i] = fmt.Sprintf("%s(%s)", c.Name, c.State)
	}
	return out
}

// lookup asks the demo replica at addr to resolve host with its own resolver (Docker's
// embedded DNS) and returns the addresses, sorted.
func lookup(t *testing.T, addr, host string) []string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/lookup?host=" + host)
	if err != nil {
		t.Fatalf("lookup via %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var body struct {
		Addrs []string `json:"addrs"`
		Error string   `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("lookup via %s: %v", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lookup %s via %s: %s %s", host, addr, resp.Status, body.Error)
	}
	sort.Strings(body.Addrs)
	return body.Addrs
}

func hostOf(t *testing.T, addr string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return h
}

func sameSet(got []string, want ...string) bool {
	sort.Strings(want)
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// deadHosts returns engine addresses that do not answer: a unix socket nobody listens on, a
// closed TCP port, and a listener that accepts and never answers (each call runs into its
// timeout). The listener lives until the test ends.
func deadHosts(t *testing.T) []string {
	t.Helper()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close() // its address is now one nothing listens on
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = conn.Close() }) // accept, never answer
		}
	}()
	return []string{"unix://" + filepath.Join(t.TempDir(), "nobody.sock"), "tcp://" + closedAddr, "tcp://" + silent.Addr().String()}
}
