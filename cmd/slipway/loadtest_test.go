package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// ltCLI is the whole product in-process (newCLIStack: embedded Temporal, the real worker on
// the machine's engine, the real API); run runs `slipway schedules|loadtest` against its API.
type ltCLI struct {
	*cliStack
	d *dockerengine.Dialer
}

func newLTCLI(t *testing.T) *ltCLI {
	t.Helper()
	d := dockerengine.NewDialer(dockerengine.Options{})
	t.Cleanup(func() { _ = d.Close() })
	return &ltCLI{cliStack: newCLIStack(t), d: d}
}

const ltCLISpec = `environment: %s
clusters:
  - name: a
defaults:
  health: {http_path: /healthz, interval: 200ms, deadline: 30s}
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
  - name: slow
    image: slipway/demo
    version: bad-latency
    port: 8080
load_tests:
  - name: ok
    service: web
    rate: 50
    duration: 2s
    requests: [{path: /}]
    schedule: "%s"
    slo: {p95: 100ms, max_error_rate: 0.01}
  - name: slow
    service: slow
    rate: 20
    duration: 2s
    requests: [{path: /}]
    slo: {p95: 100ms}
  - name: long
    service: web
    rate: 10
    duration: 5m
    requests: [{path: /}]
`

func TestLoadTestCLI(t *testing.T) {
	testenv.DemoImages(t)
	env := testenv.UniqueEnv(t)
	s := newLTCLI(t)
	dir := t.TempDir()
	file := filepath.Join(dir, env+".yaml")
	write := func(schedule string) {
		if err := os.WriteFile(file, []byte(fmt.Sprintf(ltCLISpec, env, schedule)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0 3 * * *")
	e, err := spec.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	ltCLIDeploy(t, s.d, e)

	// schedules
	code, out, errb := s.run(t, "schedules", "sync", "-f", file)
	if code != 0 || !strings.Contains(out, "1 created, 0 updated, 0 unchanged, 0 deleted") || !strings.Contains(out, "loadtest-"+env+"-ok") {
		t.Fatalf("sync: exit %d\n%s%s", code, out, errb)
	}
	write("@every 12h")
	if code, out, errb = s.run(t, "schedules", "sync", "-f", file, "--dry-run"); code != 0 || !strings.Contains(out, "1 updated") || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errb)
	}
	if code, out, errb = s.run(t, "schedules", "sync", "-f", file, "-o", "json"); code != 0 || !strings.Contains(out, `"action": "updated"`) {
		t.Fatalf("sync json: exit %d\n%s%s", code, out, errb)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, out, errb = s.run(t, "schedules", "list", "-e", env)
		if code == 0 && strings.Contains(out, "@every 12h") || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.Contains(out, "loadtest-"+env+"-ok") || !strings.Contains(out, "@every 12h") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errb)
	}
	if code, out, errb = s.run(t, "schedules", "delete", "-e", env, "--name", "ok"); code != 0 || !strings.Contains(out, "deleted loadtest-"+env+"-ok") {
		t.Fatalf("delete: exit %d\n%s%s", code, out, errb)
	}
	if code, _, errb = s.run(t, "schedules", "sync", "-f", filepath.Join(dir, "missing.yaml")); code != 1 || !strings.Contains(errb, "missing.yaml") {
		t.Fatalf("sync of a missing file: exit %d, %s", code, errb)
	}

	// loadtest run: a passing run exits 0, a missed SLO exits 4.
	code, out, errb = s.run(t, "loadtest", "run", "-f", file, "ok", "--wait")
	if code != 0 || !strings.Contains(out, "PASSED") || !strings.Contains(out, "slo ok   p95") || !strings.Contains(errb, "started") {
		t.Fatalf("run ok: exit %d\n%s%s", code, out, errb)
	}
	t.Logf("slipway loadtest run -f SPEC ok --wait:\n%s%s", errb, out)
	code, out, errb = s.run(t, "loadtest", "run", "-f", file, "slow", "--wait")
	t.Logf("slipway loadtest run -f SPEC slow --wait (exit %d):\n%s%s", code, errb, out)
	if code != codeSLOMissed || !strings.Contains(out, "FAILED") || !strings.Contains(out, "slo MISS p95") {
		t.Fatalf("run slow: exit %d, want %d\n%s%s", code, codeSLOMissed, out, errb)
	}
	// run without --wait prints the id; show prints the result once it ended.
	code, out, errb = s.run(t, "loadtest", "run", "-f", file, "ok")
	id := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(id, "loadtest-"+env+"-ok-") {
		t.Fatalf("run without wait: exit %d\n%s%s", code, out, errb)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		code, out, errb = s.run(t, "loadtest", "show", id)
		if code != codeWaiting || time.Now().After(deadline) {
			break
		}
	}
	if code != 0 || !strings.Contains(out, "PASSED") || !strings.Contains(out, "previous") {
		t.Fatalf("show: exit %d\n%s%s", code, out, errb)
	}
	if code, _, errb = s.run(t, "loadtest", "run", "-f", file, "nope"); code != 1 || !strings.Contains(errb, `no load test "nope"`) {
		t.Fatalf("unknown test: exit %d, %s", code, errb)
	}

	// cancel: a run of five minutes stops, scales back and ends cancelled; a second cancel
	// finds it ended.
	code, out, errb = s.run(t, "loadtest", "run", "-f", file, "long", "-o", "json")
	var started struct{ ID string }
	if code != 0 || json.Unmarshal([]byte(out), &started) != nil || !strings.HasPrefix(started.ID, "loadtest-"+env+"-long-") {
		t.Fatalf("run long: exit %d\n%s%s", code, out, errb)
	}
	if code, out, errb = s.run(t, "loadtest", "cancel", started.ID); code != 0 || !strings.Contains(out, "cancel requested: "+started.ID) {
		t.Fatalf("cancel: exit %d\n%s%s", code, out, errb)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		code, out, errb = s.run(t, "loadtest", "show", started.ID)
		if code != codeWaiting || time.Now().After(deadline) {
			break
		}
	}
	if code != 1 || !strings.Contains(errb, "cancelled (scaled back)") {
		t.Fatalf("show after cancel: exit %d\n%s%s", code, out, errb)
	}
	if code, _, errb = s.run(t, "loadtest", "cancel", started.ID); code != 1 || !strings.Contains(errb, "already ended") {
		t.Fatalf("second cancel: exit %d, %s", code, errb)
	}
}

