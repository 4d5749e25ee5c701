package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/devserver"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/worker"
	"github.com/slipwayhq/slipway/workflows"
)

// cliStack is the whole product in-process: embedded Temporal, the real worker on the
// machine's Docker engine, and the real API served by httptest.
type cliStack struct {
	url, token, deploys string
	// srv is the embedded Temporal server: tests act on workflows through its client the
	// way the Web UI or the Temporal CLI would.
	srv *devserver.Server
}

func newCLIStack(t *testing.T) *cliStack { t.Helper(); return newCLIStackUI(t, -1) }

// newCLIStackUI is newCLIStack with the Temporal Web UI on uiPort (0: a free port; -1: none).
func newCLIStackUI(t *testing.T, uiPort int) *cliStack {
	t.Helper()
	testenv.DemoImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := devserver.Start(ctx, devserver.Options{Ephemeral: true, UIPort: uiPort, SearchAttributes: workflows.SearchAttributeTypes, LogLevel: "error"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	d := dockerengine.NewDialer(dockerengine.Options{})
	w, err := worker.New(srv.Client(), d, worker.Options{Identity: "cli-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop(); _ = d.Close() })
	token := "cli-test-token"
	tokens, err := starter.NewTokens(starter.TokenEntry{Name: "ci", SHA256: starter.HashToken(token), Environments: []string{"*"},
		Permissions: []starter.Permission{starter.PermRelease, starter.PermApprove}, RateLimit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	api, err := starter.New(starter.Config{Client: srv.Client(), Namespace: srv.Namespace(), DeploymentsDir: dir, Tokens: tokens,
		EventPoll: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api.Handler())
	t.Cleanup(hs.Close)
	return &cliStack{url: hs.URL, token: token, deploys: dir, srv: srv}
}

// run runs the CLI with a fresh command tree, as main does, and returns the exit code.
func (s *cliStack) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	root := &cobra.Command{Use: "slipway", SilenceUsage: true, SilenceErrors: true}
	for _, c := range append(apiCommands(), newSchedulesCmd(), newLoadTestCmd()) {
		root.AddCommand(c)
	}
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	if len(args) > 0 && args[0] != "token" {
		args = append(args, "--url", s.url, "--token", s.token)
	}
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	code = 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		fmt.Fprintln(&errb, "slipway:", err)
	}
	return code, out.String(), errb.String()
}

// cliEnv is a fresh environment; its containers are removed after the test and the
// leftover check (testenv) proves it.
func cliEnv(t *testing.T) string {
	env := testenv.UniqueEnv(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, kind := range [][]string{{"ps", "-aq"}, {"network", "ls", "-q"}} {
			out, err := exec.CommandContext(ctx, "docker", append(kind, "--filter", "label="+engine.LabelEnvironment+"="+env)...).Output()
			if err != nil {
				t.Errorf("docker %v: %v", kind, err)
				continue
			}
			if ids := strings.Fields(string(out)); len(ids) > 0 {
				rm := []string{"rm", "-f", "-v"}
				if kind[0] == "network" {
					rm = []string{"network", "rm"}
				}
				if out, err := exec.CommandContext(ctx, "docker", append(rm, ids...)...).CombinedOutput(); err != nil {
					t.Errorf("docker %v: %v %s", rm, err, out)
				}
			}
		}
	})
	return env
}

func cliSpec(env, version string, approval bool) string {
	s := fmt.Sprintf(`environment: %s
clusters:
  - name: c1
defaults:
  replicas: 1
  health: {interval: 500ms, timeout: 1s, retries: 3, deadline: 15s}
  canary: {replicas: 1, soak: 1s}
  rollout: {batch_size: 1}
  verification: {interval: 100ms, duration: 1s, min_samples: 5, max_error_rate: 0.05}
services:
  - name: web
    image: slipway/demo
    version: %s
    port: 8080
    health: {http_path: /healthz}
    verification:
      requests: [{path: /, expect_status: 200}]
`, env, version)
	if approval {
		s += "    canary: {replicas: 1, soak: 1s, approval: {required: true, timeout: 10m}}\n"
	}
	return s
}

func writeCLISpec(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// releaseID finds the release id in the CLI's text output.
// releaseGoodThenBad releases the spec file as written (it must succeed), then with web set
// to bad-crash (it must be rolled back), and returns both release ids.
func releaseGoodThenBad(t *testing.T, s *cliStack, file string) (good, bad string) {
	t.Helper()
	code, out, errOut := s.run(t, "release", "-f", file, "--wait")
	if code != codeSucceeded {
		t.Fatalf("good release: exit %d\n%s\n%s", code, out, errOut)
	}
	good = cliReleaseID(t, out)
	code, out, errOut = s.run(t, "release", "-f", file, "--set", "web=bad-crash", "--wait")
	if code != codeRolledBack {
		t.Fatalf("bad release: exit %d\n%s\n%s", code, out, errOut)
	}
	return good, cliReleaseID(t, out)
}

func cliReleaseID(t *testing.T, text string) string {
	t.Helper()
	for _, f := range strings.Fields(text) {
		if strings.HasPrefix(f, "release-") {
			return f
		}
	}
	t.Fatalf("no release id in %q", text)
	return ""
}

// TestCLIExitCodes runs the CLI against real releases: one that succeeds (0), one that
// rolls back (2), one refused because its image does not exist (1), one that waits for
// approval (3) and is then approved (0), one that is aborted at its gate (rolled back: 2),
// and usage / API errors (1).
func TestCLIExitCodes(t *testing.T) {
	s := newCLIStack(t)
	env := cliEnv(t)
	dir := t.TempDir()

	good := writeCLISpec(t, dir, "good.yaml", cliSpec(env, "1.0.0", false))
	code, out, errOut := s.run(t, "release", "-f", good, "--wait", "--description", "first",
		"--build-url", "https://ci.example/job/web/1/", "--commit", "0123ABCD")
	if code != codeSucceeded || !strings.Contains(out, "succeeded") {
		t.Fatalf("good release: exit %d\n%s\n%s", code, out, errOut)
	}
	first := cliReleaseID(t, out)
	if !strings.Contains(errOut, "canary") {
		t.Errorf("no progress on stderr:\n%s", errOut)
	}

	// A crashing version rolls back: exit 2.
	code, out, errOut = s.run(t, "release", "-f", good, "--set", "web=bad-crash", "--wait")
	if code != codeRolledBack || !strings.Contains(out, "rolled_back") {
		t.Fatalf("bad release: exit %d\n%s\n%s", code, out, errOut)
	}

	// A version whose image is on no engine is refused before anything changes: exit 1,
	// and --wait prints the reason naming the image and the cluster.
	code, out, errOut = s.run(t, "release", "-f", good, "--set", "web=no-such-version", "--wait")
	if code != codeError || !strings.Contains(out, "refused") || !strings.Contains(out, "slipway/demo:no-such-version on cluster c1") ||
		!strings.Contains(errOut, "refused: images missing, nothing was changed") {
		t.Fatalf("release of a missing image: exit %d\n%s\n%s", code, out, errOut)
	}

	// A release that needs approval stops waiting at the gate: exit 3; approve --wait: 0.
	gated := writeCLISpec(t, dir, "gated.yaml", cliSpec(env, "1.1.0", true))
	code, out, errOut = s.run(t, "release", "-f", gated, "--wait")
	if code != codeWaiting || !strings.Contains(errOut, "awaiting approval") {
		t.Fatalf("gated release: exit %d\n%s\n%s", code, out, errOut)
	}
	gatedID := cliReleaseID(t, out)
	// Naming a gate that is not pending is refused with what is pending: the canary
	// approval is one gate per service, with no cluster.
	code, _, errOut = s.run(t, "approve", gatedID, "--cluster", "c1")
	if code != codeError || !strings.Contains(errOut, "cluster c1 is not awaiting approval (awaiting: web)") {
		t.Fatalf("approve --cluster of a gate that is not pending: exit %d\n%s", code, errOut)
	}
	code, out, errOut = s.run(t, "approve", gatedID, "--reason", "canary is fine", "--wait")
	if code != codeSucceeded || !strings.Contains(out, "approved by ci") {
		t.Fatalf("approve --wait: exit %d\n%s\n%s", code, out, errOut)
	}

	// Approving again is refused by the API: exit 1 with the reason.
	code, _, errOut = s.run(t, "approve", gatedID)
	if code != codeError || !strings.Contains(errOut, "409") {
		t.Fatalf("second approve: exit %d\n%s", code, errOut)
	}

	// Aborted at the gate: status --wait reports the rollback (exit 2).
	gated2 := writeCLISpec(t, dir, "gated2.yaml", cliSpec(env, "2.0.0", true))
	code, out, errOut = s.run(t, "release", "-f", gated2, "--wait", "-o", "json")
	if code != codeWaiting {
		t.Fatalf("second gated release: exit %d\n%s\n%s", code, out, errOut)
	}
	var rel apiclient.Release
	if err := json.Unmarshal([]byte(out), &rel); err != nil || rel.ID == "" || !rel.Running {
		t.Fatalf("--output json is not a release: %v\n%s", err, out)
	}
	if code, out, errOut = s.run(t, "abort", rel.ID, "--reason", "not today"); code != codeSucceeded {
		t.Fatalf("abort: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = s.run(t, "status", rel.ID, "--wait")
	if code != codeRolledBack || !strings.Contains(out, "aborted by ci") {
		t.Fatalf("status --wait after abort: exit %d\n%s\n%s", code, out, errOut)
	}

	// status, list, in text and JSON. status without --wait exits with the release's
	// outcome code too: 0 for the succeeded one, 2 for the rolled-back one.
	if code, out, _ = s.run(t, "status", first, "-o", "json"); code != 0 || !strings.Contains(out, `"outcome": "succeeded"`) {
		t.Fatalf("status -o json: exit %d\n%s", code, out)
	}
	if code, out, errOut = s.run(t, "status", rel.ID); code != codeRolledBack || !strings.Contains(errOut, "rolled back") {
		t.Fatalf("status of a rolled-back release: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, _ = s.run(t, "status", rel.ID, "-o", "json"); code != codeRolledBack || !strings.Contains(out, `"outcome": "rolled_back"`) {
		t.Fatalf("status -o json of a rolled-back release: exit %d\n%s", code, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errOut = s.run(t, "list", "--environment", env, "--outcome", "rolled_back", "-o", "json")
		var l apiclient.ReleaseList
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil {
			t.Fatalf("list: exit %d\n%s\n%s", code, out, errOut)
		}
		if len(l.Releases) == 2 {
			// The Web UI's truth: a rolled-back release is a Failed workflow (its status in
			// the failure), while the API's outcome and exit codes stay as they were.
			for _, r := range l.Releases {
				if r.ExecutionStatus != "Failed" {
					t.Errorf("rolled-back release %s: execution status %q, want Failed", r.ID, r.ExecutionStatus)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list --outcome rolled_back found %d releases, want 2", len(l.Releases))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, out, _ = s.run(t, "list", "--environment", env); code != 0 || !strings.Contains(out, first) {
		t.Fatalf("list: exit %d\n%s", code, out)
	}
	// The succeeded release completed, and its description (and build, commit) show.
	code, out, errOut = s.run(t, "list", "--environment", env, "--outcome", "succeeded", "-o", "json")
	var okList apiclient.ReleaseList
	if code != 0 || json.Unmarshal([]byte(out), &okList) != nil || len(okList.Releases) == 0 {
		t.Fatalf("list --outcome succeeded: exit %d\n%s\n%s", code, out, errOut)
	}
	found := false
	for _, r := range okList.Releases {
		if r.ExecutionStatus != "Completed" {
			t.Errorf("succeeded release %s: execution status %q, want Completed", r.ID, r.ExecutionStatus)
		}
		if r.ID == first {
			found = true
			if r.Description != "first" || r.BuildURL != "https://ci.example/job/web/1/" || r.Commit != "0123abcd" {
				t.Errorf("the first release in the list: %+v", r)
			}
		}
	}
	if !found {
		t.Errorf("list --outcome succeeded does not list %s:\n%s", first, out)
	}
	if code, out, _ = s.run(t, "status", first); code != codeSucceeded || !strings.Contains(out, "build: https://ci.example/job/web/1/") || !strings.Contains(out, "commit: 0123abcd") {
		t.Errorf("status of the succeeded release: exit %d\n%s", code, out)
	}
	if code, _, errOut = s.run(t, "release", "-f", good, "--commit", "not-a-commit"); code != codeError || !strings.Contains(errOut, "commit") {
		t.Errorf("a bad --commit: exit %d %s", code, errOut)
	}

	// Usage errors: exit 1.
	if code, _, errOut = s.run(t, "release"); code != codeError {
		t.Fatalf("release without a spec: exit %d %s", code, errOut)
	}
	if code, _, errOut = s.run(t, "release", "-f", good, "--set", "web"); code != codeError || !strings.Contains(errOut, "service=version") {
		t.Fatalf("bad --set: exit %d %s", code, errOut)
	}
	// An invalid spec: exit 1, every problem with its line.
	bad := writeCLISpec(t, dir, "bad.yaml", strings.Replace(cliSpec(env, "1.0.0", false), "    port: 8080\n", "    port: eighty\n", 1))
	if code, _, errOut = s.run(t, "release", "-f", bad); code != codeError || !strings.Contains(errOut, "bad.yaml:14") || !strings.Contains(errOut, "services[0].port") {
		t.Fatalf("invalid spec: exit %d\n%s", code, errOut)
	}
}

func TestOutcomeExitCodes(t *testing.T) {
	for _, tc := range []struct {
		rel  apiclient.Release
		want int
	}{
		{apiclient.Release{Outcome: workflows.OutcomeSucceeded}, codeSucceeded},
		{apiclient.Release{Outcome: workflows.OutcomeRolledBack}, codeRolledBack},
		{apiclient.Release{Outcome: workflows.OutcomeFailed}, codeFailed},
		{apiclient.Release{Outcome: workflows.OutcomeRefused}, codeError},
		{apiclient.Release{Outcome: workflows.OutcomeTerminated, Status: &workflows.ReleaseStatus{Repair: &workflows.Repair{Outcome: workflows.OutcomeRolledBack}}}, codeRolledBack},
		{apiclient.Release{Outcome: workflows.OutcomeTerminated, Status: &workflows.ReleaseStatus{Repair: &workflows.Repair{Outcome: workflows.OutcomeFailed}}}, codeFailed},
		{apiclient.Release{Outcome: workflows.OutcomeTerminated}, codeFailed},
		{apiclient.Release{Outcome: workflows.OutcomeTerminated, Status: &workflows.ReleaseStatus{Repair: &workflows.Repair{Outcome: workflows.OutcomeSucceeded}}}, codeSucceeded},
		{apiclient.Release{Running: true, Phase: workflows.PhaseAwaitingApproval}, codeWaiting},
		{apiclient.Release{Running: true, Phase: workflows.PhaseRollingOut, Status: &workflows.ReleaseStatus{Paused: true}}, codeWaiting},
		{apiclient.Release{Running: true, Phase: workflows.PhaseRollingOut}, codeWaiting},
	} {
		err := outcomeExit(&tc.rel)
		code := 0
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		} else if err != nil {
			code = 1
		}
		if code != tc.want {
			t.Errorf("%+v: exit %d, want %d", tc.rel, code, tc.want)
		}
	}
}
