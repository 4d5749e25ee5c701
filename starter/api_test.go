package starter_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

const yamlCT = "application/yaml"

// These tests run the real router against the embedded Temporal server with no worker:
// releases they start stay pending (in flight), which is what the conflict and idempotency
// checks need. Tests that need releases to run are in e2e_test.go.

func TestBadSpecIs400NamingFieldAndLine(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("bad")
	spec := specYAML(env, svc{name: "web", version: "1.0.0"})
	spec = strings.Replace(spec, "  replicas: 1\n", "  replicas: many\n", 1) // line 5
	status, hdr, body := a.do("POST", "/v1/releases?filename=bad.yaml", tokAdmin, yamlCT, []byte(spec))
	p := a.problem(status, hdr, body, 400)
	var found bool
	for _, e := range p.Errors {
		if e.Path == "defaults.replicas" && e.Line == 5 && e.File == "bad.yaml" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no error naming defaults.replicas at bad.yaml line 5: %+v", p.Errors)
	}

	// Every problem at once, each with its own path and line.
	spec = specYAML(env, svc{name: "web", version: "1.0.0"})
	spec = strings.Replace(spec, "    port: 8080\n", "    port: 99999\n    colour: blue\n", 1)
	status, hdr, body = a.do("POST", "/v1/releases", tokAdmin, yamlCT, []byte(spec))
	p = a.problem(status, hdr, body, 400)
	if len(p.Errors) < 2 {
		t.Fatalf("want both problems reported, got %+v", p.Errors)
	}
	for _, e := range p.Errors {
		if e.Line == 0 || e.Path == "" || !strings.HasPrefix(e.Path, "services[0]") {
			t.Errorf("error without line or path: %+v", e)
		}
	}

	// An override of an unknown service names it.
	status, hdr, body = a.do("POST", "/v1/releases?set=nosuch=1.0.0", tokAdmin, yamlCT, []byte(specYAML(env, svc{name: "web", version: "1.0.0"})))
	p = a.problem(status, hdr, body, 400)
	if len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Path, "nosuch") {
		t.Fatalf("override error: %+v", p.Errors)
	}

	// So does a trigger naming a service the checked-in spec does not have.
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))
	status, hdr, body = a.do("POST", "/v1/releases", tokAdmin, "application/json", []byte(`{"environment":"`+env+`","services":{"wbe":"1.1.0"}}`))
	p = a.problem(status, hdr, body, 400)
	if len(p.Errors) != 1 || p.Errors[0].Path != "services.wbe" || !strings.Contains(p.Errors[0].Message, "web") {
		t.Fatalf("trigger with an unknown service: %+v", p.Errors)
	}

	// JSON spec bodies are parsed by the same parser.
	status, hdr, body = a.do("POST", "/v1/releases", tokAdmin, "application/json", []byte(`{"environment": "`+env+`", "clusters": "x"}`))
	p = a.problem(status, hdr, body, 400)
	if len(p.Errors) == 0 || p.Errors[0].Line == 0 {
		t.Fatalf("JSON spec errors: %+v", p.Errors)
	}
}

func TestAuthStatuses(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("auth")
	spec := []byte(specYAML(env, svc{name: "web", version: "1.0.0"}))

	status, hdr, body := a.do("POST", "/v1/releases", "", yamlCT, spec)
	a.problem(status, hdr, body, 401)
	if hdr.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	status, hdr, body = a.do("POST", "/v1/releases", "not-a-token", yamlCT, spec)
	a.problem(status, hdr, body, 401)
	if strings.Contains(string(body), "not-a-token") {
		t.Error("the answer echoes the token")
	}
	status, hdr, body = a.do("GET", "/v1/releases", "", "", nil)
	a.problem(status, hdr, body, 401)

	// read-only token may not release; a token scoped to another environment may not either.
	status, hdr, body = a.do("POST", "/v1/releases", tokReader, yamlCT, spec)
	p := a.problem(status, hdr, body, 403)
	if !strings.Contains(p.Detail, "release") {
		t.Errorf("403 detail %q does not name the permission", p.Detail)
	}
	status, hdr, body = a.do("POST", "/v1/releases", tokOther, yamlCT, spec)
	p = a.problem(status, hdr, body, 403)
	if !strings.Contains(p.Detail, env) {
		t.Errorf("403 detail %q does not name the environment", p.Detail)
	}
	status, hdr, body = a.do("GET", "/v1/releases/release-"+env+"-abc", tokOther, "", nil)
	a.problem(status, hdr, body, 403)
	status, hdr, body = a.do("GET", "/v1/releases?environment="+env, tokOther, "", nil)
	a.problem(status, hdr, body, 403)

	// No token needed for health and the OpenAPI description.
	for _, p := range []string{"/healthz", "/v1/openapi.json"} {
		if status, _, body := a.do("GET", p, "", "", nil); status != 200 {
			t.Errorf("GET %s without token: %d %s", p, status, body)
		}
	}
}

