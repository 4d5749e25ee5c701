package spec

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBuiltinDefaults(t *testing.T) {
	env, err := Load("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := env.Clusters[0]
	if c.Wave != DefaultWave || !c.Canary {
		t.Errorf("cluster = %+v, want wave 1 and canary", c)
	}
	s := env.Services[0]
	want := Service{
		Name: "web", Image: "shop/web", Version: "1.0",
		Clusters: []string{"main"},
		Replicas: 1,
		Health:   &Health{Interval: Duration(2 * time.Second), Timeout: Duration(2 * time.Second), Retries: 3, Deadline: Duration(time.Minute)},
		Canary: &Canary{Replicas: 1, Soak: Duration(30 * time.Second),
			Approval: &Approval{Timeout: Duration(30 * time.Minute), OnTimeout: OnTimeoutRollback}},
		Rollout: &Rollout{BatchSize: 1},
		// No port: nothing to probe over HTTP.
		Verification: &Verification{Skip: true, Interval: Duration(10 * time.Millisecond), Duration: Duration(10 * time.Second),
			MinSamples: 700, MaxErrorRate: 0.01, Confidence: 0.999, MaxLatencyRatio: 1.5, Bake: durationPtr(30 * time.Second)},
		Rollback:  &Rollback{Scope: ScopeRelease, KeepPrevious: KeepRunning},
		StopGrace: Duration(10 * time.Second),
	}
	if !reflect.DeepEqual(s, want) {
		a, _ := json.MarshalIndent(s, "", " ")
		b, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("got\n%s\nwant\n%s", a, b)
	}
}

func TestDefaultProbes(t *testing.T) {
	env := mustParse(t, `
environment: x
clusters: [{name: a}]
services:
  - {name: plain, image: x, version: "1", port: 80}
  - {name: healthy, image: x, version: "1", port: 80, health: {http_path: /healthz}}
load_tests:
  - {name: lt, service: healthy, rate: 5, duration: 10s}
`)
	probe := func(p string) []Probe {
		return []Probe{{Path: p, Method: "GET", ExpectStatus: 200, Timeout: Duration(2 * time.Second)}}
	}
	// Verification probes a real route, never the health path alone, and expects the new
	// version to answer like stable (no expect_status).
	verify := []Probe{{Path: "/", Method: "GET", Timeout: Duration(2 * time.Second)}}
	if got := env.Services[0].Verification.Requests; !reflect.DeepEqual(got, verify) {
		t.Errorf("plain requests = %+v", got)
	}
	if got := env.Services[1].Verification.Requests; !reflect.DeepEqual(got, verify) {
		t.Errorf("healthy requests = %+v", got)
	}
	if env.Services[0].Verification.Skip {
		t.Error("a service with a port must be verified")
	}
	lt := env.LoadTests[0]
	// A load test loads the service's real traffic path, not its health check.
	if !reflect.DeepEqual(lt.Requests, probe("/")) || lt.ScaleFactor != 1 || !reflect.DeepEqual(lt.Clusters, []string{"a"}) {
		t.Errorf("load test = %+v", lt)
	}
}

// TestInheritance checks the merge rules of the defaults block: fields merge one by one,
// a missing block is copied whole, booleans come only with their whole block.
func TestInheritance(t *testing.T) {
	env, err := Load("testdata/valid/everything.yaml")
	if err != nil {
		t.Fatal(err)
	}
	app, db := env.Services[0], env.Services[1]
	// app sets its own canary block: replicas and soak are its own; approval is its own
	// block, so required: false stays false and timeout/on_timeout come from defaults.
	if app.Canary.Replicas != 2 || app.Canary.Soak.D() != 2*time.Minute {
		t.Errorf("app canary = %+v", app.Canary)
	}
	if a := app.Canary.Approval; a.Required || a.Timeout.D() != 10*time.Minute || a.OnTimeout != OnTimeoutProceed {
		t.Errorf("app approval = %+v", a)
	}
	if app.Canary.LoadTest != "smoke" {
		t.Errorf("app canary load_test = %q, want inherited smoke", app.Canary.LoadTest)
	}
	// db has no canary block: the defaults' block whole, required: true included.
	if a := db.Canary.Approval; !a.Required || a.Timeout.D() != 10*time.Minute {
		t.Errorf("db approval = %+v", a)
	}
	// health: image: true on app keeps it from inheriting http_path.
	if app.Health.HTTPPath != "" || !app.Health.Image || app.Health.Interval.D() != 3*time.Second {
		t.Errorf("app health = %+v", app.Health)
	}
	if db.Health.HTTPPath != "/health" {
		t.Errorf("db health = %+v", db.Health)
	}
	// Explicit values win; unset ones inherit.
	if app.Replicas != 3 || db.Replicas != 2 {
		t.Errorf("replicas app %d db %d", app.Replicas, db.Replicas)
	}
	if app.Resources.Memory != "1.5Gi" || db.Resources.Memory != "128Mi" || db.Resources.CPUs != 0.25 {
		t.Errorf("resources app %+v db %+v", app.Resources, db.Resources)
	}
	if app.Rollout.BatchSize != 1 || app.Rollout.Pause.D() != 5*time.Second {
		// pause: 0s cannot be told from unset, so the default's 5s applies (documented).
		t.Errorf("app rollout = %+v", app.Rollout)
	}
	if v := app.Verification; v.MinSamples != 20 || v.MaxLatencyRatio != 2 || len(v.Requests) != 1 || v.Requests[0].Path != "/api/items?limit=5" {
		t.Errorf("app verification = %+v", v)
	}
	if v := db.Verification; !v.Skip || len(v.Requests) != 1 || v.Requests[0].Path != "/ping" {
		t.Errorf("db verification = %+v", v)
	}
	if app.Rollback.Scope != ScopeRelease || db.Rollback.Scope != ScopeService || db.Rollback.KeepPrevious != KeepStopped {
		t.Errorf("rollback app %+v db %+v", app.Rollback, db.Rollback)
	}
	// Inherited blocks are copies: changing one service does not change another.
	db.Verification.Requests[0].Path = "/changed"
	if env.Defaults.Verification.Requests[0].Path != "/ping" {
		t.Error("services share the defaults' slices")
	}
}

func TestApplyDefaultsIdempotent(t *testing.T) {
	for _, f := range []string{"testdata/valid/everything.yaml", "testdata/valid/minimal.yaml", "../deployments/production.example.yaml"} {
		env, err := Load(f)
		if err != nil {
			t.Fatal(err)
		}
		before, _ := json.Marshal(env)
		ApplyDefaults(env)
		after, _ := json.Marshal(env)
		if string(before) != string(after) {
			t.Errorf("%s: ApplyDefaults changed a defaulted spec:\n%s\n%s", f, before, after)
		}
	}
}

func TestDefaultCanaryLoadTestGatesOnlyItsService(t *testing.T) {
	env := mustParse(t, `
environment: x
clusters: [{name: a}]
defaults:
  canary: {load_test: smoke}
services:
  - {name: app, image: x, version: "1", port: 80}
  - {name: db, image: x, version: "1", port: 80}
  - {name: web, image: x, version: "1", port: 80, canary: {load_test: web-load}}
load_tests:
  - {name: smoke, service: app, rate: 5, duration: 10s}
  - {name: web-load, service: web, rate: 5, duration: 10s}
`)
	for name, want := range map[string]string{"app": "smoke", "db": "", "web": "web-load"} {
		s, _ := env.Service(name)
		if s.Canary.LoadTest != want {
			t.Errorf("%s: canary.load_test = %q, want %q", name, s.Canary.LoadTest, want)
		}
	}
	_, err := Parse("own.yaml", []byte(`
environment: x
clusters: [{name: a}]
services:
  - {name: app, image: x, version: "1", port: 80}
  - {name: db, image: x, version: "1", port: 80, canary: {load_test: smoke}}
load_tests:
  - {name: smoke, service: app, rate: 5, duration: 10s}
`))
	if err == nil || !strings.Contains(err.Error(), "services[1].canary.load_test") {
		t.Fatalf("a service's own canary.load_test of another service: err = %v", err)
	}
}
