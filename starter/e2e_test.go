package starter_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/converter"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/engine"
	"github.com/slipwayhq/slipway/internal/dockerengine"
	"github.com/slipwayhq/slipway/internal/testenv"
	"github.com/slipwayhq/slipway/worker"
	"github.com/slipwayhq/slipway/workflows"
)

// The real worker (workflows + activities on the machine's Docker engine), shared by the
// tests that need releases to run.
var (
	workerMu     sync.Mutex
	theWorker    sdkworker.Worker
	workerDialer *dockerengine.Dialer
)

func startWorker(t testing.TB) {
	t.Helper()
	testenv.DemoImages(t)
	ts := temporalServer(t)
	workerMu.Lock()
	defer workerMu.Unlock()
	if theWorker != nil {
		return
	}
	d := dockerengine.NewDialer(dockerengine.Options{})
	w, err := worker.New(ts.Client(), d, worker.Options{Identity: "starter-test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	theWorker, workerDialer = w, d
}

func stopWorker() {
	workerMu.Lock()
	defer workerMu.Unlock()
	if theWorker != nil {
		theWorker.Stop()
		_ = workerDialer.Close()
		theWorker = nil
	}
}

// removeEnv removes what the releases of env left running (a succeeded release leaves its
// service running, which is the point); registered after testenv.UniqueEnv, it runs before
// the leftover check.
func removeEnv(t testing.TB, env string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "docker", "ps", "-aq", "--filter", "label="+engine.LabelEnvironment+"="+env).Output()
		if err != nil {
			t.Errorf("list containers of %s: %v", env, err)
			return
		}
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			if out, err := exec.CommandContext(ctx, "docker", append([]string{"rm", "-f", "-v"}, ids...)...).CombinedOutput(); err != nil {
				t.Errorf("remove containers of %s: %v %s", env, err, out)
			}
		}
		out, err = exec.CommandContext(ctx, "docker", "network", "ls", "-q", "--filter", "label="+engine.LabelEnvironment+"="+env).Output()
		if err != nil {
			t.Errorf("list networks of %s: %v", env, err)
			return
		}
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			if out, err := exec.CommandContext(ctx, "docker", append([]string{"network", "rm"}, ids...)...).CombinedOutput(); err != nil {
				t.Errorf("remove networks of %s: %v %s", env, err, out)
			}
		}
	})
}

// e2eEnv is a fresh environment whose containers are removed (and checked) at the end.
func e2eEnv(t *testing.T) string {
	t.Helper()
	env := testenv.UniqueEnv(t)
	removeEnv(t, env)
	return env
}

// followAll collects every event of a release's stream until its outcome.
func followAll(t *testing.T, c *apiclient.Client, id string, timeout time.Duration, stop func(apiclient.StreamEvent) bool) (phases []workflows.Event, final *apiclient.Release) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	errStop := errors.New("stop")
	err := c.Follow(ctx, id, 0, func(ev apiclient.StreamEvent) error {
		switch ev.Type {
		case apiclient.EventPhase:
			phases = append(phases, *ev.Event)
		case apiclient.EventOutcome:
			final = ev.Release
		}
		if stop != nil && stop(ev) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		t.Fatalf("follow %s: %v (after %d events)", id, err, len(phases))
	}
	return phases, final
}

