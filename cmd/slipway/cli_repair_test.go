package main

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/workflows"
)

// repairSpec is cliSpec's web with two replicas on two clusters (both on this machine's
// engine), so a release spends seconds in its rollout.
func repairSpec(env, version string, approval bool) string {
	s := cliSpec(env, version, approval)
	for _, r := range [][2]string{
		{"  - name: c1\n", "  - name: c1\n  - name: c2\n"},
		{"  replicas: 1\n", "  replicas: 2\n"},
		{"duration: 1s, min_samples: 5, max_error_rate: 0.05}", "duration: 2s, min_samples: 5, max_error_rate: 0.05, bake: 1s}"},
	} {
		if !strings.Contains(s, r[0]) {
			panic("cliSpec changed: " + r[0])
		}
		s = strings.Replace(s, r[0], r[1], 1)
	}
	return s
}

// inTraffic lists, per cluster, the versions of web's running replicas that carry the
// service's network alias (what its clients reach), and every web container's version.
func inTraffic(t *testing.T, env string) (traffic map[string][]string, all map[string][]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+engine.LabelEnvironment+"="+env,
		"--filter", "label="+engine.LabelService+"=web").Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	traffic, all = map[string][]string{}, map[string][]string{}
	for _, id := range strings.Fields(string(out)) {
		f := fmt.Sprintf(`{{index .Config.Labels "%s"}} {{index .Config.Labels "%s"}} {{.State.Running}} {{range $n, $e := .NetworkSettings.Networks}}{{range $e.Aliases}}{{.}},{{end}}{{end}}`,
			engine.LabelCluster, engine.LabelVersion)
		b, err := exec.CommandContext(ctx, "docker", "inspect", "-f", f, id).Output()
		if err != nil {
			continue // removed meanwhile
		}
		p := strings.Fields(string(b))
		if len(p) < 3 {
			continue
		}
		all[p[0]] = append(all[p[0]], p[1])
		if p[2] == "true" && len(p) > 3 && strings.Contains(","+p[3], ",web,") {
			traffic[p[0]] = append(traffic[p[0]], p[1])
		}
	}
	for _, m := range []map[string][]string{traffic, all} {
		for _, v := range m {
			sort.Strings(v)
		}
	}
	return traffic, all
}

// releaseOverRunning releases web 1.0.0 on a fresh stack and environment, then starts a
// release of 1.1.0 without waiting: the stack, the environment, the 1.1.0 spec, its id.
func releaseOverRunning(t *testing.T) (s *cliStack, env, v2, id string) {
	t.Helper()
	s, env = newCLIStack(t), cliEnv(t)
	dir := t.TempDir()
	v1 := writeCLISpec(t, dir, "v1.yaml", repairSpec(env, "1.0.0", false))
	if code, out, errOut := s.run(t, "release", "-f", v1, "--wait"); code != codeSucceeded {
		t.Fatalf("first release: exit %d\n%s\n%s", code, out, errOut)
	}
	v2 = writeCLISpec(t, dir, "v2.yaml", repairSpec(env, "1.1.0", false))
	code, out, errOut := s.run(t, "release", "-f", v2)
	if code != codeWaiting && code != codeSucceeded {
		t.Fatalf("second release: exit %d\n%s\n%s", code, out, errOut)
	}
	return s, env, v2, cliReleaseID(t, out)
}

