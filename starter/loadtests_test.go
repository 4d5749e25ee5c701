package starter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/activities"
	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/schedules"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// ltAPI serves the real router of a starter.Server against the embedded Temporal server, with
// a worker running the LoadTest workflow and the real load-test activities on its own task
// queue.
func ltAPI(t *testing.T) *api {
	t.Helper()
	ts := temporalServer(t)
	queue := randomEnv("ltq")
	d := dockerengine.NewDialer(dockerengine.Options{})
	w := sdkworker.New(ts.Client(), queue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(workflows.ReleaseLock, workflow.RegisterOptions{Name: workflows.LockWorkflowName})
	workflows.RegisterLoadTest(w)
	activities.RegisterLoadTest(w, activities.NewLoadTest(d, activities.LoadTestOptions{MaxRate: 500}))
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop(); _ = d.Close() })
	dir := t.TempDir()
	s, err := starter.New(starter.Config{
		Client: ts.Client(), Namespace: ts.Namespace(), TaskQueue: queue, DeploymentsDir: dir, Tokens: testTokens(t),
		WebUIURL: "http://127.0.0.1:8233", QueryTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &api{t: t, srv: hs, tc: ts.Client(), ns: ts.Namespace(), deploys: dir}
}

func ltSpec(env, schedule string, rate int) string {
	s := fmt.Sprintf(`environment: %s
clusters:
  - name: a
services:
  - name: web
    image: slipway/demo
    version: 1.0.0
    port: 8080
load_tests:
  - name: nightly
    service: web
    rate: %d
    duration: 1s
    slo: {p95: 50ms}
`, env, rate)
	if schedule != "" {
		s += fmt.Sprintf("    schedule: %q\n", schedule)
	}
	return s
}

func decode[T any](t *testing.T, status int, body []byte, want int) T {
	t.Helper()
	if status != want {
		t.Fatalf("status %d, want %d: %s", status, want, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return v
}

func TestLoadTestScheduleRoutes(t *testing.T) {
	a := ltAPI(t)
	env := randomEnv("lts")
	t.Cleanup(func() { _, _ = schedules.Delete(context.Background(), a.tc, env, "") })

	st, _, body := a.do(http.MethodPost, "/v1/loadtests/schedules", tokAdmin, "application/yaml", []byte(ltSpec(env, "0 3 * * *", 10)))
	rep := decode[schedules.Report](t, st, body, http.StatusOK)
	if rep.Count(schedules.Created) != 1 || rep.Changes[0].ID != workflows.LoadTestScheduleID(env, "nightly") {
		t.Fatalf("sync report %+v", rep)
	}
	st, _, body = a.do(http.MethodPost, "/v1/loadtests/schedules", tokAdmin, "application/yaml", []byte(ltSpec(env, "0 3 * * *", 10)))
	if rep = decode[schedules.Report](t, st, body, http.StatusOK); rep.Count(schedules.Unchanged) != 1 {
		t.Fatalf("second sync %+v, want unchanged", rep)
	}

	// The short form syncs the checked-in spec.
	if err := os.WriteFile(filepath.Join(a.deploys, env+".yaml"), []byte(ltSpec(env, "30 4 * * *", 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	st, _, body = a.do(http.MethodPost, "/v1/loadtests/schedules", tokAdmin, "application/json", []byte(`{"environment":"`+env+`"}`))
	if rep = decode[schedules.Report](t, st, body, http.StatusOK); rep.Count(schedules.Updated) != 1 {
		t.Fatalf("sync of the checked-in spec %+v, want updated", rep)
	}

	var list struct{ Schedules []schedules.Info }
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, _, body = a.do(http.MethodGet, "/v1/loadtests/schedules?environment="+env, tokReader, "", nil)
		list = decode[struct{ Schedules []schedules.Info }](t, st, body, http.StatusOK)
		if len(list.Schedules) == 1 || time.Now().After(deadline) {
			break
		}
	}
	if len(list.Schedules) != 1 || list.Schedules[0].Schedule != "30 4 * * *" || len(list.Schedules[0].NextRuns) == 0 {
		t.Fatalf("list = %+v", list)
	}
	// A token scoped to another environment sees none of it.
	ltProblem(a, http.StatusForbidden, http.MethodGet, "/v1/loadtests/schedules?environment="+env, tokOther, "", nil)
	st, _, body = a.do(http.MethodGet, "/v1/loadtests/schedules", tokOther, "", nil)
	for _, s := range decode[struct{ Schedules []schedules.Info }](t, st, body, http.StatusOK).Schedules {
		if s.Environment == env {
			t.Errorf("a token scoped to elsewhere sees %s", s.ID)
		}
	}
	// Reading is not syncing.
	ltProblem(a, http.StatusForbidden, http.MethodPost, "/v1/loadtests/schedules", tokReader, "application/yaml", []byte(ltSpec(env, "", 10)))
	// A bad spec names the field.
	p := ltProblem(a, http.StatusBadRequest, http.MethodPost, "/v1/loadtests/schedules", tokAdmin, "application/yaml", []byte(ltSpec(env, "every day", 10)))
	if len(p.Errors) != 1 || p.Errors[0].Path != "load_tests[0].schedule" || p.Errors[0].Line == 0 {
		t.Errorf("bad schedule problem %+v", p)
	}

	// A dry run without the schedule says "deleted" and deletes nothing.
	st, _, body = a.do(http.MethodPost, "/v1/loadtests/schedules?dry_run=true", tokAdmin, "application/yaml", []byte(ltSpec(env, "", 10)))
	if rep = decode[schedules.Report](t, st, body, http.StatusOK); rep.Count(schedules.Deleted) != 1 || !rep.DryRun {
		t.Fatalf("dry run %+v", rep)
	}
	if _, err := schedules.Get(context.Background(), a.tc, env, "nightly"); err != nil {
		t.Fatalf("the dry run deleted the schedule: %v", err)
	}

	ltProblem(a, http.StatusBadRequest, http.MethodDelete, "/v1/loadtests/schedules", tokAdmin, "", nil)
	st, _, body = a.do(http.MethodDelete, "/v1/loadtests/schedules?environment="+env+"&name=nightly", tokAdmin, "", nil)
	del := decode[struct{ Deleted []string }](t, st, body, http.StatusOK)
	if len(del.Deleted) != 1 || del.Deleted[0] != workflows.LoadTestScheduleID(env, "nightly") {
		t.Fatalf("delete = %+v", del)
	}
	if _, err := schedules.Get(context.Background(), a.tc, env, "nightly"); err == nil {
		t.Fatal("the schedule still exists after DELETE")
	}
}

// TestRunLoadTestRoute runs a load test through the API on an environment where nothing
// runs: the run fails (no replica to load, nothing scaled) and GET shows why; the same
// Idempotency-Key answers with the same run.
func TestRunLoadTestRoute(t *testing.T) {
	a := ltAPI(t)
	env := randomEnv("ltr")
	spec := []byte(ltSpec(env, "", 10))

	st, hdr, body := a.do(http.MethodPost, "/v1/loadtests?name=nightly&wait=30s", tokAdmin, "application/yaml", spec, "Idempotency-Key", "k1")
	run := decode[apiclient.LoadTestRun](t, st, body, http.StatusOK)
	if !strings.HasPrefix(run.ID, "loadtest-"+env+"-nightly-") || run.Running || run.Status != "Failed" || run.Environment != env {
		t.Fatalf("run = %+v", run)
	}
	t.Logf("failed run error: %s", run.Error)
	if !strings.Contains(run.Error, "no running replica of web") || run.Result != nil || hdr.Get("Location") != run.Links.Self {
		t.Errorf("failed run = %+v", run)
	}
	st, _, body = a.do(http.MethodPost, "/v1/loadtests?name=nightly", tokAdmin, "application/yaml", spec, "Idempotency-Key", "k1")
	again := decode[apiclient.LoadTestRun](t, st, body, http.StatusOK)
	if again.ID != run.ID || again.RunID != run.RunID || !again.Existing {
		t.Errorf("same Idempotency-Key: %+v, want the run %s", again, run.ID)
	}
	st, _, body = a.do(http.MethodGet, run.Links.Self, tokReader, "", nil)
	if got := decode[apiclient.LoadTestRun](t, st, body, http.StatusOK); got.ID != run.ID || got.Error == "" || got.Test != "" && got.Test != "nightly" {
		t.Errorf("GET = %+v", got)
	}

	// Over the worker's cap (500 req/s): refused by the worker, nothing ran.
	st, _, body = a.do(http.MethodPost, "/v1/loadtests?name=nightly&wait=30s", tokAdmin, "application/yaml", []byte(ltSpec(env, "", 501)))
	if over := decode[apiclient.LoadTestRun](t, st, body, http.StatusOK); !strings.Contains(over.Error, "cap of 500 req/s") {
		t.Errorf("run over the cap = %+v", over)
	}

	// An ended run cannot be cancelled; a reader cannot cancel; an unknown run is not found.
	p := ltProblem(a, http.StatusConflict, http.MethodPost, run.Links.Self+"/cancel", tokAdmin, "", nil)
	if !strings.Contains(p.Detail, "already ended") {
		t.Errorf("cancel of an ended run: %+v", p)
	}
	ltProblem(a, http.StatusForbidden, http.MethodPost, run.Links.Self+"/cancel", tokReader, "", nil)
	ltProblem(a, http.StatusForbidden, http.MethodPost, run.Links.Self+"/cancel", tokOther, "", nil)
	ltProblem(a, http.StatusNotFound, http.MethodPost, "/v1/loadtests/loadtest-"+env+"-nightly-nothere/cancel", tokAdmin, "", nil)

	ltProblem(a, http.StatusNotFound, http.MethodPost, "/v1/loadtests?name=nope", tokAdmin, "application/yaml", spec)
	ltProblem(a, http.StatusBadRequest, http.MethodPost, "/v1/loadtests", tokAdmin, "application/yaml", spec)
	ltProblem(a, http.StatusForbidden, http.MethodPost, "/v1/loadtests?name=nightly", tokReader, "application/yaml", spec)
	ltProblem(a, http.StatusNotFound, http.MethodPost, "/v1/loadtests", tokAdmin, "application/json", []byte(`{"environment":"`+env+`","name":"nightly"}`)) // nothing checked in
	ltProblem(a, http.StatusNotFound, http.MethodGet, "/v1/loadtests/loadtest-"+env+"-nightly-nothere", tokAdmin, "", nil)
	ltProblem(a, http.StatusNotFound, http.MethodGet, "/v1/loadtests/release-"+env+"-x", tokAdmin, "", nil)
	ltProblem(a, http.StatusForbidden, http.MethodGet, run.Links.Self, tokOther, "", nil)
	ltProblem(a, http.StatusUnauthorized, http.MethodGet, run.Links.Self, "", "", nil)
}

// ltProblem sends a request and checks it is answered with a problem of status want.
func ltProblem(a *api, want int, method, path, token, ctype string, body []byte, hdr ...string) apiclient.Problem {
	a.t.Helper()
	st, h, b := a.do(method, path, token, ctype, body, hdr...)
	return a.problem(st, h, b, want)
}