func TestUnknownReleaseIs404(t *testing.T) {
	a := newAPI(t, nil)
	for _, path := range []string{
		"/v1/releases/release-nowhere-20260101t000000abcdef",
		"/v1/releases/release-nowhere-20260101t000000abcdef/events",
		"/v1/releases/not-a-release-id",
	} {
		status, hdr, body := a.do("GET", path, tokAdmin, "", nil)
		a.problem(status, hdr, body, 404)
	}
	status, hdr, body := a.do("POST", "/v1/releases/release-nowhere-20260101t000000abcdef/approve", tokAdmin, "", nil)
	a.problem(status, hdr, body, 404)
	status, hdr, body = a.do("POST", "/v1/releases/release-nowhere-20260101t000000abcdef/rollback", tokAdmin, "", nil)
	a.problem(status, hdr, body, 404)
	// A trigger for an environment with no checked-in spec.
	status, hdr, body = a.do("POST", "/v1/releases", tokAdmin, "application/json", []byte(`{"environment":"nowhere","services":{"web":"1.0.0"}}`))
	a.problem(status, hdr, body, 404)
}

func TestBodyOver1MiBIs413(t *testing.T) {
	a := newAPI(t, nil)
	big := []byte("# " + strings.Repeat("x", 1<<20) + "\n")
	status, hdr, body := a.do("POST", "/v1/releases", tokAdmin, yamlCT, big)
	a.problem(status, hdr, body, 413)
	status, hdr, body = a.do("POST", "/v1/plan", tokAdmin, yamlCT, big)
	a.problem(status, hdr, body, 413)
}

func TestRateLimitIs429WithRetryAfter(t *testing.T) {
	a := newAPI(t, nil)
	if status, _, body := a.do("GET", "/v1/releases?environment=nowhere", tokSlow, "", nil); status != 200 {
		t.Fatalf("first request: %d %s", status, body)
	}
	status, hdr, body := a.do("GET", "/v1/releases?environment=nowhere", tokSlow, "", nil)
	p := a.problem(status, hdr, body, 429)
	if hdr.Get("Retry-After") == "" || p.RetryAfter < 1 {
		t.Fatalf("429 without Retry-After: %v %+v", hdr, p)
	}
	// Other tokens have their own buckets.
	if status, _, body := a.do("GET", "/v1/releases?environment=nowhere", tokReader, "", nil); status != 200 {
		t.Fatalf("another token was limited too: %d %s", status, body)
	}
}