func TestReleaseEndToEnd(t *testing.T) {
	env := e2eEnv(t)
	a := newAPI(t, nil)
	startWorker(t)
	c := a.client(tokAdmin)
	ctx := context.Background()
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))

	// 1. The first release, with ?wait: the answer is the final outcome.
	status, _, body := a.do("POST", "/v1/releases?wait=3m&description=first", tokAdmin, yamlCT, []byte(specYAML(env, svc{name: "web", version: "1.0.0"})))
	first := a.release(status, body)
	if status != 200 || first.Running || first.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("first release with ?wait: %d %s", status, body)
	}
	if first.Status == nil || first.Status.TriggeredBy != "admin" || len(first.Status.Services) != 1 || first.Status.Services[0].ToVersion != "1.0.0" {
		t.Fatalf("first release status: %+v", first.Status)
	}

	// 2. The second release, followed over SSE: every phase change, in order, then the outcome.
	second, err := c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"web": "1.1.0"}, BuildURL: "http://ci/42", Commit: "abc1234"}})
	if err != nil {
		t.Fatal(err)
	}
	phases, final := followAll(t, c, second.ID, 3*time.Minute, nil)
	if final == nil || final.Outcome != workflows.OutcomeSucceeded || final.Running {
		t.Fatalf("second release outcome: %+v", final)
	}
	if len(phases) == 0 || len(phases) != len(final.Status.Events) {
		t.Fatalf("stream delivered %d events, the release recorded %d", len(phases), len(final.Status.Events))
	}
	seen := map[workflows.Phase]bool{}
	for i, ev := range phases {
		if ev.Seq != final.Status.Events[i].Seq || ev.Message != final.Status.Events[i].Message {
			t.Fatalf("event %d: streamed %+v, recorded %+v", i, ev, final.Status.Events[i])
		}
		if i > 0 && ev.Seq <= phases[i-1].Seq {
			t.Fatalf("events out of order: %d after %d", ev.Seq, phases[i-1].Seq)
		}
		seen[ev.Phase] = true
	}
	for _, p := range []workflows.Phase{workflows.PhaseCanary, workflows.PhaseRollingOut, workflows.PhaseDone} {
		if !seen[p] {
			t.Errorf("no %s event in the stream (saw %v)", p, seen)
		}
	}
	if last := phases[len(phases)-1]; last.Phase != workflows.PhaseDone {
		t.Errorf("last event %+v is not done", last)
	}
	// Resuming after a seq delivers only what follows.
	rest, _ := followAll(t, c, second.ID, 30*time.Second, nil)
	if len(rest) != len(phases) {
		t.Fatalf("a second follow from the start got %d events, want %d", len(rest), len(phases))
	}
	if err := c.Follow(ctx, second.ID, phases[len(phases)-2].Seq, func(ev apiclient.StreamEvent) error {
		if ev.Type == apiclient.EventPhase && ev.Event.Seq != phases[len(phases)-1].Seq {
			return fmt.Errorf("resumed stream delivered seq %d", ev.Event.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// 3. GET and list agree.
	got, err := c.GetRelease(ctx, second.ID, 0)
	if err != nil || got.Outcome != workflows.OutcomeSucceeded || got.Status.Services[0].FromVersion != "1.0.0" {
		t.Fatalf("GET after the end: %v %+v", err, got)
	}
	a.waitVisible(fmt.Sprintf("%s = '%s' AND %s = 'succeeded'", workflows.SAEnvironment, env, workflows.SAOutcome), 2)
	l, err := c.ListReleases(ctx, apiclient.ListOptions{Environment: env, Outcome: "succeeded"})
	if err != nil || len(l.Releases) != 2 || l.Releases[0].ID != second.ID {
		t.Fatalf("list succeeded: %v %+v", err, l)
	}

	// 4. What runs where, and a plan against it.
	var view apiclient.EnvironmentView
	if err := c.Environment(ctx, env, &view); err != nil {
		t.Fatal(err)
	}
	if len(view.Live.Clusters) != 1 || !runsVersion(view.Live.Clusters[0], "web", "1.1.0") {
		t.Fatalf("environment view: %+v", view.Live)
	}
	if changed := view.Drift.Changed(); len(changed) != 1 || changed[0] != "web" {
		t.Fatalf("drift from the checked-in 1.0.0 spec: %+v", view.Drift)
	}
	var plan workflows.PlanResult
	if err := c.Plan(ctx, []byte(specYAML(env, svc{name: "web", version: "2.0.0"})), "p.yaml", nil, &plan); err != nil {
		t.Fatal(err)
	}
	if sp := plan.Plan.Service("web"); sp == nil || sp.Action != workflows.ActionUpdate || sp.FromVersion != "1.1.0" || sp.ToVersion != "2.0.0" {
		t.Fatalf("plan: %+v", plan.Plan)
	}

	// 5. Roll the second release back: a new, audited, fast-tracked release of what it
	// replaced (1.0.0), started by the caller; repeating the POST returns the same one.
	rb, err := c.Rollback(ctx, second.ID, "test", "")
	if err != nil {
		t.Fatal(err)
	}
	if rb.ID == second.ID || !strings.HasPrefix(rb.ID, "release-"+env+"-rb") {
		t.Fatalf("rollback release id %q", rb.ID)
	}
	again, err := c.Rollback(ctx, second.ID, "twice", "")
	if err != nil || again.ID != rb.ID || !again.Existing {
		t.Fatalf("second rollback POST: %v %+v", err, again)
	}
	in := startInput(t, a, rb.ID)
	if !in.FastTrack || in.RollbackOf != second.ID || in.TriggeredBy != "admin" || len(in.Services) != 1 ||
		in.Services[0] != "web" || in.Spec.Services[0].Version != "1.0.0" || in.Overrides["web"] != "1.0.0" ||
		!strings.Contains(in.Description, second.ID) {
		t.Fatalf("rollback release input: %+v", in)
	}
	if _, err := c.GetRelease(ctx, rb.ID, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// TestRollbackRestoresTheReplacedVersion: after 1.0.0 then 1.1.0, POST rollback of the
// second release brings 1.0.0 back into traffic.
func TestRollbackRestoresTheReplacedVersion(t *testing.T) {
	env := e2eEnv(t)
	a := newAPI(t, nil)
	startWorker(t)
	c := a.client(tokAdmin)
	ctx := context.Background()
	var last *apiclient.Release
	for _, v := range []string{"1.0.0", "1.1.0"} {
		r, err := c.StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: v})), SpecName: "s.yaml", Wait: 3 * time.Minute})
		if err != nil || r.Outcome != workflows.OutcomeSucceeded {
			t.Fatalf("release %s: %v %+v", v, err, r)
		}
		last = r
	}
	rb, err := c.Rollback(ctx, last.ID, "bring 1.0.0 back", "")
	if err != nil {
		t.Fatal(err)
	}
	done, err := c.GetRelease(ctx, rb.ID, 3*time.Minute)
	if err != nil || done.Outcome != workflows.OutcomeSucceeded || done.Status.Services[0].ToVersion != "1.0.0" {
		t.Fatalf("rollback release: %v %+v", err, done)
	}
	var view apiclient.EnvironmentView
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))
	if err := c.Environment(ctx, env, &view); err != nil || !runsVersion(view.Live.Clusters[0], "web", "1.0.0") {
		t.Fatalf("after the rollback: %v %+v", err, view.Live)
	}
}

