package starter_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/slipwayhq/slipway/apiclient"
	"github.com/slipwayhq/slipway/spec"
	"github.com/slipwayhq/slipway/starter"
	"github.com/slipwayhq/slipway/workflows"
)

// BenchmarkStatusPollers: p99 latency of GET /v1/releases/{id} under 200 concurrent pollers,
// next to the same status query sent straight to Temporal in the same run. The release
// stands at its approval gate, so the worker answers every query with a live status.
// Metrics: p99 of each side in ms and their ratio (api/direct).
func BenchmarkStatusPollers(b *testing.B) {
	const pollers, perPoller = 200, 10
	env := benchEnv(b)
	a := newAPI(b, func(c *starter.Config) { c.QueryTimeout = time.Minute })
	startWorker(b)
	c := a.client(tokAdmin)
	ctx := context.Background()
	rel, err := c.StartRelease(ctx, apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0", approval: true})), SpecName: "bench.yaml"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_, _ = c.Decide(context.Background(), rel.ID, apiclient.ActionAbort, "benchmark done")
		_, _ = c.GetRelease(context.Background(), rel.ID, 2*time.Minute)
	})
	for {
		r, err := c.GetRelease(ctx, rel.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		if r.Status != nil && len(r.Status.Services) > 0 && r.Status.Services[0].Phase == workflows.PhaseAwaitingApproval {
			break
		}
		if !r.Running {
			b.Fatalf("release ended before its gate: %+v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers, MaxConnsPerHost: pollers}, Timeout: time.Minute}
	url := a.srv.URL + "/v1/releases/" + rel.ID
	viaAPI := func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+tokAdmin)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r apiclient.Release
		if err := jsonDecode(resp, &r); err != nil {
			return err
		}
		if resp.StatusCode != 200 || r.Status == nil {
			return fmt.Errorf("GET: %d %+v", resp.StatusCode, r)
		}
		return nil
	}
	direct := func() error {
		v, err := a.tc.QueryWorkflow(ctx, rel.ID, "", workflows.QueryStatus)
		if err != nil {
			return err
		}
		var st workflows.ReleaseStatus
		return v.Get(&st)
	}
	var apiLat, directLat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		directLat = append(directLat, poll(b, pollers, perPoller, direct)...)
		apiLat = append(apiLat, poll(b, pollers, perPoller, viaAPI)...)
	}
	b.StopTimer()
	pa, pd := p99(apiLat), p99(directLat)
	b.ReportMetric(float64(pa)/1e6, "api-p99-ms")
	b.ReportMetric(float64(pd)/1e6, "direct-p99-ms")
	b.ReportMetric(float64(pa)/float64(pd), "p99-ratio")
}

// poll runs n pollers, each making k calls, and returns every call's latency.
func poll(b *testing.B, n, k int, call func() error) []time.Duration {
	var mu sync.Mutex
	var out []time.Duration
	var failed atomic.Value
	var wg sync.WaitGroup
	for p := 0; p < n; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, k)
			for i := 0; i < k; i++ {
				t0 := time.Now()
				if err := call(); err != nil {
					failed.Store(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			out = append(out, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return out
}

func p99(l []time.Duration) time.Duration {
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	return l[(len(l)*99)/100]
}

// BenchmarkReleaseStarts: release starts per second through POST /v1/releases (auth, spec
// parse and validation, overlap check, start) next to ExecuteWorkflow of the same input
// straight to Temporal, 8 clients in parallel each. The task queue has no worker, so only
// the start is measured. Metrics: starts/s of each side and their ratio (api/direct).
func BenchmarkReleaseStarts(b *testing.B) {
	const starts, clients = 120, 8
	queue := "bench-starts-no-worker"
	a := newAPI(b, func(c *starter.Config) { c.TaskQueue = queue })
	run := fmt.Sprintf("%d", time.Now().UnixNano()%1e6)
	b.Cleanup(func() {
		for i := 0; i < starts*b.N; i++ {
			a.terminateAll(fmt.Sprintf("bench-a%s-%d", run, i))
			a.terminateAll(fmt.Sprintf("bench-d%s-%d", run, i))
		}
	})
	c := a.client(tokAdmin)
	parsed := map[int]*spec.Environment{}
	for i := 0; i < starts*b.N; i++ {
		e, err := spec.Parse("bench.yaml", []byte(specYAML(fmt.Sprintf("bench-d%s-%d", run, i), svc{name: "web", version: "1.0.0"})))
		if err != nil {
			b.Fatal(err)
		}
		parsed[i] = e
	}
	var apiTime, directTime time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		base := it * starts
		apiTime += parallel(b, starts, clients, func(i int) error {
			env := fmt.Sprintf("bench-a%s-%d", run, base+i)
			_, err := c.StartRelease(context.Background(), apiclient.StartRequest{Spec: []byte(specYAML(env, svc{name: "web", version: "1.0.0"})), SpecName: "bench.yaml"})
			return err
		})
		directTime += parallel(b, starts, clients, func(i int) error {
			e := parsed[base+i]
			in := workflows.ReleaseInput{ID: fmt.Sprintf("d%d", base+i), Spec: *e, TriggeredBy: "admin"}
			_, err := a.tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
				ID: workflows.ReleaseWorkflowID(e.Environment, in.ID), TaskQueue: queue,
				WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
				TypedSearchAttributes: temporal.NewSearchAttributes(
					temporal.NewSearchAttributeKeyKeyword(workflows.SAEnvironment).ValueSet(e.Environment),
					temporal.NewSearchAttributeKeyKeywordList(workflows.SAServices).ValueSet([]string{"web"}),
					temporal.NewSearchAttributeKeyKeyword(workflows.SAKind).ValueSet("release"),
				),
			}, workflows.ReleaseWorkflowName, in)
			return err
		})
	}
	b.StopTimer()
	n := float64(starts * b.N)
	ra, rd := n/apiTime.Seconds(), n/directTime.Seconds()
	b.ReportMetric(ra, "api-starts/s")
	b.ReportMetric(rd, "direct-starts/s")
	b.ReportMetric(ra/rd, "starts-ratio")
}

// parallel runs fn(0..n-1) on k goroutines and returns the wall time.
func parallel(b *testing.B, n, k int, fn func(i int) error) time.Duration {
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}
