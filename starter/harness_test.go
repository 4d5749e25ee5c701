package starter_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// One embedded, ephemeral Temporal server for the whole test binary (started on first use).
var (
	temporalOnce sync.Once
	temporalSrv  *devserver.Server
	temporalErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopWorker()
	if temporalSrv != nil {
		temporalSrv.Stop()
	}
	os.Exit(code)
}

func temporalServer(t testing.TB) *devserver.Server {
	t.Helper()
	testenv.RequireTemporal(t)
	temporalOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		temporalSrv, temporalErr = devserver.Start(ctx, devserver.Options{
			Ephemeral:        true,
			UIPort:           -1,
			SearchAttributes: workflows.SearchAttributeTypes,
			LogLevel:         "error",
		})
	})
	if temporalErr != nil {
		t.Fatalf("embedded Temporal: %v", temporalErr)
	}
	return temporalSrv
}

// Tokens of the tests: name → secret.
const (
	tokAdmin  = "admin-secret"  // every environment, every permission
	tokReader = "reader-secret" // every environment, read
	tokOther  = "other-secret"  // release + approve, only environment "elsewhere"
	tokSlow   = "slow-secret"   // read, one request per ~15 minutes
)

func testTokens(t testing.TB) *starter.Tokens {
	t.Helper()
	ts, err := starter.NewTokens(
		starter.TokenEntry{Name: "admin", SHA256: starter.HashToken(tokAdmin), Environments: []string{"*"},
			Permissions: []starter.Permission{starter.PermRead, starter.PermRelease, starter.PermApprove}, RateLimit: 10000, Burst: 10000},
		starter.TokenEntry{Name: "reader", SHA256: starter.HashToken(tokReader), Environments: []string{"*"},
			Permissions: []starter.Permission{starter.PermRead}, RateLimit: 10000, Burst: 10000},
		starter.TokenEntry{Name: "other", SHA256: starter.HashToken(tokOther), Environments: []string{"elsewhere"},
			Permissions: []starter.Permission{starter.PermRelease, starter.PermApprove}},
		starter.TokenEntry{Name: "slow", SHA256: starter.HashToken(tokSlow), Environments: []string{"*"},
			Permissions: []starter.Permission{starter.PermRead}, RateLimit: 0.001, Burst: 1},
	)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// api is the real router, served by httptest, against the embedded Temporal server.
type api struct {
	t       testing.TB
	srv     *httptest.Server
	tc      client.Client
	ns      string
	deploys string
}

func newAPI(t testing.TB, mod func(*starter.Config)) *api {
	t.Helper()
	ts := temporalServer(t)
	dir := t.TempDir()
	cfg := starter.Config{
		Client:         ts.Client(),
		Namespace:      ts.Namespace(),
		DeploymentsDir: dir,
		Tokens:         testTokens(t),
		WebUIURL:       "http://127.0.0.1:8233",
		QueryTimeout:   time.Second,
		EventPoll:      100 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := starter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &api{t: t, srv: hs, tc: ts.Client(), ns: ts.Namespace(), deploys: dir}
}

func (a *api) client(token string) *apiclient.Client { return apiclient.New(a.srv.URL, token) }

// do sends a request and returns status, headers and body.
func (a *api) do(method, path, token, ctype string, body []byte, hdr ...string) (int, http.Header, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// problem decodes a problem+json answer and checks its status.
func (a *api) problem(status int, hdr http.Header, body []byte, want int) apiclient.Problem {
	a.t.Helper()
	if status != want {
		a.t.Fatalf("status %d, want %d: %s", status, want, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/problem+json" {
		a.t.Fatalf("content type %q, want application/problem+json (%s)", ct, body)
	}
	var p apiclient.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		a.t.Fatalf("problem body %s: %v", body, err)
	}
	if p.Status != want || p.Title == "" {
		a.t.Fatalf("problem %+v", p)
	}
	return p
}

func (a *api) release(status int, body []byte) apiclient.Release {
	a.t.Helper()
	var r apiclient.Release
	if err := json.Unmarshal(body, &r); err != nil {
		a.t.Fatalf("release body (status %d) %s: %v", status, body, err)
	}
	return r
}

// terminateAll ends every release of env still running (tests without a worker leave them
// pending).
func (a *api) terminateAll(env string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := a.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Namespace: a.ns, PageSize: 100,
		Query: fmt.Sprintf("%s = '%s' AND ExecutionStatus = 'Running'", workflows.SAEnvironment, env),
	})
	if err != nil {
		a.t.Errorf("list releases of %s: %v", env, err)
		return
	}
	for _, e := range resp.GetExecutions() {
		if err := a.tc.TerminateWorkflow(ctx, e.GetExecution().GetWorkflowId(), "", "test cleanup"); err != nil {
			a.t.Logf("terminate %s: %v", e.GetExecution().GetWorkflowId(), err)
		}
	}
}

// waitVisible waits until the visibility query finds want executions.
func (a *api) waitVisible(query string, want int) []string {
	a.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := a.tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: a.ns, PageSize: 100, Query: query})
		cancel()
		if err != nil {
			a.t.Fatalf("list %q: %v", query, err)
		}
		var ids []string
		for _, e := range resp.GetExecutions() {
			ids = append(ids, e.GetExecution().GetWorkflowId())
		}
		if len(ids) == want {
			return ids
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("visibility query %q found %d executions %v, want %d", query, len(ids), ids, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func randomEnv(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%x", prefix, b)
}

// svc is one service of a test spec.
type svc struct {
	name, version string
	approval      bool
	env           map[string]string
}

// specYAML is a small, fast spec: one cluster on the machine's engine, the demo image.
func specYAML(env string, services ...svc) string {
	var b strings.Builder
	fmt.Fprintf(&b, `environment: %s
clusters:
  - name: c1
defaults:
  replicas: 1
  health:
    interval: 500ms
    timeout: 1s
    retries: 3
    deadline: 20s
  canary:
    replicas: 1
    soak: 1s
  rollout:
    batch_size: 1
  verification:
    interval: 100ms
    duration: 1s
    min_samples: 5
    max_error_rate: 0.05
services:
`, env)
	for _, s := range services {
		fmt.Fprintf(&b, `  - name: %s
    image: slipway/demo
    version: %s
    port: 8080
    health:
      http_path: /healthz
    verification:
      requests:
        - path: /
          expect_status: 200
`, s.name, s.version)
		if s.approval {
			b.WriteString("    canary:\n      replicas: 1\n      soak: 1s\n      approval:\n        required: true\n        timeout: 10m\n")
		}
		if len(s.env) > 0 {
			b.WriteString("    env:\n")
			for k, v := range s.env {
				fmt.Fprintf(&b, "      %s: %q\n", k, v)
			}
		}
	}
	return b.String()
}

// checkIn writes deployments/<env>.yaml.
func (a *api) checkIn(env, yaml string) {
	a.t.Helper()
	if err := os.WriteFile(filepath.Join(a.deploys, env+".yaml"), []byte(yaml), 0o644); err != nil {
		a.t.Fatal(err)
	}
}

func jsonDecode(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}
