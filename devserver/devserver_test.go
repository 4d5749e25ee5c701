package devserver_test

import (
	"context"
	"fmt"
	enumspb "go.temporal.io/api/enums/v1"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/workflows"
)

// waitForSignal is a small workflow that tags itself with a Slipway search attribute and
// waits for a signal, so it is still running when the server restarts.
func waitForSignal(ctx workflow.Context, env string) (string, error) {
	key := temporal.NewSearchAttributeKeyKeyword(workflows.SAEnvironment)
	if err := workflow.UpsertTypedSearchAttributes(ctx, key.ValueSet(env)); err != nil {
		return "", err
	}
	var msg string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &msg)
	return "got " + msg, nil
}

func startWorker(t *testing.T, c client.Client, queue string) worker.Worker {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(waitForSignal, workflow.RegisterOptions{Name: "waitForSignal"})
	if err := w.Start(); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	return w
}

func start(t *testing.T, opts devserver.Options) *devserver.Server {
	t.Helper()
	testenv.RequireTemporal(t)
	opts.UIPort = -1
	opts.SearchAttributes = workflows.SearchAttributeTypes
	opts.LogLevel = "fatal"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := devserver.Start(ctx, opts)
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	return s
}

// TestRestartKeepsWorkflows stops the server with a workflow in flight, starts it again on the
// same SQLite file, and checks the workflow is still listed, still findable by a Slipway search
// attribute, and completes.
func TestRestartKeepsWorkflows(t *testing.T) {
	db := filepath.Join(t.TempDir(), "temporal.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	s1 := start(t, devserver.Options{DBFile: db})
	if fi, err := os.Stat(db); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the SQLite file must be readable by its owner only: %v %v", fi.Mode(), err)
	}
	w := startWorker(t, s1.Client(), "restart-test")
	done, err := s1.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "finished", TaskQueue: "restart-test"}, "waitForSignal", "staging")
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Client().SignalWorkflow(ctx, "finished", "", "go", "one"); err != nil {
		t.Fatal(err)
	}
	if err := done.Get(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "in-flight", TaskQueue: "restart-test"}, "waitForSignal", "staging"); err != nil {
		t.Fatal(err)
	}
	waitForVisibility(ctx, t, s1.Client(), "SlipwayEnvironment = 'staging'", 2)
	w.Stop()
	port := portOf(t, s1.HostPort())
	s1.Stop()

	s2 := start(t, devserver.Options{DBFile: db, GRPCPort: port})
	defer s2.Stop()
	w2 := startWorker(t, s2.Client(), "restart-test")
	defer w2.Stop()
	waitForVisibility(ctx, t, s2.Client(), "SlipwayEnvironment = 'staging'", 2)
	waitForVisibility(ctx, t, s2.Client(), "SlipwayEnvironment = 'production'", 0)
	if err := s2.Client().SignalWorkflow(ctx, "in-flight", "", "go", "two"); err != nil {
		t.Fatalf("signal after restart: %v", err)
	}
	var got string
	if err := s2.Client().GetWorkflow(ctx, "in-flight", "").Get(ctx, &got); err != nil {
		t.Fatalf("workflow across restart: %v", err)
	}
	if got != "got two" {
		t.Fatalf("result = %q, want %q", got, "got two")
	}
}

func TestEphemeralServersAreIndependent(t *testing.T) {
	a := start(t, devserver.Options{Ephemeral: true})
	defer a.Stop()
	b := start(t, devserver.Options{Ephemeral: true})
	defer b.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := startWorker(t, a.Client(), "eph")
	defer w.Stop()
	if _, err := a.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "only-in-a", TaskQueue: "eph"}, "waitForSignal", "dev"); err != nil {
		t.Fatal(err)
	}
	waitForVisibility(ctx, t, a.Client(), "SlipwayEnvironment = 'dev'", 1)
	if _, err := b.Client().DescribeWorkflowExecution(ctx, "only-in-a", ""); err == nil {
		t.Fatal("a workflow started on one ephemeral server is visible on another")
	}
	if err := a.Client().TerminateWorkflow(ctx, "only-in-a", "", "test done"); err != nil {
		t.Fatal(err)
	}
}

func TestPortInUseIsAClearError(t *testing.T) {
	a := start(t, devserver.Options{Ephemeral: true})
	defer a.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, GRPCPort: portOf(t, a.HostPort()), UIPort: -1})
	if err == nil {
		t.Fatal("second server on a taken port started")
	}
	t.Logf("error: %v", err)
}

func waitForVisibility(ctx context.Context, t *testing.T, c client.Client, query string, want int) {
	t.Helper()
	var n int64
	for ctx.Err() == nil {
		resp, err := c.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err == nil {
			n = resp.GetCount()
			if n == int64(want) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("visibility %q: %d workflows, want %d", query, n, want)
}

func portOf(t *testing.T, hostPort string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWebUIWriteActionsOffByDefault: the Web UI has no authentication of its own, so by
// default its server refuses every write (terminate, cancel, reset, signal) with 405 while
// reads still work; UIWriteActions turns writes back on. The terminate goes through the
// UI's own API exactly as its button does (CSRF cookie from a GET, then the POST).
func TestWebUIWriteActionsOffByDefault(t *testing.T) {
	for _, write := range []bool{false, true} {
		t.Run(fmt.Sprintf("write=%t", write), func(t *testing.T) {
			testenv.RequireTemporal(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: 0, UIWriteActions: write,
				SearchAttributes: workflows.SearchAttributeTypes, LogLevel: "fatal"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			w := startWorker(t, s.Client(), "ui")
			defer w.Stop()
			if _, err := s.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "held", TaskQueue: "ui"}, "waitForSignal", "ui"); err != nil {
				t.Fatal(err)
			}
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
			var resp *http.Response
			for deadline := time.Now().Add(30 * time.Second); ; {
				resp, err = hc.Get(s.UIURL() + "/api/v1/settings")
				if err == nil && resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
					break
				}
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("UI settings: %v %v", resp, err)
			}
			resp.Body.Close()
			u, _ := url.Parse(s.UIURL())
			csrf := ""
			for _, c := range jar.Cookies(u) {
				if c.Name == "_csrf" {
					csrf = c.Value
				}
			}
			req, _ := http.NewRequest(http.MethodPost, s.UIURL()+"/api/v1/namespaces/default/workflows/held/terminate", strings.NewReader(`{"reason":"from the UI"}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-CSRF-TOKEN", csrf)
			resp, err = hc.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			d, err := s.Client().DescribeWorkflowExecution(ctx, "held", "")
			if err != nil {
				t.Fatal(err)
			}
			running := d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
			if !write && (resp.StatusCode != http.StatusMethodNotAllowed || !running) {
				t.Fatalf("write actions off: terminate answered %d, workflow running %t; want 405 and still running", resp.StatusCode, running)
			}
			if write && running {
				t.Fatalf("write actions on: terminate answered %d and the workflow still runs", resp.StatusCode)
			}
			if running {
				_ = s.Client().TerminateWorkflow(ctx, "held", "", "test done")
			}
		})
	}
}