// TestTerminatedReleaseIsRepaired terminates a release in the middle of its rollout through
// the Temporal API, as the Web UI's Terminate button does, and checks that Slipway repairs
// it: each cluster serves the previous version only, no replica of the new one is left, the
// API answers running false with outcome terminated and what was repaired, the CLI's
// status --wait exits 2 (rolled back), the event stream ends with that outcome, and the lock
// is free for the next release.
func TestTerminatedReleaseIsRepaired(t *testing.T) {
	s, env, v2, id := releaseOverRunning(t)
	c := apiclient.New(s.url, s.token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var code int
	var out, errOut string

	// Follow the event stream from the start, as a dashboard would.
	streamDone := make(chan *apiclient.Release, 1)
	go func() {
		var last *apiclient.Release
		_ = c.Follow(ctx, id, 0, func(ev apiclient.StreamEvent) error {
			if ev.Type == apiclient.EventOutcome {
				last = ev.Release
			}
			return nil
		})
		streamDone <- last
	}()

	// Mid-rollout: the canary passed and at least one replica of 1.1.0 is in traffic
	// somewhere, while the release is still running.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rel, err := c.GetRelease(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !rel.Running {
			t.Fatalf("release ended before it could be terminated mid-rollout: %s %s", rel.Outcome, rel.Reason)
		}
		if rel.Phase == workflows.PhaseRollingOut || rel.Phase == workflows.PhaseVerifying {
			// A batch went through on c1: one previous replica retired, a new one serves.
			traffic, _ := inTraffic(t, env)
			if n := strings.Count(strings.Join(traffic["c1"], " "), "1.0.0"); n == 1 && strings.Contains(strings.Join(traffic["c1"], " "), "1.1.0") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never mid-rollout: phase %s", rel.Phase)
		}
		time.Sleep(100 * time.Millisecond)
	}
	traffic, _ := inTraffic(t, env)
	t.Logf("terminating %s with %v in traffic", id, traffic)
	if err := s.srv.Client().TerminateWorkflow(ctx, id, "", "clicked Terminate in the Web UI"); err != nil {
		t.Fatal(err)
	}

	// status --wait follows the repair and exits 2: rolled back.
	code, out, errOut = s.run(t, "status", id, "--wait")
	if code != codeRolledBack || !strings.Contains(out+errOut, "terminated") {
		t.Fatalf("status --wait of a terminated release: exit %d\n%s\n%s", code, out, errOut)
	}
	rel, err := c.GetRelease(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if rel.Running || rel.Outcome != workflows.OutcomeTerminated || rel.Status == nil || rel.Status.Repair == nil ||
		rel.Status.Repair.Outcome != workflows.OutcomeRolledBack || !strings.Contains(rel.Reason, "clicked Terminate in the Web UI") {
		t.Fatalf("API answer after the repair: running %v, outcome %q, reason %q, repair %+v", rel.Running, rel.Outcome, rel.Reason, rel.Status)
	}
	if code, _, errOut = s.run(t, "status", id); code != codeRolledBack {
		t.Fatalf("status (no --wait) of a repaired release: exit %d\n%s", code, errOut)
	}
	select {
	case last := <-streamDone:
		if last == nil || last.Outcome != workflows.OutcomeTerminated || last.Running {
			t.Fatalf("event stream ended without the terminated outcome: %+v", last)
		}
	case <-time.After(time.Minute):
		t.Fatal("the event stream did not end after the repair")
	}

	// The engines: one version per cluster in traffic, the previous one, at full count,
	// and no replica of 1.1.0 left anywhere.
	traffic, all := inTraffic(t, env)
	for _, cl := range []string{"c1", "c2"} {
		if got := strings.Join(traffic[cl], " "); got != "1.0.0 1.0.0" {
			t.Errorf("cluster %s serves %q after the repair, want 1.0.0 twice (all containers: %v)", cl, got, all[cl])
		}
		for _, v := range all[cl] {
			if v == "1.1.0" {
				t.Errorf("a 1.1.0 container is left on %s: %v", cl, all[cl])
			}
		}
	}

	// The lock was freed by the repair: the next release takes it and succeeds.
	d, err := s.srv.Client().DescribeWorkflowExecution(ctx, workflows.LockWorkflowID(env, "web"), "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("the lock of web after the repair: %v %v", err, d.GetWorkflowExecutionInfo().GetStatus())
	}
	if code, out, errOut = s.run(t, "release", "-f", v2, "--wait"); code != codeSucceeded {
		t.Fatalf("release after the repair: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestFailedRollbackKeepsTheServiceLocked makes a rollback that cannot finish (the previous
// replicas were removed by hand while the release waited at its gate), and checks that the
// service stays locked: the next release is refused with a message naming the failed release
// and what runs where, until an operator resolves it (CLI), after which a release goes through.
func TestFailedRollbackKeepsTheServiceLocked(t *testing.T) {
	s := newCLIStack(t)
	env := cliEnv(t)
	dir := t.TempDir()
	v1 := writeCLISpec(t, dir, "v1.yaml", repairSpec(env, "1.0.0", false))
	if code, out, errOut := s.run(t, "release", "-f", v1, "--wait"); code != codeSucceeded {
		t.Fatalf("first release: exit %d\n%s\n%s", code, out, errOut)
	}
	gated := writeCLISpec(t, dir, "gated.yaml", repairSpec(env, "1.1.0", true))
	code, out, errOut := s.run(t, "release", "-f", gated, "--wait")
	if code != codeWaiting {
		t.Fatalf("gated release: exit %d\n%s\n%s", code, out, errOut)
	}
	id := cliReleaseID(t, out)
	// Someone removes the previous version's replicas by hand: the rollback cannot put
	// them back.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ids, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+engine.LabelEnvironment+"="+env,
		"--filter", "label="+engine.LabelVersion+"=1.0.0").Output()
	if err != nil || len(strings.Fields(string(ids))) == 0 {
		t.Fatalf("previous replicas: %v %q", err, ids)
	}
	if b, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f"}, strings.Fields(string(ids))...)...).CombinedOutput(); err != nil {
		t.Fatalf("docker rm: %v %s", err, b)
	}
	if code, out, errOut = s.run(t, "abort", id, "--reason", "test"); code != codeSucceeded {
		t.Fatalf("abort: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut = s.run(t, "status", id, "--wait"); code != codeFailed {
		t.Fatalf("status --wait of a failed rollback: exit %d\n%s\n%s", code, out, errOut)
	}

	// The next release is refused at once (409), naming the failed release and what runs.
	v3 := writeCLISpec(t, dir, "v3.yaml", repairSpec(env, "1.0.0", false))
	var refused string
	deadline := time.Now().Add(30 * time.Second) // visibility shows the held lock within a second or so
	for {
		code, out, errOut = s.run(t, "release", "-f", v3, "--wait")
		refused = out + errOut
		if code != codeSucceeded && strings.Contains(refused, id) {
			break
		}
		if code == codeSucceeded || time.Now().After(deadline) {
			t.Fatalf("release of a service left locked by a failed rollback: exit %d\n%s", code, refused)
		}
		time.Sleep(time.Second)
	}
	for _, want := range []string{"locked", "slipway resolve " + id, "running:", "1.1.0"} {
		if !strings.Contains(refused, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, refused)
		}
	}

	// resolve needs a reason; with one it frees the lock and says who and why.
	if code, _, errOut = s.run(t, "resolve", id); code != codeError || !strings.Contains(errOut, "--reason") {
		t.Fatalf("resolve without a reason: exit %d\n%s", code, errOut)
	}
	code, out, errOut = s.run(t, "resolve", id, "--reason", "restarted 1.0.0 by hand")
	if code != codeSucceeded || !strings.Contains(out, workflows.LockWorkflowID(env, "web")) || !strings.Contains(out, "resolved by ci: restarted 1.0.0 by hand") {
		t.Fatalf("resolve: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out2, errOut := s.run(t, "resolve", id, "--reason", "again"); code != codeError || !strings.Contains(errOut, "holds no lock") {
		t.Fatalf("second resolve: exit %d\n%s\n%s\nfirst: %s", code, out2, errOut, out)
	}
	// The audit: the lock's history records the resolve update with the actor and reason.
	h := s.srv.Client().GetWorkflowHistory(ctx, workflows.LockWorkflowID(env, "web"), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var audited bool
	for h.HasNext() {
		ev, err := h.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowExecutionUpdateAcceptedEventAttributes(); a != nil && a.GetAcceptedRequest().GetInput().GetName() == workflows.UpdateResolve {
			audited = strings.Contains(a.GetAcceptedRequest().GetInput().GetArgs().String(), "restarted 1.0.0 by hand")
		}
	}
	if !audited {
		t.Error("the lock's history has no resolve update with the reason")
	}
	if code, out, errOut = s.run(t, "release", "-f", v3, "--wait"); code != codeSucceeded {
		t.Fatalf("release after resolve: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestResetReleaseIsRepaired resets a release mid-rollout to its first workflow task, as the
// Web UI's Reset does: the run that was rolling out is closed, a new run starts from the
// beginning. Slipway repairs the closed run (the new one is not continued: it is terminated,
// or refused by the locks) and reports the release terminated and rolled back.
func TestResetReleaseIsRepaired(t *testing.T) {
	s, env, v2, id := releaseOverRunning(t)
	c := apiclient.New(s.url, s.token)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		traffic, _ := inTraffic(t, env)
		if strings.Contains(strings.Join(traffic["c1"], " "), "1.1.0") {
			break
		}
		if rel, err := c.GetRelease(ctx, id, 0); err != nil || !rel.Running || time.Now().After(deadline) {
			t.Fatalf("never had 1.1.0 in traffic: %v %+v", err, rel)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The first workflow task's completion is the reset point the Web UI offers first.
	var first int64
	h := s.srv.Client().GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for h.HasNext() && first == 0 {
		ev, err := h.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED {
			first = ev.GetEventId()
		}
	}
	if _, err := s.srv.Client().ResetWorkflowExecution(ctx, &workflowservice.ResetWorkflowExecutionRequest{
		Namespace: s.srv.Namespace(), WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id},
		Reason: "reset from the Web UI", WorkflowTaskFinishEventId: first, RequestId: id + "-reset",
	}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := s.run(t, "status", id, "--wait")
	if code != codeRolledBack || !strings.Contains(out+errOut, "terminated") {
		t.Fatalf("status --wait of a reset release: exit %d\n%s\n%s", code, out, errOut)
	}
	traffic, all := inTraffic(t, env)
	for _, cl := range []string{"c1", "c2"} {
		if got := strings.Join(traffic[cl], " "); got != "1.0.0 1.0.0" || strings.Contains(strings.Join(all[cl], " "), "1.1.0") {
			t.Errorf("cluster %s after the repair of a reset: in traffic %q, containers %v", cl, got, all[cl])
		}
	}
	// No run of the release is left running, and the lock is free.
	d, err := s.srv.Client().DescribeWorkflowExecution(ctx, id, "")
	if err != nil || d.GetWorkflowExecutionInfo().GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("the release after the repair: %v %v", err, d.GetWorkflowExecutionInfo().GetStatus())
	}
	if code, out, errOut = s.run(t, "release", "-f", v2, "--wait"); code != codeSucceeded {
		t.Fatalf("release after the repair: exit %d\n%s\n%s", code, out, errOut)
	}
}
