package starter_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// planCount counts the Plan workflows started for an environment, from Temporal's
// visibility (their IDs start with plan-<env>-).
func (a *api) planCount(t *testing.T, env string) int {
	t.Helper()
	n := 0
	var token []byte
	for {
		resp, err := a.tc.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: a.ns, PageSize: 1000, NextPageToken: token,
			Query: "WorkflowType = '" + workflows.PlanWorkflowName + "'"})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetExecutions() {
			if strings.HasPrefix(e.GetExecution().GetWorkflowId(), workflows.PlanWorkflowID(env, "")) {
				n++
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return n
		}
	}
}

// waitPlans waits until visibility lists want Plan workflows of env (it is eventually
// consistent), then checks that no more appear.
func (a *api) waitPlans(t *testing.T, env string, want int) {
	t.Helper()
	var n int
	for range 50 {
		if n = a.planCount(t, env); n >= want {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n != want {
		t.Fatalf("%d Plan workflows of %s, want %d", n, env, want)
	}
}

// TestDashboardPlanCache: the overview caches each environment's Plan result. Twelve page
// loads within the TTL (six one after the other, six at once) start one Plan workflow, and
// each shows the live view; a spec checked in anew plans again at once.
func TestDashboardPlanCache(t *testing.T) {
	env := e2eEnv(t)
	a := newAPI(t, func(c *starter.Config) {
		c.Dashboard.Anonymous = true
		c.Dashboard.PlanTTL = time.Hour // longer than the test: every load is within it
	})
	startWorker(t)
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.0.0"}))

	load := func() {
		r := a.web("GET", "/environments/"+env, nil, nil)
		// Nothing is deployed: the live view (the Plan's) says so, and no problem shows.
		if r.status != 200 || !strings.Contains(r.body, "Nothing runs in "+env+" yet") || strings.Contains(r.body, `class="problem"`) {
			t.Errorf("GET /environments/%s: %d %s", env, r.status, r.body)
		}
	}
	for range 6 {
		load()
	}
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() { defer wg.Done(); load() }()
	}
	wg.Wait()
	a.waitPlans(t, env, 1)

	// A new checked-in spec is another key: planned again, once.
	a.checkIn(env, specYAML(env, svc{name: "web", version: "1.1.0"}))
	for range 3 {
		load()
	}
	a.waitPlans(t, env, 2)
}