// startInput reads the input a release was started with, from its history.
func startInput(t *testing.T, a *api, id string) workflows.ReleaseInput {
	t.Helper()
	it := a.tc.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := it.Next()
	if err != nil {
		t.Fatal(err)
	}
	var in workflows.ReleaseInput
	if err := converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &in); err != nil {
		t.Fatal(err)
	}
	return in
}

func runsVersion(cs workflows.ClusterState, service, version string) bool {
	for _, s := range cs.Services {
		if s.Service != service {
			continue
		}
		for _, v := range s.Versions {
			if v.Version == version && v.InTraffic > 0 {
				return true
			}
		}
	}
	return false
}

func TestApprovalGateThroughTheAPI(t *testing.T) {
	env := e2eEnv(t)
	a := newAPI(t, nil)
	startWorker(t)
	c := a.client(tokAdmin)
	ctx := context.Background()
	rel, err := c.StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0", approval: true})), SpecName: "gate.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	atGate := func(ev apiclient.StreamEvent) bool {
		if ev.Type != apiclient.EventStatus {
			return false
		}
		for _, s := range ev.Status.Services {
			if s.Phase == workflows.PhaseAwaitingApproval {
				return true
			}
		}
		return ev.Status.Phase == workflows.PhaseAwaitingApproval
	}
	if _, final := followAll(t, c, rel.ID, 2*time.Minute, atGate); final != nil {
		t.Fatalf("the release ended without waiting for approval: %+v", final)
	}
	// Too narrow a token, then a decision the release refuses, then the approval.
	status, hdr, body := a.do("POST", "/v1/releases/"+rel.ID+"/approve", tokReader, "", nil)
	a.problem(status, hdr, body, 403)
	status, hdr, body = a.do("POST", "/v1/releases/"+rel.ID+"/resume", tokAdmin, "", nil)
	p := a.problem(status, hdr, body, 409)
	if !strings.Contains(p.Detail, "rejected") {
		t.Errorf("rejected update detail: %q", p.Detail)
	}
	// Pause and resume reach the release (and are recorded with their actor).
	paused, err := c.Decide(ctx, rel.ID, apiclient.ActionPause, "lunch")
	if err != nil || paused.Status == nil || !paused.Status.Paused {
		t.Fatalf("pause: %v %+v", err, paused)
	}
	_, err = c.Decide(ctx, rel.ID, apiclient.ActionPause, "twice")
	if p := (*apiclient.Problem)(nil); !errors.As(err, &p) || p.Status != 409 || !strings.Contains(p.Detail, "already paused") {
		t.Fatalf("second pause: %v", err)
	}
	resumed, err := c.Decide(ctx, rel.ID, apiclient.ActionResume, "back")
	if err != nil || resumed.Status.Paused {
		t.Fatalf("resume: %v %+v", err, resumed)
	}
	ok, err := c.Decide(ctx, rel.ID, apiclient.ActionApprove, "looks good")
	if err != nil {
		t.Fatal(err)
	}
	if ok.ID != rel.ID {
		t.Fatalf("approve answer %+v", ok)
	}
	final, err := c.GetRelease(ctx, rel.ID, 3*time.Minute)
	if err != nil || final.Outcome != workflows.OutcomeSucceeded || final.Status.ApprovedBy != "admin" {
		t.Fatalf("after approval: %v %+v", err, final)
	}
	_, err = c.Decide(ctx, rel.ID, apiclient.ActionApprove, "again")
	var pr *apiclient.Problem
	if !errors.As(err, &pr) || pr.Status != 409 {
		t.Fatalf("approving an ended release: %v", err)
	}
}

// benchEnv is e2eEnv for benchmarks.
func benchEnv(b *testing.B) string {
	b.Helper()
	env := testenv.UniqueEnv(b)
	removeEnv(b, env)
	return env
}