func TestOverlappingReleaseIs409NamingTheOneInFlight(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("overlap")
	t.Cleanup(func() { a.terminateAll(env) })
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}, svc{name: "api", version: "1.0.0"}))
	c := a.client(tokAdmin)
	ctx := context.Background()

	first, err := c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"web": "1.1.0"}, Description: "first"}})
	if err != nil {
		t.Fatal(err)
	}
	if !first.Running || !strings.HasPrefix(first.ID, "release-"+env+"-") || first.Links.Self == "" || first.Links.WebUI == "" {
		t.Fatalf("start answer: %+v", first)
	}
	// Same service again: refused, naming the first.
	_, err = c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"web": "2.0.0"}}})
	var p *apiclient.Problem
	if !errors.As(err, &p) || p.Status != 409 || p.InFlight != first.ID || !strings.Contains(p.Detail, first.ID) {
		t.Fatalf("overlap: err = %v (%+v), want 409 naming %s", err, p, first.ID)
	}
	// A whole spec touches every service, web included: refused too.
	_, err = c.StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0"}, svc{name: "api", version: "2.0.0"})), SpecName: "x.yaml"})
	if !errors.As(err, &p) || p.Status != 409 || p.InFlight != first.ID {
		t.Fatalf("whole-spec overlap: err = %v", err)
	}
	// Asked to queue, the same overlap is accepted: it waits for the first under the
	// per-service lock inside Temporal instead of being refused.
	queued, err := c.StartRelease(ctx, apiclient.StartRequest{Queue: 10 * time.Minute, Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"web": "2.0.0"}}})
	if err != nil {
		t.Fatalf("a queued overlapping release was refused: %v", err)
	}
	if queued.ID == first.ID || !queued.Running {
		t.Fatalf("queued release: %+v", queued)
	}
	status, hdr, body := a.do("POST", "/v1/releases?queue=soon", tokAdmin, "application/json",
		[]byte(`{"environment":"`+env+`","services":{"web":"2.0.0"}}`))
	if p := a.problem(status, hdr, body, 400); !strings.Contains(p.Detail, "queue") {
		t.Fatalf("a bad queue parameter: %+v", p)
	}
	// Another service of the same environment may go.
	second, err := c.StartRelease(ctx, apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
		Environment: env, Services: map[string]string{"api": "1.1.0"}}})
	if err != nil {
		t.Fatalf("a release of another service was refused: %v", err)
	}
	if second.ID == first.ID {
		t.Fatal("same id for two releases")
	}
	// The releases are in Temporal with Slipway's search attributes, the actor recorded.
	// first, the queued one, second
	ids := a.waitVisible(fmt.Sprintf("%s = '%s' AND %s = 'admin'", workflows.SAEnvironment, env, workflows.SATriggeredBy), 3)
	if len(ids) != 3 {
		t.Fatalf("visible releases %v", ids)
	}
}

