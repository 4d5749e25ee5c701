package starter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// Two API replicas: two starter.Server instances over one Temporal server, each with its own
// in-memory state (its own token limiters, recent starts, query merging, ended cache), as
// two `slipway api` processes behind one load balancer have. What must stay right with two
// replicas lives in Temporal; these tests prove it does.

// replicas builds n API replicas that share one deployments directory, each with its own
// tokens object (so its own rate limiters), with mod applied to each config.
func replicas(t *testing.T, n int, mod func(*starter.Config)) []*api {
	t.Helper()
	first := newAPI(t, func(c *starter.Config) {
		c.Replicas = n
		if mod != nil {
			mod(c)
		}
	})
	out := []*api{first}
	for i := 1; i < n; i++ {
		out = append(out, newAPI(t, func(c *starter.Config) {
			c.DeploymentsDir = first.deploys
			c.Replicas = n
			if mod != nil {
				mod(c)
			}
		}))
	}
	return out
}

// TestOverlappingTriggersOnTwoReplicasChangeTheServiceOnce: triggers for one service fired
// at once through two replicas. Neither replica can see the other's start in time (its own
// recent starts are in its memory, visibility lags), so more than one may be accepted; the
// release locks, taken in Temporal, let exactly one of them change the service. Every other
// trigger is a 409 at the door or a release that ends `refused` naming the one in flight,
// having changed nothing.
func TestOverlappingTriggersOnTwoReplicasChangeTheServiceOnce(t *testing.T) {
	startWorker(t)
	rs := replicas(t, 2, nil)
	env := e2eEnv(t)
	t.Cleanup(func() { rs[0].terminateAll(env) })
	rs[0].checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))

	const n = 6
	type answer struct {
		rel *apiclient.Release
		err error
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := rs[i%2].client(tokAdmin).StartRelease(context.Background(), apiclient.StartRequest{Trigger: &apiclient.TriggerRequest{
				Environment: env, Services: map[string]string{"web": "1.1.0"}}})
			answers <- answer{r, err}
		}()
	}
	wg.Wait()
	close(answers)
	var started []string
	var at409 []*apiclient.Problem
	for a := range answers {
		var p *apiclient.Problem
		switch {
		case a.err == nil:
			started = append(started, a.rel.ID)
		case errors.As(a.err, &p) && p.Status == http.StatusConflict:
			at409 = append(at409, p)
		default:
			t.Fatalf("unexpected answer: %v", a.err)
		}
	}
	if len(started) == 0 {
		t.Fatal("no trigger was accepted")
	}
	t.Logf("%d accepted, %d refused at the door", len(started), len(at409))

	// Every accepted release ends; exactly one changes the service, on either replica's
	// view of it.
	var ran []string
	refusals := map[string]string{}
	for i, id := range started {
		r := rs[(i+1)%2] // ask the other replica than the one that (maybe) started it
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		rel, err := r.client(tokAdmin).GetRelease(ctx, id, 3*time.Minute)
		cancel()
		if err != nil {
			t.Fatalf("wait for %s: %v", id, err)
		}
		if rel.Running {
			t.Fatalf("%s still running after the wait", id)
		}
		switch rel.Outcome {
		case workflows.OutcomeSucceeded:
			ran = append(ran, id)
		case workflows.OutcomeRefused:
			refusals[id] = rel.Reason
			for _, ev := range rel.Status.Events {
				if strings.Contains(ev.Message, "release lock taken") {
					t.Errorf("refused release %s took a lock: %s", id, ev.Message)
				}
			}
		default:
			t.Fatalf("%s ended %s (%s); want succeeded or refused", id, rel.Outcome, rel.Reason)
		}
	}
	if len(ran) != 1 {
		t.Fatalf("%d releases changed the service (%v), want exactly 1; refused: %v", len(ran), ran, refusals)
	}
	for id, why := range refusals {
		if !strings.Contains(why, "web") {
			t.Errorf("refusal of %s does not name the service: %q", id, why)
		}
	}
	for _, p := range at409 {
		if p.InFlight == "" {
			t.Errorf("409 names no release in flight: %+v", p)
		}
	}
}