func TestLoadTestExitCodes(t *testing.T) {
	for outcome, want := range map[workflows.LoadTestOutcome]int{
		workflows.LoadTestPassed: 0, workflows.LoadTestFailed: codeSLOMissed, workflows.LoadTestRefused: codeError,
	} {
		err := loadTestExit(workflows.LoadTestResult{Outcome: outcome, Environment: "e", Test: "t", Reason: "r"})
		got := 0
		var ee *exitError
		if errors.As(err, &ee) {
			got = ee.code
		} else if err != nil {
			got = -1
		}
		if got != want {
			t.Errorf("%s: exit %d, want %d", outcome, got, want)
		}
	}
}

// ltCLIDeploy runs one replica of every service of e (cluster a), in traffic, and removes
// the environment's containers and network at the end.
func ltCLIDeploy(t *testing.T, d engine.Dialer, e *spec.Environment) {
	t.Helper()
	tgt := workflows.TargetOf(e.Environment, e.Clusters[0])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		eng, err := dockerengine.New(engine.Endpoint{Cluster: "a"}, dockerengine.Options{})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer func() { _ = eng.Close() }()
		list, _ := eng.List(ctx, engine.Selector{Environment: e.Environment})
		for _, c := range list {
			if err := eng.Remove(ctx, c.Name); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := eng.RemoveNetwork(ctx, tgt.Network()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	a := activities.New(d, activities.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := a.EnsureNetwork(ctx, workflows.EnsureNetworkInput{Target: tgt}); err != nil {
		t.Fatal(err)
	}
	for _, s := range e.Services {
		if _, err := a.StartReplicas(ctx, workflows.StartReplicasInput{
			Target: tgt, Release: "r0", Role: engine.RoleStable, Service: s, Slots: []int{0}, Attach: true, HealthDeadline: 30 * time.Second,
		}); err != nil {
			t.Fatalf("deploy %s: %v", s.Name, err)
		}
	}
}