func TestIdempotencyKeyStartsOneWorkflow(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("idem")
	t.Cleanup(func() { a.terminateAll(env) })
	spec := []byte(specYAML(env, svc{name: "web", version: "1.0.0"}))
	key := "build-42"

	status, _, body := a.do("POST", "/v1/releases", tokAdmin, yamlCT, spec, "Idempotency-Key", key)
	if status != 202 {
		t.Fatalf("first POST: %d %s", status, body)
	}
	r1 := a.release(status, body)
	status, _, body = a.do("POST", "/v1/releases", tokAdmin, yamlCT, spec, "Idempotency-Key", key)
	if status != 200 {
		t.Fatalf("retried POST: %d %s", status, body)
	}
	r2 := a.release(status, body)
	if r1.ID != r2.ID || !r2.Existing || r1.Existing {
		t.Fatalf("retry: first %s (existing %v), second %s (existing %v)", r1.ID, r1.Existing, r2.ID, r2.Existing)
	}
	a.waitVisible(fmt.Sprintf("%s = '%s'", workflows.SAEnvironment, env), 1)
	d, err := a.tc.DescribeWorkflowExecution(context.Background(), r1.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := d.GetWorkflowExecutionInfo().GetExecution().GetRunId(); got != r1.RunID {
		t.Fatalf("run %s, first answer said %s", got, r1.RunID)
	}
	// The same key with another request is a conflict, not a second release.
	other := []byte(specYAML(env, svc{name: "web", version: "2.0.0"}))
	status, hdr, body := a.do("POST", "/v1/releases", tokAdmin, yamlCT, other, "Idempotency-Key", key)
	a.problem(status, hdr, body, 409)
	// Still one workflow, also after the release has ended.
	if err := a.tc.TerminateWorkflow(context.Background(), r1.ID, "", "test"); err != nil {
		t.Fatal(err)
	}
	status, _, body = a.do("POST", "/v1/releases", tokAdmin, yamlCT, spec, "Idempotency-Key", key)
	if status != 200 {
		t.Fatalf("POST after the end: %d %s", status, body)
	}
	// (No worker runs here: it was terminated before it took a lock, so nothing to repair.)
	if r3 := a.release(status, body); r3.ID != r1.ID || r3.Running || r3.Outcome != workflows.OutcomeTerminated {
		t.Fatalf("after the end: %+v", r3)
	}
	a.waitVisible(fmt.Sprintf("%s = '%s'", workflows.SAEnvironment, env), 1)
}

func TestWaitRunsOutWithTheCurrentStatus(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("wait")
	t.Cleanup(func() { a.terminateAll(env) })
	start := time.Now()
	status, _, body := a.do("POST", "/v1/releases?wait=1s", tokAdmin, yamlCT, []byte(specYAML(env, svc{name: "web", version: "1.0.0"})))
	if status != 202 {
		t.Fatalf("POST ?wait with no worker: %d %s", status, body)
	}
	r := a.release(status, body)
	if !r.Running || r.Outcome != "" {
		t.Fatalf("a release nobody runs is not running: %+v", r)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("?wait=1s returned before the wait ran out")
	}
	// GET without a worker: the release is shown, with why its status is missing.
	status, _, body = a.do("GET", r.Links.Self, tokReader, "", nil)
	if status != 200 {
		t.Fatalf("GET: %d %s", status, body)
	}
	if g := a.release(status, body); g.ID != r.ID || !g.Running || g.StatusError == "" || g.Environment != env {
		t.Fatalf("GET of a pending release: %+v", g)
	}
	status, hdr, body := a.do("GET", "/v1/releases/"+r.ID+"?wait=forever", tokReader, "", nil)
	a.problem(status, hdr, body, 400)
}

func TestListFiltersAndPages(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("list")
	t.Cleanup(func() { a.terminateAll(env) })
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}, svc{name: "api", version: "1.0.0"}, svc{name: "db", version: "1.0.0"}))
	c := a.client(tokAdmin)
	var ids []string
	for _, s := range []string{"web", "api", "db"} {
		r, err := c.StartRelease(context.Background(), apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
			Environment: env, Services: map[string]string{s: "2.0.0"}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	a.waitVisible(fmt.Sprintf("%s = '%s'", workflows.SAEnvironment, env), 3)
	l, err := c.ListReleases(context.Background(), apiclient.ListOptions{Environment: env, Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Releases) != 1 || l.Releases[0].ID != ids[1] || l.Releases[0].Versions[0] != "api=2.0.0" ||
		l.Releases[0].TriggeredBy != "admin" || l.Releases[0].ExecutionStatus != "Running" {
		t.Fatalf("list by service: %+v", l)
	}
	seen := map[string]bool{}
	o := apiclient.ListOptions{Environment: env, PageSize: 2, Running: true}
	for page := 0; ; page++ {
		l, err := c.ListReleases(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Releases) > 2 {
			t.Fatalf("page of %d", len(l.Releases))
		}
		for _, r := range l.Releases {
			if seen[r.ID] {
				t.Fatalf("%s on two pages", r.ID)
			}
			seen[r.ID] = true
		}
		if l.NextPageToken == "" {
			break
		}
		if page > 3 {
			t.Fatal("pages never end")
		}
		o.PageToken = l.NextPageToken
	}
	if len(seen) != 3 {
		t.Fatalf("pages held %d releases, want 3", len(seen))
	}
	l, err = c.ListReleases(context.Background(), apiclient.ListOptions{Environment: env, Outcome: "succeeded"})
	if err != nil || len(l.Releases) != 0 {
		t.Fatalf("outcome filter: %v %+v", err, l)
	}
	status, hdr, body := a.do("GET", "/v1/releases?phase=dancing", tokAdmin, "", nil)
	a.problem(status, hdr, body, 400)
	status, hdr, body = a.do("GET", "/v1/releases?environment=x'%20OR%20'1'='1", tokAdmin, "", nil)
	a.problem(status, hdr, body, 400)
}

func TestReadyzSaysWhatIsNotReady(t *testing.T) {
	a := newAPI(t, func(c *starter.Config) {
		c.TaskQueue = "no-worker-here"
		c.EngineCheck = func(context.Context) map[string]error {
			return map[string]error{"staging/eu1": errors.New("connection refused"), "staging/eu2": nil}
		}
	})
	status, hdr, body := a.do("GET", "/readyz", "", "", nil)
	p := a.problem(status, hdr, body, 503)
	if !strings.Contains(p.NotReady["worker"], "no worker") || p.NotReady["engine:staging/eu1"] == "" {
		t.Fatalf("not_ready: %+v", p.NotReady)
	}
	if _, ok := p.NotReady["temporal"]; ok {
		t.Fatalf("Temporal answers but is reported not ready: %+v", p.NotReady)
	}
	if _, ok := p.NotReady["engine:staging/eu2"]; ok {
		t.Fatalf("a healthy engine is reported: %+v", p.NotReady)
	}
	status, _, body = a.do("GET", "/healthz", "", "", nil)
	var h apiclient.Health
	if status != 200 || json.Unmarshal(body, &h) != nil || !h.Ready {
		t.Fatalf("healthz: %d %s", status, body)
	}
}

func TestDecisionOnAnEndedReleaseIs409(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("ended")
	c := a.client(tokAdmin)
	r, err := c.StartRelease(context.Background(), apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0"})), SpecName: "s.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.tc.TerminateWorkflow(context.Background(), r.ID, "", "test"); err != nil {
		t.Fatal(err)
	}
	for _, action := range []string{"approve", "abort", "pause", "resume"} {
		status, hdr, body := a.do("POST", "/v1/releases/"+r.ID+"/"+action, tokAdmin, "application/json", []byte(`{"reason":"test"}`))
		p := a.problem(status, hdr, body, 409)
		if !strings.Contains(p.Detail, "ended") {
			t.Errorf("%s: %q", action, p.Detail)
		}
	}
	// The read-only token may not decide at all.
	status, hdr, body := a.do("POST", "/v1/releases/"+r.ID+"/approve", tokReader, "", nil)
	a.problem(status, hdr, body, 403)
	// A release that replaced nothing has nothing to roll back.
	status, hdr, body = a.do("POST", "/v1/releases/"+r.ID+"/rollback", tokAdmin, "", nil)
	a.problem(status, hdr, body, 409)
}

// TestConcurrentTriggersStartOneRelease: triggers for the same service fired at once start
// exactly one release; every other one is refused naming it.
func TestConcurrentTriggersStartOneRelease(t *testing.T) {
	a := newAPI(t, nil)
	env := randomEnv("race")
	t.Cleanup(func() { a.terminateAll(env) })
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))
	const n = 6
	type answer struct {
		rel *apiclient.Release
		err error
	}
	answers := make(chan answer, n)
	for i := 0; i < n; i++ {
		go func() {
			r, err := a.client(tokAdmin).StartRelease(context.Background(), apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
				Environment: env, Services: map[string]string{"web": fmt.Sprintf("1.%d.0", i)}}})
			answers <- answer{r, err}
		}()
	}
	var started []string
	var refused []*apiclient.Problem
	for i := 0; i < n; i++ {
		a := <-answers
		var p *apiclient.Problem
		switch {
		case a.err == nil:
			started = append(started, a.rel.ID)
		case errors.As(a.err, &p) && p.Status == 409:
			refused = append(refused, p)
		default:
			t.Fatalf("unexpected answer: %v", a.err)
		}
	}
	if len(started) != 1 {
		t.Fatalf("%d releases started, want 1: %v", len(started), started)
	}
	for _, p := range refused {
		if p.InFlight != started[0] {
			t.Errorf("refusal names %q, not the release in flight %s", p.InFlight, started[0])
		}
	}
	a.waitVisible(fmt.Sprintf("%s = '%s'", workflows.SAEnvironment, env), 1)
}