// TestIdempotencyKeyAcrossReplicas: the same Idempotency-Key sent to both replicas at once
// names one release; the replica that did not start it answers with it (existing).
func TestIdempotencyKeyAcrossReplicas(t *testing.T) {
	startWorker(t)
	rs := replicas(t, 2, nil)
	env := e2eEnv(t)
	rs[0].checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))
	key := fmt.Sprintf("build-%d", time.Now().UnixNano())
	type answer struct {
		rel *apiclient.Release
		err error
	}
	answers := make([]answer, 4)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := rs[i%2].client(tokAdmin).StartRelease(context.Background(), apiclient.StartRequest{
				IdempotencyKey: key,
				Trigger:        &apiclient.TriggerRequest{Environment: env, Services: map[string]string{"web": "1.1.0"}}})
			answers[i] = answer{r, err}
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	existing := 0
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("start %d through replica %d: %v", i, i%2, a.err)
		}
		ids[a.rel.ID] = true
		if a.rel.Existing {
			existing++
		}
	}
	if len(ids) != 1 {
		t.Fatalf("one Idempotency-Key started %d releases: %v", len(ids), ids)
	}
	if existing != len(answers)-1 {
		t.Errorf("%d answers were marked existing, want %d", existing, len(answers)-1)
	}
	rs[0].waitVisible(fmt.Sprintf("%s = 'release' AND %s = '%s'", workflows.SAKind, workflows.SAEnvironment, env), 1)
	var id string
	for k := range ids {
		id = k
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rel, err := rs[1].client(tokAdmin).GetRelease(ctx, id, 3*time.Minute)
	if err != nil {
		t.Fatalf("wait for %s: %v", id, err)
	}
	if rel.Running || rel.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("release %s: running %v, outcome %s (%s)", id, rel.Running, rel.Outcome, rel.Reason)
	}
}

// TestRateLimitIsSharedByReplicas: a token's limit is the whole API's. With two replicas
// each admits half of the bucket, so the two together admit what one replica would.
func TestRateLimitIsSharedByReplicas(t *testing.T) {
	// A token with a bucket of 4 and a refill too slow to matter during the test.
	rs := replicas(t, 2, func(c *starter.Config) {
		tokens, err := starter.NewTokens(starter.TokenEntry{Name: "limited", SHA256: starter.HashToken("limited-secret"),
			Environments: []string{"*"}, Permissions: []starter.Permission{starter.PermRead}, RateLimit: 0.001, Burst: 4})
		if err != nil {
			t.Fatal(err)
		}
		c.Tokens = tokens
	})
	admitted := 0
	for i := 0; i < 10; i++ {
		status, hdr, body := rs[i%2].do("GET", "/v1/releases?page_size=1", "limited-secret", "", nil)
		switch status {
		case http.StatusOK:
			admitted++
		case http.StatusTooManyRequests:
			if hdr.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After: %s", body)
			}
		default:
			t.Fatalf("request %d: status %d: %s", i, status, body)
		}
	}
	if admitted != 4 {
		t.Fatalf("two replicas admitted %d requests of a token with a bucket of 4, want 4", admitted)
	}
}

// TestEventStreamResumesOnAnotherReplica: a client reading a release's event stream from one
// replica that goes away resumes on the other with Last-Event-ID, and sees every event once,
// in order, up to the outcome.
func TestEventStreamResumesOnAnotherReplica(t *testing.T) {
	startWorker(t)
	rs := replicas(t, 2, nil)
	env := e2eEnv(t)
	rs[0].checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))
	rel, err := rs[0].client(tokAdmin).StartRelease(context.Background(), apiclient.StartRequest{
		Trigger: &apiclient.TriggerRequest{Environment: env, Services: map[string]string{"web": "1.0.0"}}})
	if err != nil {
		t.Fatal(err)
	}
	// The first replica's stream, left after the third event (its replica "died").
	first, _ := followAll(t, rs[0].client(tokAdmin), rel.ID, 3*time.Minute, func(ev apiclient.StreamEvent) bool {
		return ev.Type == apiclient.EventPhase && ev.Event.Seq >= 3
	})
	if len(first) == 0 {
		t.Fatal("no event from the first replica")
	}
	last := first[len(first)-1].Seq
	// The same client resumes on the second replica.
	var rest []workflows.Event
	var final *apiclient.Release
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err = rs[1].client(tokAdmin).Follow(ctx, rel.ID, last, func(ev apiclient.StreamEvent) error {
		switch ev.Type {
		case apiclient.EventPhase:
			rest = append(rest, *ev.Event)
		case apiclient.EventOutcome:
			final = ev.Release
		}
		return nil
	})
	if err != nil {
		t.Fatalf("follow on the second replica after seq %d: %v", last, err)
	}
	if final == nil || final.Outcome != workflows.OutcomeSucceeded {
		t.Fatalf("final view from the second replica: %+v", final)
	}
	all := append(first, rest...)
	for i, ev := range all {
		if ev.Seq != i+1 {
			t.Fatalf("event %d has seq %d: the resumed stream lost or repeated events (resumed after %d): %v", i, ev.Seq, last, all)
		}
	}
	if len(all) != len(final.Status.Events) {
		t.Fatalf("read %d events over two replicas, the release recorded %d", len(all), len(final.Status.Events))
	}
}
