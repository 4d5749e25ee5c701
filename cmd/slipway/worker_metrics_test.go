package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/workflows"
)

// TestWorkerMetricsAddr runs `slipway worker --metrics-addr 127.0.0.1:0` as its own process
// (the port: a free one the kernel picks, read from the line the worker prints), runs a Plan
// workflow on it, and scrapes its /metrics: the Temporal SDK's worker metrics for that
// workflow are there, and the scrape passes promtool check metrics.
func TestWorkerMetricsAddr(t *testing.T) {
	promtool := testenv.RequirePromtool(t)
	testenv.RequireDocker(t) // the Plan inspects the machine's engine
	bin := buildSlipway(t)
	srv := startQuietServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	w := exec.Command(bin, "worker", "--temporal-address", srv.HostPort(), "--temporal-namespace", srv.Namespace(),
		"--secrets-dir", "", "--metrics-addr", "127.0.0.1:0")
	w.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := w.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	w.Stderr = &stderr
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = w.Process.Signal(syscall.SIGTERM) // this test's own worker, by its pid
		done := make(chan struct{})
		go func() { _ = w.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = w.Process.Kill()
			<-done
		}
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "Slipway worker metrics on "); ok {
				urls <- u
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var metricsURL string
	select {
	case metricsURL = <-urls:
	case <-time.After(time.Minute):
		t.Fatalf("the worker printed no metrics address; stderr:\n%s", stderr.String())
	}
	if !strings.HasPrefix(metricsURL, "http://127.0.0.1:") || strings.HasSuffix(metricsURL, ":0/metrics") || !strings.HasSuffix(metricsURL, "/metrics") {
		t.Fatalf("metrics address %q", metricsURL)
	}

	// A workflow for the worker: the read-only Plan of an environment with nothing deployed.
	env := cliEnv(t)
	es, err := spec.Parse(env+".yaml", []byte(cliSpec(env, "1.0.0", false)))
	if err != nil {
		t.Fatal(err)
	}
	run, err := srv.Client().ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: workflows.PlanWorkflowID(env, "metrics-test"), TaskQueue: workflows.TaskQueue,
		WorkflowExecutionTimeout: time.Minute}, workflows.PlanWorkflowName, *es)
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.PlanResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("plan on the worker: %v\nworker stderr:\n%s", err, stderr.String())
	}

	// The SDK reports a completed workflow when its last task is done: poll for it.
	var text string
	for deadline := time.Now().Add(30 * time.Second); ; {
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", metricsURL, resp.StatusCode, err)
		}
		text = string(body)
		if v, ok := sample(text, "temporal_workflow_completed_total", map[string]string{"workflow_type": workflows.PlanWorkflowName}); ok && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no temporal_workflow_completed_total{workflow_type=%q} in the worker's scrape:\n%s", workflows.PlanWorkflowName, text)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, name := range []string{"temporal_workflow_task_execution_latency_seconds_count", "temporal_activity_execution_latency_seconds_count"} {
		if _, ok := sample(text, name, nil); !ok {
			t.Errorf("no %s in the worker's scrape", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	// Only /metrics is served there.
	if resp, err := http.Get(strings.TrimSuffix(metricsURL, "/metrics") + "/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / on the metrics address: %v %v", resp, err)
	} else {
		_ = resp.Body.Close()
	}
}
